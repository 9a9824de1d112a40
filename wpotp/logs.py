"""Structured logs: one JSON object per line, stamped with the request id and the RQ job id.

The request id is the caller's `X-Request-Id` (8-64 printable ASCII characters) or a new
`req_...`; it is sent back in the answer's `X-Request-Id`, and every RQ job the request
enqueues carries it in its meta (`TracedQueue`), as does every job such a job enqueues (a
retry, a sandbox receipt, a webhook retry): the worker's log lines of that work show the same
`request_id` as the request's. A drain job of the batch paths (SEND_BATCH, RECEIPT_BATCH)
works for many requests, so it carries none: its lines name the OTP ids instead.

No code or API key is ever passed to a logger; request logs carry the path, never the
query string or body.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from urllib.parse import unquote_plus

from flask import Flask, g, has_request_context, request
from rq import Queue
from rq.job import get_current_job

from .util import random_base62

# /webhooks/gateway/<token>: the token authenticates the gateway, so it never reaches a log.
_SECRET_PATH = re.compile(r"^(/webhooks/gateway/)[^/]+")


def loggable_path(path: str) -> str:
    """The request path as logs may show it: URL tokens replaced by ***."""
    return _SECRET_PATH.sub(r"\1***", path)


# Query parameters that carry a secret: Wawp's `access_token` (an API key) and the codes that
# verify calls may take in the query string (SPEC §4: a code never reaches a log line).
SECRET_PARAMS = frozenset({"access_token", "code", "otp_code"})


def loggable_query(query: str) -> str:
    """The query string as logs may show it: secret parameters' values replaced by ***.

    Names are compared decoded and case-folded, so `access%5Ftoken=` is caught too.
    """
    parts = []
    for part in query.split("&"):
        name, sep, _value = part.partition("=")
        parts.append(f"{name}=***" if sep and unquote_plus(name).strip().lower() in SECRET_PARAMS else part)
    return "&".join(parts)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if has_request_context():
            entry["request_id"] = g.get("request_id")
        try:
            job = get_current_job()
            if job is not None:
                entry["job_id"] = job.id
                if job.meta.get("request_id"):
                    entry["request_id"] = job.meta["request_id"]
        except Exception:  # noqa: S110 - logging must never fail
            pass
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(app: Flask) -> None:
    root = logging.getLogger("wpotp")
    if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    root.setLevel(app.config["LOG_LEVEL"])
    root.propagate = False


def install_request_id(app: Flask) -> None:
    log = logging.getLogger("wpotp.request")

    @app.before_request
    def _start():
        incoming = request.headers.get("X-Request-Id", "")
        g.request_id = incoming if 8 <= len(incoming) <= 64 and incoming.isascii() and incoming.isprintable() \
            else "req_" + random_base62(16)
        g.started = time.monotonic()

    @app.after_request
    def _finish(response):
        response.headers["X-Request-Id"] = g.get("request_id", "")
        if "started" in g:
            log.info("%s %s %s %.1fms %s", request.method, loggable_path(request.path), response.status_code,
                     (time.monotonic() - g.started) * 1000, request.remote_addr or "-")
        return response


def current_request_id() -> str | None:
    """The request id of what is running: the request's, or the one the running RQ job carries."""
    if has_request_context():
        return g.get("request_id")
    job = get_current_job()
    return job.meta.get("request_id") if job is not None else None


class TracedQueue(Queue):
    """An RQ queue whose new jobs carry the current request id in their meta (no extra round
    trip: the meta is written with the job), for the worker's log lines (JsonFormatter)."""

    def create_job(self, func, *args, meta: dict | None = None, **kwargs):
        request_id = current_request_id()
        if request_id and not _serves_many(func):
            meta = {**(meta or {}), "request_id": request_id}
        return super().create_job(func, *args, meta=meta, **kwargs)


def _serves_many(func) -> bool:
    from .jobs.enqueue import DRAIN_JOB, RECEIPT_DRAIN_JOB

    return func in (DRAIN_JOB, RECEIPT_DRAIN_JOB)
