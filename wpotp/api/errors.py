"""Every /v1 answer that is not 2xx is `{"error": {"code", "message", "details"}}` (SPEC §3).

Registered on the whole app and applied to /v1 paths, so unknown routes, wrong methods,
oversized bodies, rate limits and outages under /v1 all answer in the envelope.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, jsonify, request
from flask_limiter.errors import RateLimitExceeded
from sqlalchemy.exc import InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException

from ..errors import (
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    ValidationError,
    WpotpError,
)
from ..extensions import db
from ..otp.service import QUEUE_OUTAGES
from .ratelimit import measure_window

log = logging.getLogger("wpotp.api")

OUTAGES = (*QUEUE_OUTAGES, OperationalError, InterfaceError)  # Redis or the database unreachable


def outage_name(exc: BaseException) -> str:
    """What failed, for the log: the exception's class and, for a database error, the driver's
    class and, when the server sent one, the SQLSTATE
    (`OperationalError (psycopg.errors.DeadlockDetected, 40P01)`). Never its message:
    SQLAlchemy's quotes the statement and its parameters."""
    name = type(exc).__name__
    orig = getattr(exc, "orig", None)
    if orig is not None:
        state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        name += f" ({type(orig).__module__}.{type(orig).__name__}{', ' + state if state else ''})"
    return name


def envelope(err: WpotpError) -> Response:
    body: dict = {"code": err.code, "message": err.message}
    if err.details:
        body["details"] = err.details
    response = jsonify({"error": body})
    response.status_code = err.status
    for name, value in err.headers.items():
        response.headers[name] = value
    return response


def _is_api() -> bool:
    return request.path == "/v1" or request.path.startswith("/v1/") or request.path.startswith("/compat/")


# Outside /v1, machines read these (Prometheus, load balancers, providers posting receipts): their
# errors are the JSON envelope too. Every other path is a browser's: an HTML page.
MACHINE_PATHS = ("/metrics", "/healthz", "/readyz", "/webhooks/")


def _is_machine() -> bool:
    path = request.path
    return any(path == p.rstrip("/") or path.startswith(p.rstrip("/") + "/") for p in MACHINE_PATHS)


def _page(err: WpotpError, headers: dict | None = None):
    """A browser's error page (the console's layout), for paths outside the API and the machine paths."""
    from flask import render_template
    from flask_babel import gettext as _

    titles = {404: _("Page not found"), 405: _("Method not allowed"), 413: _("Too large"),
              429: _("Too many requests"), 503: _("Service unavailable")}
    messages = {  # the page's own wording, in the console's language (the API's envelope stays English)
        404: _("There is no page at %(path)s.", path=request.path),
        405: _("That method is not allowed on this page."),
        413: _("The request body is too large."),
        429: _("Too many requests: wait a moment and try again."),
        500: _("Something went wrong on our side; nothing was changed."),
        503: _("A backing service is unavailable; nothing was saved. Retry."),
    }
    body = render_template("console/error.html", title=titles.get(err.status, _("Something went wrong")),
                           message=messages.get(err.status, err.message), status=err.status, **_console_context())
    return body, err.status, {**err.headers, **(headers or {})}


def _console_context() -> dict:
    """The console's layout context (the signed-in user's app switcher), which its blueprint
    gives only to its own routes; none when it cannot be had (the database is what failed)."""
    from ..console.auth import console_context

    try:
        return console_context()
    except Exception:  # noqa: BLE001 - an error page must not fail
        db.session.rollback()
        return {}


def _rate_limited(exc: RateLimitExceeded) -> RateLimited:
    """The 429 for a breached limit; its Retry-After (and RateLimit-*) from the limit's window.

    Should Redis fail while the window is read, the answer is still the 429, with the whole
    window as Retry-After and no RateLimit-* headers: an error handler must not raise."""
    try:
        window = measure_window()
    except OUTAGES:
        log.warning("rate-limit window unreadable for a 429; Retry-After is the whole window")
        window = None
    retry = int(window.reset_at - time.time()) + 1 if window else exc.limit.limit.get_expiry()
    return RateLimited(str(exc.limit.limit), retry)


def _http(exc: HTTPException) -> WpotpError:
    if isinstance(exc, RateLimitExceeded):
        return _rate_limited(exc)
    if exc.code == 404:
        return NotFound(f"No route {request.method} {request.path}.")
    if exc.code == 405:
        return MethodNotAllowed(headers={"Allow": ", ".join(exc.valid_methods or [])})
    if exc.code == 413:
        return PayloadTooLarge()
    if exc.code == 400:
        return ValidationError("The request could not be read.")
    err = WpotpError(exc.description)
    err.status, err.code = exc.code or 500, (exc.name or "error").upper().replace(" ", "_")
    return err


def as_error(exc: Exception) -> WpotpError:
    """Whatever an API request raised, as the product's error (rolled back, logged if unexpected).

    The native envelope and every compat dialect render from this, so a rate limit, an outage or
    a bug is classified once, whichever style the answer takes.
    """
    if isinstance(exc, HTTPException):
        return _http(exc)
    db.session.rollback()
    if isinstance(exc, WpotpError):
        return exc
    if isinstance(exc, OUTAGES):
        log.error("backing service unavailable: %s", outage_name(exc))
        return ServiceUnavailable()
    log.exception("unhandled error")
    err = WpotpError("Something went wrong on our side; nothing was changed.")
    err.status, err.code = 500, "INTERNAL_ERROR"
    return err


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(WpotpError)
    def handle_wpotp(exc: WpotpError):
        return envelope(as_error(exc))

    @app.errorhandler(HTTPException)
    def handle_http(exc: HTTPException):
        if _is_api() or (_is_machine() and (exc.code or 500) >= 400):
            return envelope(_http(exc))
        if (exc.code or 500) < 400 or isinstance(exc, RateLimitExceeded) or exc.code not in (404, 405, 413):
            return exc  # a redirect; the console's own limits and aborts keep their answers
        return _page(_http(exc))

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception):
        err = as_error(exc)
        if _is_api() or _is_machine():
            return envelope(err)
        return _page(err)
