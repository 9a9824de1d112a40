"""The native JSON API, /v1 (SPEC §5)."""

from __future__ import annotations

from flask import Blueprint
from werkzeug.routing import BaseConverter

from ..extensions import limiter
from .auth import api_limit_key, api_limit_value


class OtpIdConverter(BaseConverter):
    """Any path segment but the action names, so `GET /v1/otp/send` is a 405, not an unknown OTP."""

    regex = r"(?!send$)[^/]+"


bp = Blueprint("api", __name__, url_prefix="/v1")
bp.record_once(lambda state: state.app.url_map.converters.setdefault("otp_id", OtpIdConverter))
limiter.limit(api_limit_value, key_func=api_limit_key)(bp)

from . import otp, templates  # noqa: E402,F401  (routes register on bp)
