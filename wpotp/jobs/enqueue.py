"""Putting work on the queues. Job functions are named by dotted path, never imported here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from redis.client import Pipeline
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from ..extensions import get_queue, redis_client
from ..util import random_base62

SEND_JOB = "wpotp.jobs.send.send_otp_job"


_WAITING = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED}


def job_alive(job_id: bytes | str | None, started_grace: float) -> bool:
    """Is this job still going to run, or running? A job `started` longer ago than `started_grace`
    seconds is taken for dead (its worker was killed: RQ notices only minutes later)."""
    if job_id is None:
        return False
    try:
        job = Job.fetch(job_id.decode() if isinstance(job_id, bytes) else job_id, connection=redis_client.conn)
    except NoSuchJobError:
        return False
    status = job.get_status()
    if status in _WAITING:
        return True
    if status == JobStatus.STARTED and job.started_at is not None:
        started = job.started_at if job.started_at.tzinfo else job.started_at.replace(tzinfo=UTC)
        return (datetime.now(UTC) - started).total_seconds() < started_grace
    return False


def send_job_key(otp_id: str) -> str:
    return f"wpotp:sendjob:{otp_id}"


def enqueue_send(otp_id: str, generation: int, try_number: int = 1, delay: int = 0, ttl: int = 900,
                 pipeline: Pipeline | None = None) -> str:
    """Queue the send of one OTP generation; remember the job id so the sweeper can find it.

    With `pipeline` (in MULTI), nothing reaches Redis until the caller executes it.
    """
    queue = get_queue("otp")
    job_id = f"send-{otp_id}-g{generation}-t{try_number}-{random_base62(6)}"
    kwargs = dict(job_id=job_id, description=f"send {otp_id} g{generation} t{try_number}",
                  result_ttl=600, failure_ttl=86400)
    if delay > 0:
        queue.enqueue_in(timedelta(seconds=delay), SEND_JOB, otp_id, generation, try_number, **kwargs,
                         pipeline=pipeline)
    else:
        queue.enqueue(SEND_JOB, otp_id, generation, try_number, **kwargs, pipeline=pipeline)
    (pipeline or redis_client.conn).set(send_job_key(otp_id), job_id, ex=max(ttl, 60) + 300)
    return job_id
