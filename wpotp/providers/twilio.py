"""Twilio Programmable Messaging: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`,
form-encoded `To`, `From` (or `MessagingServiceSid` when TWILIO_FROM is an `MG...` SID),
`Body` and `StatusCallback`, HTTP Basic with the account SID and auth token. A 201 answer's
`sid` (`SM...`) is what the status callbacks (/webhooks/sms/twilio) refer to."""

from __future__ import annotations

from flask import current_app

from .base import OutboundSms, Provider, ProviderError, SendResult
from .http import request
from .sms_common import body_secrets, callback_url, http_error


class TwilioProvider(Provider):
    name = "sms_twilio"

    def send_sms(self, message: OutboundSms) -> SendResult:
        cfg = current_app.config
        sid, token, sender = cfg["TWILIO_ACCOUNT_SID"], cfg["TWILIO_AUTH_TOKEN"], cfg["TWILIO_FROM"]
        form = {"To": message.recipient, "Body": message.body}
        form["MessagingServiceSid" if sender.startswith("MG") else "From"] = sender
        callback = callback_url("twilio")
        if callback:
            form["StatusCallback"] = callback
        url = f"{cfg['TWILIO_API_URL']}/2010-04-01/Accounts/{sid}/Messages.json"
        response = request("POST", url, data=form, auth=(sid, token))
        secrets = (token, *body_secrets(message.body))
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        answer = answer if isinstance(answer, dict) else {}
        if not response.ok:
            reason = f"{answer.get('code', '')} {answer.get('message') or response.reason}".strip()
            raise http_error(response, "twilio", reason, secrets)
        message_sid = answer.get("sid")
        if not isinstance(message_sid, str) or not message_sid:
            raise ProviderError("twilio: the answer carried no message sid", permanent=False, code="bad_answer")
        return SendResult(provider_message_id=message_sid)
