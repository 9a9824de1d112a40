"""/compat/whatotp — WhatOTP's API: send, verify and template messages over WhatsApp.

WhatOTP authenticates with `Authorization: Bearer <key>` (the native extractor, so its
blueprint names none), names fields in snake_case and calls an OTP a session. Its documents show no
error body, so errors keep the native envelope and statuses (wpotp.api.errors).
"""

from __future__ import annotations

from typing import Literal

from flask import jsonify
from pydantic import Field

from .. import messages
from ..api.auth import require_key
from ..api.messages import VariableValue
from ..api.schemas import Strict, Text, parse_body
from ..extensions import client_ip
from ..models import Message, Otp
from ..otp import service
from ..util import iso
from . import compat_blueprint

bp = compat_blueprint("whatotp")


class SendBody(Strict):
    to: Text = Field(min_length=1, max_length=32)
    channel: Literal["whatsapp"]  # the only channel WhatOTP documents, and the only one wpotp has
    length: int | None = Field(None, ge=4, le=8)


class VerifyBody(Strict):
    code: Text = Field(min_length=1, max_length=16)
    session_id: Text = Field(min_length=1, max_length=64)


class MessageBody(Strict):
    phone_number: Text = Field(min_length=1, max_length=32)
    template_id: Text = Field(min_length=1, max_length=40)
    variables: dict[Text, VariableValue] = Field(default_factory=dict, max_length=20)
    expires_in_seconds: int = Field(300, ge=60, le=86400)


def session(otp: Otp) -> dict:
    return {"session_id": otp.id, "status": otp.status.lower(), "to": otp.recipient, "channel": "whatsapp",
            "expires_at": iso(otp.expires_at)}


@bp.post("/v1/otp/send")
def send():
    """WhatOTP answers 200 with the `session_id` that verify takes: the OTP's id."""
    key, app = require_key()
    body = parse_body(SendBody)
    otp, _created = service.send_otp(app, key, service.SendRequest(recipient=body.to, length=body.length))
    return jsonify(session(otp)), 200


@bp.post("/v1/otp/verify")
def verify():
    _key, app = require_key()
    body = parse_body(VerifyBody)
    otp = service.verify_otp(app, body.session_id, body.code, client_ip())
    return jsonify({"verified": True, "session_id": otp.id, "status": otp.status.lower(),
                    "verified_at": iso(otp.verified_at)})


@bp.post("/v1/messages/send")
def send_message():
    """Queued, not sent: 202, as WhatOTP documents; the worker sends it."""
    key, app = require_key()
    body = parse_body(MessageBody)
    req = messages.MessageRequest(recipient=body.phone_number, template_id=body.template_id,
                                  variables=body.variables, expires_in=body.expires_in_seconds)
    return jsonify(queued(messages.send_message(app, key, req))), 202


def queued(message: Message) -> dict:
    return {"message_id": message.id, "status": message.status.lower(), "phone_number": message.recipient,
            "template_id": message.template_id, "expires_at": iso(message.expires_at)}
