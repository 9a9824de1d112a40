"""gunicorn settings for `make run` and production (`gunicorn -c gunicorn.conf.py wsgi:app`)."""

import json
import os

from gunicorn import util
from gunicorn.glogging import Logger
from gunicorn.workers.gthread import ThreadWorker

from wpotp.logs import loggable_path, loggable_query
from wpotp.util import random_base62

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

# gunicorn's own answers to what it cannot parse, as the API's envelope (SPEC §3). Its text can
# echo the request line (and so a key in a query string): never sent back.
GUNICORN_ERRORS = {
    400: ("VALIDATION_ERROR", "The request could not be read: a malformed request line or header."),
    414: ("URI_TOO_LONG", "The request line is longer than 4 KiB; send large values in a JSON body."),
    431: ("REQUEST_HEADER_FIELDS_TOO_LARGE", "Too many request headers, or too large ones."),
    500: ("INTERNAL_ERROR", "Something went wrong on our side; nothing was changed."),
}


class _ErrorPage:
    """Stands in for the client socket while gunicorn writes its HTML error page, to catch it."""

    def __init__(self, sock):
        self._sock, self.written = sock, b""

    def sendall(self, data: bytes) -> None:
        self.written += data

    def gettimeout(self) -> float:
        return 0.0  # so gunicorn writes at once, without touching the real socket's mode

    def __getattr__(self, name):
        return getattr(self._sock, name)  # addresses for the access log


class JsonErrorWorker(ThreadWorker):
    """gthread, with gunicorn's own error answers (400 bad request line or header, 414 request
    line over 4 KiB, 431, 501 unknown transfer coding, ...) as JSON. gunicorn classifies the
    error, logs it and picks the status as always; only the HTML body is replaced."""

    def handle_error(self, req, client, addr, exc):
        page = _ErrorPage(client)
        super().handle_error(req, page, addr, exc)
        status, _, reason = page.written.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")[2].partition(" ")
        try:
            util.write_nonblock(client, json_error(int(status or 500), reason or "Internal Server Error"))
        except OSError:  # the client is gone
            self.log.debug("Failed to send error message.")


def json_error(status: int, reason: str) -> bytes:
    """A whole HTTP/1.1 answer carrying the SPEC §3 envelope, with a request id of its own."""
    code, message = GUNICORN_ERRORS.get(status, (reason.upper().replace(" ", "_"), f"{reason}."))
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nX-Request-Id: req_{random_base62(16)}\r\n\r\n")
    return head.encode("latin-1") + body

bind = f"{os.environ.get('BIND_HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
worker_class = JsonErrorWorker  # gthread, answering its own errors in JSON
timeout = 30
graceful_timeout = 20
keepalive = 5
# The path only (%(U)s). %(r)s and %(q)s are redacted too (compat clients put keys in the query).
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}o)s'
# Off unless WEB_ACCESS_LOG names a file (`-`: stdout): wpotp logs every request itself (logger
# wpotp.request, JSON on stderr: method, path, status, time, client address, request id), and a
# second line per request was about 2 % of a send's CPU under load (py-spy, 2026-12-07).
accesslog = os.environ.get("WEB_ACCESS_LOG") or None
errorlog = "-"


def child_exit(server, worker):
    """A worker is gone: its live gauges leave /metrics (its counters stay; docs/operations.md, "Metrics")."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from wpotp.metrics import process_gone

        process_gone(worker.pid)


def post_worker_init(worker):
    """The app is loaded: keep its start-up objects out of the garbage collector's full scans."""
    from wpotp.util import settle_heap

    settle_heap()
