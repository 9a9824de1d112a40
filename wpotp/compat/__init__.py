"""Compatibility dialects (SPEC §9): the APIs of hosted OTP services, spoken under /compat/<name>.

Each dialect is a thin edge: it reads its provider's request shapes and auth style, calls the
same service functions as /v1 (wpotp.otp.service, wpotp.messages, wpotp.reports) and renders
answers and errors the way its provider documents them. No rule of SPEC §4 or §8 lives here.
"""

from __future__ import annotations

import re

from flask import Blueprint, Flask

from ..api.auth import KeyExtractor, api_limit_key, api_limit_value, carries_key, native_key
from ..api.ratelimit import rate_limit_headers, read_window_at_check
from ..extensions import csrf, limiter

_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


def snake_name(name: str) -> str:
    """`attemptsRemaining` -> `attempts_remaining`, for dialects that name fields in snake_case."""
    return _CAMEL.sub(lambda m: "_" + m.group(1).lower(), name)


def compat_blueprint(name: str, key_extractor: KeyExtractor = native_key) -> Blueprint:
    """A dialect's blueprint under /compat/<name>, sharing the native API's request budget.

    `key_extractor` finds the API key where the dialect carries it (wpotp.api.auth.carries_key).
    The budget is one per API-key hash + client IP across /v1 and every dialect (scope "api"),
    so moving a client to a dialect never doubles what a key may spend.
    """
    bp = carries_key(Blueprint(f"compat_{name}", __name__, url_prefix=f"/compat/{name}"), key_extractor)
    limiter.shared_limit(api_limit_value, scope="api", key_func=api_limit_key)(bp)
    bp.before_request(read_window_at_check)  # the window read at check time, as on /v1 (wpotp/api/ratelimit.py)
    bp.after_request(rate_limit_headers)  # RateLimit-* on every answer, as on /v1 (SPEC §8)
    return bp


def register_compat(app: Flask) -> None:
    from . import otpapi, wawp, whatotp

    for module in (whatotp, wawp, otpapi):
        csrf.exempt(module.bp)  # keys, not cookies
        app.register_blueprint(module.bp)
