"""The native JSON API, /v1 (SPEC §5)."""

from __future__ import annotations

from flask import Blueprint
from werkzeug.routing import BaseConverter

from .ratelimit import gate


class OtpIdConverter(BaseConverter):
    """Any path segment but the action names, so `GET /v1/otp/send` is a 405, not an unknown OTP."""

    regex = r"(?!send$)[^/]+"


bp = Blueprint("api", __name__, url_prefix="/v1")
bp.record_once(lambda state: state.app.url_map.converters.setdefault("otp_id", OtpIdConverter))
# One budget per API-key hash + client IP across every /v1 route and dialect (SPEC §8), not one
# per route: counted by the request gate in one Redis round trip, not by Flask-Limiter's decorators.
gate(bp)


from . import docs, logs, messages, otp, reports, templates  # noqa: E402,F401  (routes register on bp)
