"""The send job: one OTP generation to its provider."""

from __future__ import annotations

from rq import get_current_job

from ..otp import delivery
from . import job


@job
def send_otp_job(otp_id: str, generation: int, try_number: int = 1) -> str:
    return delivery.deliver_otp(otp_id, generation, try_number)


@job
def fallback_job(otp_id: str, generation: int, reason: str | None = None) -> str:
    """The SMS fallback of a channel `auto` OTP: on a "not on WhatsApp" receipt (`reason`), or its
    no-receipt timer (reason None: acts only once the app's FALLBACK_AFTER_SECONDS have passed)."""
    from ..otp import fallback

    if reason is None:
        return fallback.fall_back(otp_id, generation, fallback.NO_RECEIPT, due_only=True)
    return fallback.fall_back(otp_id, generation, reason)


@job
def send_message_job(message_id: str, try_number: int = 1) -> str:
    from .. import messages

    return messages.deliver_message(message_id, try_number)


@job
def drain_sends_job() -> str:
    """The batch send path (SEND_BATCH): take batches of waiting sends and send each batch
    concurrently (jobs/enqueue.py says how the sends are queued, claimed and rescued)."""
    return delivery.drain_sends(get_current_job().id)
