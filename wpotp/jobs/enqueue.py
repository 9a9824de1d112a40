"""Putting work on the queues. Job functions are named by dotted path, never imported here."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from flask import current_app
from redis.client import Pipeline
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import DeferredJobRegistry, ScheduledJobRegistry

from ..extensions import get_queue, redis_client
from ..util import random_base62

SEND_JOB = "wpotp.jobs.send.send_otp_job"
DRAIN_JOB = "wpotp.jobs.send.drain_sends_job"
RECEIPT_DRAIN_JOB = "wpotp.jobs.receipts.drain_receipts_job"  # jobs/receipt_queue.py
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
    if isinstance(job_id, bytes):
        job_id = job_id.decode()
    if job_id.startswith(READY_MARK):  # a batched send not claimed yet: alive while it waits in the list
        return conn.lpos(READY_KEY, job_id[len(READY_MARK):]) is not None
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
    if job.func_name == DRAIN_JOB:
        return hand_back_claimed(job.id)
    if job.func_name == RECEIPT_DRAIN_JOB:
        from .receipt_queue import hand_back_receipts

        return hand_back_receipts(job.id) or ""
    copy = get_queue(job.origin).enqueue(job.func_name, args=job.args, kwargs=job.kwargs,
                                         description=job.description, result_ttl=job.result_ttl,
                                         failure_ttl=job.failure_ttl, job_timeout=job.timeout)
    return copy.id


def send_job_key(otp_id: str) -> str:
    return f"wpotp:sendjob:{otp_id}"


def current_send_job(otp_id: str) -> bytes | None:
    """What `send_job_key` names for this OTP: its latest send job's id, a waiting item's
    READY_MARK, or None (none queued lately)."""
    return redis_client.conn.get(send_job_key(otp_id))


MESSAGE_JOB = "wpotp.jobs.send.send_message_job"
FALLBACK_JOB = "wpotp.jobs.send.fallback_job"


def enqueue_fallback(otp_id: str, generation: int, reason: str | None = None, delay: int = 0,
                     pipeline: Pipeline | None = None) -> str:
    """Queue (or, with a delay, schedule: RQ's scheduled registry, in Redis) the SMS fallback of one
    generation of a channel `auto` OTP (otp/fallback.py). `reason` None: the no-receipt timer.
    With `pipeline` (in MULTI), nothing reaches Redis until the caller executes it."""
    queue = get_queue("otp")
    kwargs = dict(job_id=f"fallback-{otp_id}-g{generation}-{random_base62(6)}",
                  description=f"fallback {otp_id} g{generation}", result_ttl=SEND_RESULT_TTL, failure_ttl=86400,
                  pipeline=pipeline)
    if delay > 0:
        job = queue.enqueue_in(timedelta(seconds=delay), FALLBACK_JOB, otp_id, generation, reason, **kwargs)
    else:
        job = queue.enqueue(FALLBACK_JOB, otp_id, generation, reason, **kwargs)
    return job.id


def enqueue_message(message_id: str, try_number: int = 1, delay: int = 0) -> str:
    """Queue the send of a template message (one RQ job each, on the `otp` queue)."""
    queue = get_queue("otp")
    kwargs = dict(job_id=f"send-{message_id}-t{try_number}-{random_base62(6)}",
                  description=f"send {message_id} t{try_number}", result_ttl=SEND_RESULT_TTL, failure_ttl=86400)
    if delay > 0:
        job = queue.enqueue_in(timedelta(seconds=delay), MESSAGE_JOB, message_id, try_number, **kwargs)
    else:
        job = queue.enqueue(MESSAGE_JOB, message_id, try_number, **kwargs)
    return job.id


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
    if delay <= 0 and current_app.config["SEND_BATCH"]:
        return _append_send(otp_id, generation, try_number, ttl, pipeline)
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


# --- the batch send path (SEND_BATCH > 0) ----------------------------------------------------------
#
# The web tier appends a ready send to READY_KEY in its hand-off pipeline (one round trip) and
# sets DRAIN_FLAG (SET NX, short TTL): only the send that set it enqueues a drain job (a second
# round trip, only when no drain job is pending). A drain job clears the flag as it takes its
# first batch, so the next send enqueues another and several drain jobs can run at once; it
# takes batches until the list is empty (or DRAIN_FOR seconds have passed, then it enqueues its
# successor), so an item appended before its last, empty, claim was claimed and one appended
# after it finds the flag gone or a drain pending.
#
# A claim (one Lua script) moves up to N items into the job's own CLAIMED list and points each
# OTP's `send_job_key` at the job; while an item waits in the list that key says READY_MARK + item.
# So the sweep (otp/maintenance.py rescue_stuck, job_alive) sees a waiting send as alive while it
# is in the list, a claimed one as alive while its drain job runs on a live worker, and hands back
# the sends of a killed worker's job like a lost per-OTP job. A stopping worker hands back the
# CLAIMED list of its unfinished drain job at once (hand_back_claimed).
#
# Retries with a delay stay per-OTP RQ jobs (scheduled), as do template messages.

READY_KEY = "wpotp:sendq"
READY_MARK = "q:"
DRAIN_FLAG = "wpotp:sendq:drain-pending"
DRAIN_FLAG_TTL = 15  # seconds: a flag whose job was lost (enqueue failed) blocks new drains no longer
LINGERING = "wpotp:sendq:lingering"  # drain jobs waiting for sends (jobs/enqueue.py linger), each until its hold lapses
CLAIMED_TTL = 86400  # a killed job's CLAIMED list is only for inspection: the sweep works from rows
DRAIN_FOR = 30  # seconds one drain job keeps taking batches before it hands on to a fresh job
DRAIN_SIZE_WHEN_OFF = 16  # the batch size of a drain job run with SEND_BATCH=0 (sends queued before it was)


def claimed_key(job_id: str) -> str:
    return f"wpotp:sendq:claimed:{job_id}"


def send_item(otp_id: str, generation: int, try_number: int, ttl: int) -> str:
    return f"{otp_id}|{generation}|{try_number}|{ttl}"


def parse_item(raw: bytes | str) -> tuple[str, int, int, int]:
    otp_id, generation, try_number, ttl = (raw.decode() if isinstance(raw, bytes) else raw).split("|")
    return otp_id, int(generation), int(try_number), int(ttl)


def _append_send(otp_id: str, generation: int, try_number: int, ttl: int, pipeline: Pipeline | None) -> str:
    """The batch path's hand-off: the item, its sweep marker and the drain flag (set, if no drain
    job lingers, by NEED_DRAIN, last, so `drain_if_flagged` finds its reply at the end of the
    pipeline's replies)."""
    item = send_item(otp_id, generation, try_number, ttl)
    pipe = pipeline if pipeline is not None else redis_client.conn.pipeline()
    pipe.rpush(READY_KEY, item)
    pipe.set(send_job_key(otp_id), READY_MARK + item, ex=max(ttl, 60) + 300)
    pipe.eval(NEED_DRAIN, 2, DRAIN_FLAG, LINGERING, DRAIN_FLAG_TTL)
    if pipeline is None:
        with pipe:
            drain_if_flagged(pipe.execute())
    return READY_MARK + item


def drain_if_flagged(replies: list) -> str | None:
    """After a hand-off pipeline ending with enqueue_send: enqueue a drain job if this send set
    the drain flag (the batch path, no drain pending). A no-op on the per-OTP path."""
    if not current_app.config["SEND_BATCH"] or not replies or replies[-1] != 1:
        return None
    return enqueue_drain()


def enqueue_drain() -> str:
    job = get_queue("otp").enqueue(DRAIN_JOB, job_id=f"drain-{random_base62(10)}", description="drain sends",
                                   result_ttl=SEND_RESULT_TTL, failure_ttl=86400)
    return job.id


def ensure_drain() -> str | None:
    """The sweep's check: sends waiting and no drain pending (its enqueue was lost, or the batch
    path was turned off with sends in the list): enqueue one."""
    conn = redis_client.conn
    if conn.llen(READY_KEY) and conn.eval(NEED_DRAIN, 2, DRAIN_FLAG, LINGERING, DRAIN_FLAG_TTL) == 1:
        return enqueue_drain()
    return None


_CLAIM = """
if ARGV[8] == '1' then redis.call('DEL', KEYS[2]) end
if ARGV[3] == '1' then redis.call('DEL', KEYS[3]) end
redis.call('ZREM', KEYS[4], ARGV[2])
local items = {}
if ARGV[7] ~= '' then
  items[1] = ARGV[7]
  local key = ARGV[4] .. string.match(ARGV[7], '^[^|]+')
  if redis.call('GET', key) == ARGV[6] .. ARGV[7] then redis.call('SET', key, ARGV[2], 'KEEPTTL') end
end
for i = #items + 1, tonumber(ARGV[1]) do
  local item = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
  if not item then break end
  items[#items + 1] = item
  local key = ARGV[4] .. string.match(item, '^[^|]+')
  if redis.call('GET', key) == ARGV[6] .. item then redis.call('SET', key, ARGV[2], 'KEEPTTL') end
end
if #items > 0 then redis.call('EXPIRE', KEYS[2], ARGV[5]) end
return items
"""

_GIVE_BACK = """
local n = 0
while true do
  local item = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
  if not item then break end
  n = n + 1
  local key = ARGV[2] .. string.match(item, '^[^|]+')
  if redis.call('GET', key) == ARGV[1] then redis.call('SET', key, ARGV[3] .. item, 'KEEPTTL') end
end
return n
"""


_GIVE_BACK_UNSTARTED = """
local n = 0
for i = 1, #ARGV - 3 do
  local item = ARGV[i + 3]
  if redis.call('LREM', KEYS[1], 1, item) == 1 then
    redis.call('RPUSH', KEYS[2], item)
    n = n + 1
    local key = ARGV[2] .. string.match(item, '^[^|]+')
    if redis.call('GET', key) == ARGV[1] then redis.call('SET', key, ARGV[3] .. item, 'KEEPTTL') end
  end
end
return n
"""


def give_back_unstarted(job_id: str, items: list[bytes | str]) -> int:
    """A stopping worker's drain job: the claimed sends it has not started go back to the list,
    each one's sweep marker with it (one script, atomic: a send is in the list or in the CLAIMED
    list, never in neither). Returns how many went back; the job then ends with hand_on_stopping."""
    if not items:
        return 0
    return int(redis_client.conn.eval(_GIVE_BACK_UNSTARTED, 2, claimed_key(job_id), READY_KEY, job_id,
                                      send_job_key(""), READY_MARK, *items))


def hand_on_stopping() -> str | None:
    """A drain job ending because its worker stops: if sends wait, a drain job is made pending
    for them (the flag set, not SET NX: this one cleared it, or a lost one may still hold it). A
    slot of the same stopping worker can still pop that job in its last dequeue slice; it then
    runs no batch and hands on the same way, so the last one waits for a worker that runs."""
    conn = redis_client.conn
    if not conn.llen(READY_KEY):
        return None
    conn.set(DRAIN_FLAG, "1", ex=DRAIN_FLAG_TTL)
    return enqueue_drain()


def claim_sends(job_id: str, count: int, first: bool, woken: bytes | None = None, release: bool = False) \
        -> list[bytes]:
    """Move up to `count` waiting sends into this drain job's CLAIMED list (one script, atomic);
    the first claim also clears the drain flag. `woken`: the send a lingering wait already moved
    there (linger), counted in and first. `release`: the previous batch is done (its rows are
    committed): its CLAIMED list is emptied first, in the same script (release_claimed without a
    round trip of its own)."""
    return redis_client.conn.eval(_CLAIM, 4, READY_KEY, claimed_key(job_id), DRAIN_FLAG, LINGERING, count, job_id,
                                  "1" if first else "0", send_job_key(""), CLAIMED_TTL, READY_MARK, woken or "",
                                  "1" if release else "0")


def send_list_depth(started_grace: float) -> dict[str, int]:
    """The batch path's sends for the console: `waiting` in READY_KEY, `claimed` by drain jobs
    still running (a killed job's CLAIMED list lingers for inspection; its sends are the sweep's,
    not counted). A SCAN over the CLAIMED lists: for a page an operator opens, not a hot path."""
    conn = redis_client.conn
    claimed = 0
    for key in conn.scan_iter(match=claimed_key("*"), count=500):
        job_id = key.decode()[len(claimed_key("")):]
        if job_alive(job_id, started_grace):
            claimed += conn.llen(key)
    return {"waiting": conn.llen(READY_KEY), "claimed": claimed}


def release_claimed(job_id: str) -> None:
    """The batch is done (its rows say what happened): forget the CLAIMED list."""
    redis_client.conn.delete(claimed_key(job_id))


def hand_back_claimed(job_id: str) -> str:
    """A stopping worker's unfinished drain job: its claimed sends go back to the list (a send
    already made is found SENT and skipped), and a drain job takes them."""
    redis_client.conn.eval(_GIVE_BACK, 2, claimed_key(job_id), READY_KEY, job_id, send_job_key(""), READY_MARK)
    return enqueue_drain()


# --- lingering: an idle drain job waits for more instead of ending ---------------------------
# At a steady rate each arrival finds the list empty and its drain job gone, so each send (and each
# receipt) would pay for an RQ job of its own: enqueue, dequeue and RQ's bookkeeping, several times
# the cost of the send. A drain job that finds its list empty instead *lingers* for up to
# DRAIN_LINGER_MS: it enters itself in the list's LINGERING set (until a hold LINGER_HOLD_MS ahead,
# renewed every slice of its wait) and blocks on the list (BLMOVE into its own CLAIMED list: one
# arrival wakes one job). The hand-off's NEED_DRAIN enqueues a drain job only when none lingers (and
# none is pending), so while one waits, arrivals cost no RQ job. A woken job leaves the set as it
# claims (while it sends, others linger or a new job is made pending), and enters it again when it
# runs dry. It leaves for good in one atomic step that checks the list is empty, so an arrival is
# either seen by a lingering job or, after it left, makes a drain pending. A killed job's entry
# lapses within LINGER_HOLD_MS (Redis's clock); the next arrival after that, or the sweep, then makes
# a drain pending for what came meanwhile. At most LINGER_MAX jobs linger on one list (each holds a
# worker slot); others end as before.

LINGER_SLICE = 0.5  # seconds one blocking wait lasts: a stop request is seen within one
LINGER_HOLD_MS = 3000  # how long a lingering job's entry stands unless renewed (every slice)
LINGER_MAX = 4  # drain jobs lingering on one list at most

# The hand-off's test (last in its MULTI): 1 when this arrival must enqueue a drain job (none lingers
# and none is pending: it set the pending flag), else 0.
NEED_DRAIN = """
local t = redis.call('TIME')
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', t[1] * 1000 + math.floor(t[2] / 1000))
if redis.call('ZCARD', KEYS[2]) > 0 then return 0 end
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 1 end
return 0
"""

# KEYS: the list, its LINGERING set, and the set naming jobs with a claimed list (the receipt queue's
# RECEIPT_CLAIMS: so the sweep finds what a wait takes if the job dies; the list itself when none).
# 2: items wait (claim them); 1: lingering (entered or renewed); 0: LINGER_MAX others linger.
_HOLD = """
if redis.call('LLEN', KEYS[1]) > 0 then return 2 end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
if KEYS[3] ~= KEYS[1] then redis.call('SADD', KEYS[3], ARGV[1]) end
return 1
"""

# Leave the LINGERING set; with ARGV[2] == '1' only while the list is empty (1: left, 0: items wait).
# KEYS[3], KEYS[4]: the claims set and the job's CLAIMED list, as for _HOLD: a job whose CLAIMED list
# is empty is no longer named in the claims set once it stops waiting.
_LET_GO = """
if ARGV[2] == '1' and redis.call('LLEN', KEYS[1]) > 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
if KEYS[3] ~= KEYS[1] and redis.call('LLEN', KEYS[4]) == 0 then redis.call('SREM', KEYS[3], ARGV[1]) end
return 1
"""


def linger(list_key: str, lingering_key: str, claims_key: str, claimed: str, job_id: str, milliseconds: int,
           stopping: Callable[[], bool] | None) -> bytes | bool:
    """An idle drain job's wait for more. Returns the item the wait took (now in `claimed`, the
    job's CLAIMED list: claim it with the next claim), True when items wait (claim them), or False
    when the job should end: nothing came within `milliseconds`, its worker is stopping, or
    LINGER_MAX other jobs linger (it is then out of the LINGERING set)."""
    if milliseconds <= 0:
        return False
    conn = redis_client.conn
    deadline = time.monotonic() + milliseconds / 1000
    while True:
        held = int(conn.eval(_HOLD, 3, list_key, lingering_key, claims_key, job_id, LINGER_HOLD_MS, LINGER_MAX))
        if held != 1:
            return held == 2
        left = deadline - time.monotonic()
        if left <= 0 or (stopping is not None and stopping()):
            return not int(conn.eval(_LET_GO, 4, list_key, lingering_key, claims_key, claimed, job_id, "1"))
        item = conn.blmove(list_key, claimed, round(min(LINGER_SLICE, left), 3), "LEFT", "RIGHT")
        if item is not None:
            return item


def let_go(list_key: str, lingering_key: str, claims_key: str, claimed: str, job_id: str) -> None:
    """Leave the LINGERING set, if in it (the job's end)."""
    redis_client.conn.eval(_LET_GO, 4, list_key, lingering_key, claims_key, claimed, job_id, "0")


def linger_for_sends(job_id: str, milliseconds: int, stopping: Callable[[], bool] | None) -> bytes | bool:
    return linger(READY_KEY, LINGERING, READY_KEY, claimed_key(job_id), job_id, milliseconds, stopping)


def let_go_of_sends(job_id: str) -> None:
    let_go(READY_KEY, LINGERING, READY_KEY, claimed_key(job_id), job_id)
