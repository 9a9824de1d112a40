"""The send job: one OTP generation to its provider."""

from __future__ import annotations

from rq import get_current_job

from ..otp import delivery
from . import job


@job
def send_otp_job(otp_id: str, generation: int, try_number: int = 1) -> str:
    return delivery.deliver_otp(otp_id, generation, try_number)


@job
def send_message_job(message_id: str, try_number: int = 1) -> str:
    from .. import messages

    return messages.deliver_message(message_id, try_number)


@job
def drain_sends_job() -> str:
    """The batch send path (SEND_BATCH): take batches of waiting sends and send each batch
    concurrently (jobs/enqueue.py says how the sends are queued, claimed and rescued)."""
    return delivery.drain_sends(get_current_job().id)
