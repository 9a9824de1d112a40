"""/v1/otp: send, verify, read, resend, cancel, list, attempts."""

from __future__ import annotations

from flask import jsonify

from ..errors import InvalidPhone, ValidationError
from ..extensions import client_ip
from ..otp import queries, service
from ..otp.phones import normalize_recipient
from ..util import iso, parse_iso
from . import bp
from .auth import require_key
from .schemas import ListOtpQuery, ResendBody, SendOtpBody, VerifyBody, parse_body, parse_query
from .serializers import attempt_item, otp_detail, otp_summary


@bp.post("/otp/send")
def send():
    key, app = require_key()
    body = parse_body(SendOtpBody)
    req = service.SendRequest(recipient=body.recipient, template_id=body.templateId, code=body.code,
                              reference=body.reference, length=body.length, ttl=body.ttl, language=body.language,
                              channel=body.channel)
    otp, created = service.send_otp(app, key, req)
    return jsonify(otp_summary(otp)), 201 if created else 200


@bp.post("/otp/<otp_id:otp_id>/verify")
def verify(otp_id: str):
    _key, app = require_key()
    body = parse_body(VerifyBody)
    otp = service.verify_otp(app, otp_id, body.code, client_ip())
    return jsonify({"verified": True, "status": otp.status, "id": otp.id, "verifiedAt": iso(otp.verified_at)})


@bp.get("/otp/<otp_id:otp_id>")
def show(otp_id: str):
    _key, app = require_key()
    return jsonify(otp_detail(service.get_otp(app, otp_id, with_timeline=True)))


@bp.post("/otp/<otp_id:otp_id>/resend")
def resend(otp_id: str):
    _key, app = require_key()
    body = parse_body(ResendBody, allow_empty=True)
    return jsonify(otp_detail(service.resend_otp(app, otp_id, channel=body.channel)))


@bp.post("/otp/<otp_id:otp_id>/cancel")
def cancel(otp_id: str):
    _key, app = require_key()
    return jsonify(otp_detail(service.cancel_otp(app, otp_id)))


@bp.get("/otp")
def index():
    _key, app = require_key()
    q = parse_query(ListOtpQuery)
    rows, next_cursor = queries.list_otps(app.id, otp_filter(q), q.limit, q.cursor)
    return jsonify({"data": [otp_detail(o, with_timeline=False) for o in rows], "nextCursor": next_cursor})


def otp_filter(q: ListOtpQuery) -> queries.OtpFilter:
    """The list's filter from its parsed query (shared with the compat dialects' lists)."""
    flt = queries.OtpFilter(status=q.status, reference=q.reference)
    fields = {}
    if q.recipient:
        try:
            flt.recipient = normalize_recipient(q.recipient)[0]
        except InvalidPhone:
            fields["recipient"] = "expected E.164"
    for name, raw in (("from", q.from_), ("to", q.to)):
        if raw:
            try:
                setattr(flt, "created_from" if name == "from" else "created_to", parse_iso(raw))
            except ValueError:
                fields[name] = "expected an ISO-8601 timestamp"
    if fields:
        raise ValidationError("Invalid query parameters.", details={"fields": fields})
    return flt


@bp.get("/otp/<otp_id:otp_id>/attempts")
def attempts(otp_id: str):
    _key, app = require_key()
    otp = service.get_otp(app, otp_id)
    return jsonify({"data": [attempt_item(a) for a in queries.list_attempts(otp.id)]})
