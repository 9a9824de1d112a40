"""gunicorn settings for `make run` and production (`gunicorn -c gunicorn.conf.py wsgi:app`)."""

import os

from gunicorn.glogging import Logger

from wpotp.logs import loggable_path, loggable_query

# Request headers that carry keys or sessions, should an operator's format name them.
SECRET_HEADERS = ("authorization", "x-api-key", "x-api-secret", "cookie")


class RedactingLogger(Logger):
    """The access log without secrets: URL tokens in the path (/webhooks/gateway/<token>), secret
    query parameters (Wawp's `access_token`, codes) and key headers show as ***, in every atom
    that carries them (%(r)s, %(U)s, %(q)s, {raw_uri}e, {authorization}i, ...)."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        path = loggable_path(environ.get("PATH_INFO") or "")
        query = loggable_query(environ.get("QUERY_STRING") or "")
        uri = f"{path}?{query}" if query else path
        atoms.update({"U": path, "q": query, "r": f"{atoms['m']} {uri} {atoms['H']}", "{path_info}e": path,
                      "{query_string}e": query, "{raw_uri}e": uri, "{request_uri}e": uri})
        for header in SECRET_HEADERS:
            for name in (f"{{{header}}}i", f"{{http_{header.replace('-', '_')}}}e"):
                if name in atoms:
                    atoms[name] = "***"
        return atoms


logger_class = RedactingLogger

bind = f"{os.environ.get('BIND_HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
worker_class = "gthread"
timeout = 30
graceful_timeout = 20
keepalive = 5
# The path only (%(U)s). %(r)s and %(q)s are redacted too (compat clients put keys in the query).
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}o)s'
accesslog = "-"
errorlog = "-"


def post_worker_init(worker):
    """The app is loaded: keep its start-up objects out of the garbage collector's full scans."""
    from wpotp.util import settle_heap

    settle_heap()
