"""A generic HTTP SMS gateway (SMS Gateway for Android, Jasmin's HTTP API, ...): POST
SMS_HTTP_URL with SMS_HTTP_BODY, a JSON template whose strings may hold the placeholders
`{recipient}` (E.164), `{recipient_digits}` (no `+`), `{body}` and `{otp_id}`, and the one
header SMS_HTTP_AUTH_HEADER (`Name: value`). The placeholders are filled into the parsed
JSON, so a body with quotes or newlines stays valid JSON.

The message id is the answer's `id`, `messageId` or `message_id` (SMS Gateway for Android:
`id`), or Jasmin's `Success "<id>"` (as text, or as the JSON's `data`)."""

from __future__ import annotations

import json
import re

from flask import current_app

from .base import OutboundSms, Provider, ProviderError, SendResult
from .http import request
from .sms_common import body_secrets, http_error

DEFAULT_BODY = '{"phoneNumbers": ["{recipient}"], "textMessage": {"text": "{body}"}}'
_JASMIN_SUCCESS = re.compile(r'^Success "([^"]+)"')
_ID_FIELDS = ("id", "messageId", "message_id")


def fill(template: object, values: dict[str, str]) -> object:
    """The JSON template with each string's placeholders replaced."""
    if isinstance(template, str):
        for name, value in values.items():
            template = template.replace("{" + name + "}", value)
        return template
    if isinstance(template, list):
        return [fill(item, values) for item in template]
    if isinstance(template, dict):
        return {key: fill(value, values) for key, value in template.items()}
    return template


def auth_header(raw: str) -> dict[str, str]:
    name, _, value = raw.partition(":")
    return {name.strip(): value.strip()} if name.strip() and value.strip() else {}


class HttpSmsProvider(Provider):
    name = "sms_http"

    def send_sms(self, message: OutboundSms) -> SendResult:
        cfg = current_app.config
        values = {"recipient": message.recipient, "recipient_digits": message.recipient.lstrip("+"),
                  "body": message.body, "otp_id": message.otp_id}
        payload = fill(json.loads(cfg["SMS_HTTP_BODY"] or DEFAULT_BODY), values)
        response = request("POST", cfg["SMS_HTTP_URL"], json=payload, headers=auth_header(cfg["SMS_HTTP_AUTH_HEADER"]))
        secrets = (*body_secrets(message.body), cfg["SMS_HTTP_AUTH_HEADER"].partition(":")[2].strip())
        if not response.ok:
            raise http_error(response, "http", response.text[:200], secrets)
        message_id = message_id_in(response.text)
        if not message_id:
            raise ProviderError("http gateway: the answer carried no message id", permanent=False, code="bad_answer")
        return SendResult(provider_message_id=message_id[:128])


def message_id_in(text: str) -> str | None:
    try:
        answer = json.loads(text)
    except ValueError:
        answer = text.strip()
    if isinstance(answer, dict):
        for name in _ID_FIELDS:
            if isinstance(answer.get(name), str | int) and str(answer[name]):
                return str(answer[name])
        answer = answer.get("data")
    if isinstance(answer, str):
        found = _JASMIN_SUCCESS.match(answer.strip())
        return found.group(1) if found else None
    return None
