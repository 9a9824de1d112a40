"""/v1/messages: non-OTP template messages (SPEC §5)."""

from __future__ import annotations

from typing import Annotated

from flask import jsonify
from pydantic import Field

from .. import messages
from . import bp
from .auth import require_key
from .schemas import Strict, Text, parse_body
from .serializers import message_detail

# Meta refuses empty parameters and caps them at 1,024 characters; Text already refuses tabs and new lines.
VariableValue = Annotated[Text, Field(min_length=1, max_length=1024)]


class SendMessageBody(Strict):
    recipient: Text = Field(min_length=1, max_length=32)
    templateId: Text = Field(min_length=1, max_length=40)  # noqa: N815 - the API's field name
    variables: dict[Text, VariableValue] = Field(default_factory=dict, max_length=20)
    expiresInSeconds: int = Field(300, ge=60, le=86400)  # noqa: N815


@bp.post("/messages")
def send_message():
    key, app = require_key()
    body = parse_body(SendMessageBody)
    req = messages.MessageRequest(recipient=body.recipient, template_id=body.templateId,
                                  variables=body.variables, expires_in=body.expiresInSeconds)
    message = messages.send_message(app, key, req)
    return jsonify(message_detail(message, with_timeline=False)), 202


@bp.get("/messages/<message_id>")
def show_message(message_id: str):
    _key, app = require_key()
    return jsonify(message_detail(messages.get_message(app, message_id)))
