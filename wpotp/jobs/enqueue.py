"""Putting work on the queues. Job functions are named by dotted path, never imported here."""

from __future__ import annotations

from datetime import timedelta

from ..extensions import get_queue, redis_client
from ..util import random_base62

SEND_JOB = "wpotp.jobs.send.send_otp_job"


def send_job_key(otp_id: str) -> str:
    return f"wpotp:sendjob:{otp_id}"


def enqueue_send(otp_id: str, generation: int, try_number: int = 1, delay: int = 0, ttl: int = 900) -> str:
    """Queue the send of one OTP generation; remember the job id so the sweeper can find it."""
    queue = get_queue("otp")
    job_id = f"send-{otp_id}-g{generation}-t{try_number}-{random_base62(6)}"
    kwargs = dict(job_id=job_id, description=f"send {otp_id} g{generation} t{try_number}",
                  result_ttl=600, failure_ttl=86400)
    if delay > 0:
        queue.enqueue_in(timedelta(seconds=delay), SEND_JOB, otp_id, generation, try_number, **kwargs)
    else:
        queue.enqueue(SEND_JOB, otp_id, generation, try_number, **kwargs)
    redis_client.conn.set(send_job_key(otp_id), job_id, ex=max(ttl, 60) + 300)
    return job_id
