"""Compatibility dialects (SPEC §9): the APIs of hosted OTP services, spoken under /compat/<name>.

Each dialect is a thin edge: it reads its provider's request shapes and auth style, calls the
same service functions as /v1 (wpotp.otp.service, wpotp.messages, wpotp.reports) and renders
answers and errors the way its provider documents them. No rule of SPEC §4 or §8 lives here.
"""

from __future__ import annotations

import re

from flask import Blueprint, Flask

from ..api.auth import KeyExtractor, carries_key, native_key
from ..api.ratelimit import gate
from ..extensions import csrf

_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


def snake_name(name: str) -> str:
    """`attemptsRemaining` -> `attempts_remaining`, for dialects that name fields in snake_case."""
    return _CAMEL.sub(lambda m: "_" + m.group(1).lower(), name)


def compat_blueprint(name: str, key_extractor: KeyExtractor = native_key) -> Blueprint:
    """A dialect's blueprint under /compat/<name>, sharing the native API's request budget.

    `key_extractor` finds the API key where the dialect carries it (wpotp.api.auth.carries_key).
    The budget is one per API-key hash + client IP across /v1 and every dialect (one counter),
    so moving a client to a dialect never doubles what a key may spend.
    """
    from ..api.docs import dialect_openapi

    bp = carries_key(Blueprint(f"compat_{name}", __name__, url_prefix=f"/compat/{name}"), key_extractor)
    bp.add_url_rule("/openapi.json", "openapi", dialect_openapi(name), methods=["GET"])
    return gate(bp)  # the request gate, as on /v1: budget and RateLimit-* headers (wpotp/api/ratelimit.py)


def register_compat(app: Flask) -> None:
    from . import otpapi, wawp, whatotp

    for module in (whatotp, wawp, otpapi):
        csrf.exempt(module.bp)  # keys, not cookies
        app.register_blueprint(module.bp)
