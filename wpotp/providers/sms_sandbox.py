"""The SMS sandbox: no network. Texts land in an SMS outbox in Redis; a `delivered` report is
simulated. Test keys always use it for channel sms, with the WhatsApp sandbox's magic
recipients: `+15005550001` fails permanently, `+15005550002` fails in a way worth retrying."""

from __future__ import annotations

import json
from datetime import timedelta

from flask import current_app

from ..extensions import get_queue, redis_client
from ..util import iso, new_id, utcnow
from .base import OutboundSms, Provider, ProviderError, SendResult
from .sandbox import OUTBOX_SIZE, PERMANENT_FAILURE, RETRYABLE_FAILURE

SMS_OUTBOX_KEY = "wpotp:sandbox:sms_outbox"


class SandboxSmsProvider(Provider):
    name = "sms_sandbox"

    def send_sms(self, message: OutboundSms) -> SendResult:
        if message.recipient == PERMANENT_FAILURE:
            raise ProviderError("recipient cannot receive SMS (sandbox)", permanent=True, code="sandbox_undeliverable")
        if message.recipient == RETRYABLE_FAILURE:
            raise ProviderError("temporary failure (sandbox)", permanent=False, code="sandbox_temporary")
        message_id = new_id("sbs")
        entry = {"id": message_id, "recipient": message.recipient, "otpId": message.otp_id, "appId": message.app_id,
                 "channel": "sms", "text": message.body, "createdAt": iso(utcnow())}
        pipe = redis_client.conn.pipeline()
        pipe.lpush(SMS_OUTBOX_KEY, json.dumps(entry))
        pipe.ltrim(SMS_OUTBOX_KEY, 0, OUTBOX_SIZE - 1)
        pipe.expire(SMS_OUTBOX_KEY, 86400)
        pipe.execute()
        return SendResult(provider_message_id=message_id)

    def after_sent(self, message, result: SendResult) -> None:
        """Simulate the carrier's delivery report (SMS has no `read`)."""
        delay = current_app.config["SANDBOX_RECEIPT_DELAY"]
        args = (self.name, result.provider_message_id, "delivered")
        func = "wpotp.jobs.receipts.apply_receipt_job"
        if delay > 0:
            get_queue("default").enqueue_in(timedelta(seconds=delay), func, *args, description="sms receipt delivered")
        else:
            get_queue("default").enqueue(func, *args, description="sms receipt delivered")


def read_sms_outbox(limit: int = 50, recipient: str | None = None) -> list[dict]:
    """Newest first: the sandbox's texts (the one place an SMS code can be read back)."""
    rows = [json.loads(raw) for raw in redis_client.conn.lrange(SMS_OUTBOX_KEY, 0, OUTBOX_SIZE - 1)]
    if recipient:
        rows = [r for r in rows if r["recipient"] == recipient]
    return rows[:limit]
