"""The sandbox: no network. Messages land in an outbox in Redis; receipts are simulated.

Test keys always use it. Magic recipients simulate failures:
`+15005550001` fails permanently, `+15005550002` fails in a way worth retrying, `+15005550003` is
not on WhatsApp (a channel `auto` OTP falls back to SMS at once), `+15005550004` is sent but no
receipt ever comes (an `auto` OTP falls back after FALLBACK_AFTER_SECONDS).
The outbox is the one place a code can be read back, and only for sandbox sends.
"""

from __future__ import annotations

import json
from datetime import timedelta

from flask import current_app

from ..extensions import get_queue, redis_client
from ..util import iso, new_id, utcnow
from .base import NOT_ON_WHATSAPP, OutboundOtp, OutboundTemplate, Provider, ProviderError, SendResult

OUTBOX_KEY = "wpotp:sandbox:outbox"
OUTBOX_SIZE = 500
PERMANENT_FAILURE = "+15005550001"
RETRYABLE_FAILURE = "+15005550002"
NOT_ON_WHATSAPP_RECIPIENT = "+15005550003"
NO_RECEIPT_RECIPIENT = "+15005550004"


class SandboxProvider(Provider):
    name = "sandbox"

    def send_otp(self, message: OutboundOtp) -> SendResult:
        return self._deliver(message.recipient, {"otpId": message.otp_id, "appId": message.app_id,
                                                 "template": message.template_name, "language": message.language,
                                                 "text": message.body, "code": message.code})

    def send_template(self, message: OutboundTemplate) -> SendResult:
        return self._deliver(message.recipient, {"messageId": message.message_id, "appId": message.app_id,
                                                 "template": message.template_name, "language": message.language,
                                                 "text": message.body})

    def _deliver(self, recipient: str, fields: dict) -> SendResult:
        if recipient == PERMANENT_FAILURE:
            raise ProviderError("recipient is not on WhatsApp (sandbox)", permanent=True, code="sandbox_undeliverable")
        if recipient == RETRYABLE_FAILURE:
            raise ProviderError("temporary failure (sandbox)", permanent=False, code="sandbox_temporary")
        if recipient == NOT_ON_WHATSAPP_RECIPIENT:
            raise ProviderError("recipient is not on WhatsApp (sandbox)", permanent=True, code=NOT_ON_WHATSAPP)
        message_id = new_id("sbx")
        entry = {"id": message_id, "recipient": recipient, **fields, "createdAt": iso(utcnow())}
        conn = redis_client.conn
        pipe = conn.pipeline()
        pipe.lpush(OUTBOX_KEY, json.dumps(entry))
        pipe.ltrim(OUTBOX_KEY, 0, OUTBOX_SIZE - 1)
        pipe.expire(OUTBOX_KEY, 86400)
        pipe.execute()
        return SendResult(provider_message_id=message_id)

    def after_sent(self, message: OutboundOtp | OutboundTemplate, result: SendResult) -> None:
        """Simulate WhatsApp's receipts: delivered, then read (none for NO_RECEIPT_RECIPIENT)."""
        if message.recipient == NO_RECEIPT_RECIPIENT:
            return
        delay = current_app.config["SANDBOX_RECEIPT_DELAY"]
        queue = get_queue("default")
        func = "wpotp.jobs.receipts.apply_receipt_job"
        for step, status in enumerate(("delivered", "read"), start=1):
            args = ("sandbox", result.provider_message_id, status)
            if delay > 0:
                queue.enqueue_in(timedelta(seconds=delay * step), func, *args, description=f"receipt {status}")
            else:
                queue.enqueue(func, *args, description=f"receipt {status}")


def read_outbox(limit: int = 50, recipient: str | None = None) -> list[dict]:
    """Newest first. Used by the console and by tests to read back a generated code."""
    rows = [json.loads(raw) for raw in redis_client.conn.lrange(OUTBOX_KEY, 0, OUTBOX_SIZE - 1)]
    if recipient:
        rows = [r for r in rows if r["recipient"] == recipient]
    return rows[:limit]
