"""The native JSON API, /v1 (SPEC §5)."""

from __future__ import annotations

from flask import Blueprint
from werkzeug.routing import BaseConverter

from ..extensions import limiter
from .auth import api_limit_key, api_limit_value
from .ratelimit import rate_limit_headers, read_window_at_check


class OtpIdConverter(BaseConverter):
    """Any path segment but the action names, so `GET /v1/otp/send` is a 405, not an unknown OTP."""

    regex = r"(?!send$)[^/]+"


bp = Blueprint("api", __name__, url_prefix="/v1")
bp.record_once(lambda state: state.app.url_map.converters.setdefault("otp_id", OtpIdConverter))
# One budget per API-key hash + client IP across every /v1 route (SPEC §8), not one per route.
limiter.shared_limit(api_limit_value, scope="api", key_func=api_limit_key)(bp)


bp.before_request(read_window_at_check)  # right after the limiter's check, before the view writes anything
bp.after_request(rate_limit_headers)


from . import logs, messages, otp, reports, templates  # noqa: E402,F401  (routes register on bp)
