"""Vonage (Nexmo) SMS API: `POST https://rest.nexmo.com/sms/json`, form-encoded `api_key`,
`api_secret`, `from`, `to` (digits, no `+`), `text` (`type=unicode` when it is not GSM-7) and
`callback`. The answer is 200 even for a refusal: `messages[0].status` "0" is success, any
other its error. `messages[0]["message-id"]` is what the delivery reports refer to."""

from __future__ import annotations

from flask import current_app

from ..otp.sms_text import is_gsm7
from .base import OutboundSms, Provider, ProviderError, SendResult
from .http import request
from .sms_common import body_secrets, callback_url, http_error, redact

# Vonage's send statuses worth trying again: throttled, internal error, too many existing binds.
RETRYABLE = {"1", "5", "10"}
# The operator must fix settings: invalid credentials, account barred or out of credit, not
# enabled for HTTP, invalid signature, invalid sender, non-whitelisted destination (trial).
CONFIG_FAULTS = {"4", "8", "9", "11", "14", "15", "29", "32"}


class VonageProvider(Provider):
    name = "sms_vonage"

    def send_sms(self, message: OutboundSms) -> SendResult:
        cfg = current_app.config
        form = {"api_key": cfg["VONAGE_API_KEY"], "api_secret": cfg["VONAGE_API_SECRET"],
                "from": cfg["VONAGE_FROM"], "to": message.recipient.lstrip("+"), "text": message.body}
        if not is_gsm7(message.body):
            form["type"] = "unicode"
        callback = callback_url("vonage")
        if callback:
            form["callback"] = callback
        response = request("POST", f"{cfg['VONAGE_API_URL']}/sms/json", data=form)
        secrets = (cfg["VONAGE_API_SECRET"], *body_secrets(message.body))
        if not response.ok:
            raise http_error(response, "vonage", response.reason or "", secrets)
        try:
            first = response.json()["messages"][0]
            status = str(first["status"])
        except (ValueError, KeyError, IndexError, TypeError):
            raise ProviderError("vonage: the answer was not an SMS API answer", permanent=False,
                                code="bad_answer") from None
        if status == "0" and first.get("message-id"):
            return SendResult(provider_message_id=str(first["message-id"]))
        reason = redact(f"vonage status {status}: {first.get('error-text') or 'refused'}", secrets)
        raise ProviderError(reason, permanent=status not in RETRYABLE, code=f"vonage_{status}",
                            config_fault=status in CONFIG_FAULTS)
