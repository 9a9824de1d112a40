"""Putting work on the queues. Job functions are named by dotted path, never imported here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from redis.client import Pipeline
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import DeferredJobRegistry, ScheduledJobRegistry

from ..extensions import get_queue, redis_client
from ..util import random_base62

SEND_JOB = "wpotp.jobs.send.send_otp_job"
SEND_RESULT_TTL = 60  # seconds a finished send job stays in Redis (see enqueue_send)
WORKERS_KEY = "wpotp:workers"  # the ids of worker processes seen lately (each alive while its key lives)


def alive_key(process_id: str) -> str:
    """Set by every running `wpotp worker` process for a few seconds at a time (jobs/worker.py)."""
    return f"wpotp:worker-alive:{process_id}"


def note_worker_alive(process_id: str, ttl: int, workers: list[str]) -> None:
    """The process is alive, with these RQ workers (one per slot) running its jobs."""
    with redis_client.conn.pipeline(transaction=False) as pipe:
        pipe.set(alive_key(process_id), " ".join(workers), ex=ttl)
        pipe.sadd(WORKERS_KEY, process_id)
        pipe.execute()


def note_worker_gone(process_id: str) -> None:
    with redis_client.conn.pipeline(transaction=False) as pipe:
        pipe.delete(alive_key(process_id))
        pipe.srem(WORKERS_KEY, process_id)
        pipe.execute()


def workers_alive() -> int:
    """How many `wpotp worker` processes are running now (for /readyz); forgets the dead ones."""
    conn = redis_client.conn
    ids = [member.decode() for member in conn.smembers(WORKERS_KEY)]
    if not ids:
        return 0
    with conn.pipeline(transaction=False) as pipe:
        for process_id in ids:
            pipe.exists(alive_key(process_id))
        alive = pipe.execute()
    dead = [process_id for process_id, up in zip(ids, alive, strict=True) if not up]
    if dead:
        conn.srem(WORKERS_KEY, *dead)  # a live one adds itself back at its next beat
    return len(ids) - len(dead)


def job_alive(job_id: bytes | str | None, started_grace: float) -> bool:
    """Is this job still going to run, or running?

    Its status alone is not enough: a worker killed between popping a job off its queue and
    starting it leaves the job `queued` in no queue, and one killed mid-job leaves it `started`
    for minutes. So a waiting job must still be where it waits, and a started one must belong
    to an RQ worker that its process still names as running (wpotp's worker processes say so in
    Redis every few seconds; a slot's worker replaced after a Redis outage is no longer named;
    for a worker of another kind, one started longer ago than `started_grace` seconds counts as
    dead).
    With a grace of 0 a started job counts as over: the caller knows it by other means (a lease).
    """
    if job_id is None:
        return False
    conn = redis_client.conn
    try:
        job = Job.fetch(job_id.decode() if isinstance(job_id, bytes) else job_id, connection=conn)
    except NoSuchJobError:
        return False
    status = job.get_status()
    queue = get_queue(job.origin)
    if status == JobStatus.QUEUED:
        return conn.lpos(queue.key, job.id) is not None
    if status == JobStatus.SCHEDULED:
        return job.id in ScheduledJobRegistry(queue=queue)
    if status == JobStatus.DEFERRED:
        return job.id in DeferredJobRegistry(queue=queue)
    if status == JobStatus.STARTED:
        return started_grace > 0 and _runner_alive(job, started_grace)
    return False


def _runner_alive(job: Job, started_grace: float) -> bool:
    process_id, slash, _slot = (job.worker_name or "").partition("/")
    if slash:  # a wpotp worker (`<process id>/<slot>.<n>`): its process names its live workers
        alive = redis_client.conn.get(alive_key(process_id))
        return alive is not None and job.worker_name in alive.decode().split()
    if job.started_at is None:
        return False
    started = job.started_at if job.started_at.tzinfo else job.started_at.replace(tzinfo=UTC)
    return (datetime.now(UTC) - started).total_seconds() < started_grace


def hand_back(job: Job) -> str:
    """Queue again a job that a stopping worker could not finish (jobs are safe to run twice)."""
    if job.func_name == SEND_JOB:
        return enqueue_send(*job.args)
    copy = get_queue(job.origin).enqueue(job.func_name, args=job.args, kwargs=job.kwargs,
                                         description=job.description, result_ttl=job.result_ttl,
                                         failure_ttl=job.failure_ttl, job_timeout=job.timeout)
    return copy.id


def send_job_key(otp_id: str) -> str:
    return f"wpotp:sendjob:{otp_id}"


def enqueue_send(otp_id: str, generation: int, try_number: int = 1, delay: int = 0, ttl: int = 900,
                 pipeline: Pipeline | None = None) -> str:
    """Queue the send of one OTP generation; remember the job id so the sweeper can find it.

    With `pipeline` (in MULTI), nothing reaches Redis until the caller executes it.

    A finished send job is kept only SEND_RESULT_TTL seconds: nothing reads its result (the row
    says what happened), and at hundreds of sends a second ten minutes of finished jobs is a
    lot of Redis memory. Not 0: RQ 3 deletes such a job by walking its registries and
    executions outside the job-end pipeline, about six more round trips per job than letting
    it expire (bench/cpu_per_send.py, 2026-12-02). The sweep (otp/maintenance.py) takes a job
    it cannot find for a dead one, but it only looks at QUEUED rows, and a send job that ends
    leaves its row QUEUED only when it queued the next try (which `send_job_key` then names).
    A failed job is kept for a day.
    """
    queue = get_queue("otp")
    job_id = f"send-{otp_id}-g{generation}-t{try_number}-{random_base62(6)}"
    kwargs = dict(job_id=job_id, description=f"send {otp_id} g{generation} t{try_number}",
                  result_ttl=SEND_RESULT_TTL, failure_ttl=86400)
    if delay > 0:
        queue.enqueue_in(timedelta(seconds=delay), SEND_JOB, otp_id, generation, try_number, **kwargs,
                         pipeline=pipeline)
    else:
        queue.enqueue(SEND_JOB, otp_id, generation, try_number, **kwargs, pipeline=pipeline)
    (pipeline or redis_client.conn).set(send_job_key(otp_id), job_id, ex=max(ttl, 60) + 300)
    return job_id
