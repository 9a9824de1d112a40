"""gunicorn settings for `make run` and production (`gunicorn -c gunicorn.conf.py wsgi:app`)."""

import os

from gunicorn.glogging import Logger

from wpotp.logs import loggable_path


class RedactingLogger(Logger):
    """The access log without URL tokens (/webhooks/gateway/<token> authenticates the gateway)."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        atoms["U"] = loggable_path(atoms.get("U", ""))
        atoms["r"] = "-"  # the request line carries the path and query string: never logged
        return atoms


logger_class = RedactingLogger

bind = f"{os.environ.get('BIND_HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
worker_class = "gthread"
timeout = 30
graceful_timeout = 20
keepalive = 5
# The path only (%(U)s), never the query string: some compat clients put keys there.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}o)s'
accesslog = "-"
errorlog = "-"
