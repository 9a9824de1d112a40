"""The native JSON API, /v1 (SPEC §5)."""

from __future__ import annotations

from flask import Blueprint

from ..extensions import limiter
from .auth import api_limit_key, api_limit_value

bp = Blueprint("api", __name__, url_prefix="/v1")
limiter.limit(api_limit_value, key_func=api_limit_key)(bp)

from . import otp, templates  # noqa: E402,F401  (routes register on bp)
