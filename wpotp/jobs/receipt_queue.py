"""The receipt queue (RECEIPT_BATCH > 0): the Redis side of receipts handed off in batches.

Reached through the queue port (wpotp/jobs/port.py, `extensions.job_queue()`); what a receipt
is and how a batch is applied to the database stay in wpotp/otp/receipts.py.

The webhook endpoint, once the signature holds, RPUSHes its receipts to RECEIPT_QUEUE and sets
RECEIPT_DRAIN_FLAG (SET NX, short TTL) in one MULTI: only the hand-off that set the flag enqueues a
drain job, so at most one is pending. A drain job clears the flag with its first claim (a receipt
that arrives after that makes the next job pending) and claims batches until the list is empty,
or for RECEIPT_DRAIN_FOR seconds and then hands on to a fresh job.

A claim (one Lua script) moves up to RECEIPT_BATCH items into the job's own CLAIMED list and names
the job in RECEIPT_CLAIMS; the job forgets both once the batch has committed. A stopping worker gives
an unfinished job's CLAIMED list back to the head of the queue (hand_back_receipts); the sweep does the
same for a job that is no longer alive (a SIGKILLed worker: rescue_receipts). Receipts are idempotent,
so one applied twice (killed after its commit, before it forgot the claim) changes nothing more.
Redis unreachable at hand-off: the receipts are applied inline, as with RECEIPT_BATCH=0, and the
provider gets its 200 only once they are durable (in Redis or in the database).
"""

from __future__ import annotations

import logging

import redis

from ..extensions import get_queue, redis_client
from ..util import random_base62
from .enqueue import NEED_DRAIN, RECEIPT_DRAIN_JOB, job_alive, let_go, linger

log = logging.getLogger("wpotp.receipts")

RECEIPT_QUEUE = "wpotp:receiptq"
RECEIPT_DRAIN_FLAG = "wpotp:receiptq:drain-pending"
RECEIPT_CLAIMS = "wpotp:receiptq:claims"  # the drain jobs holding a CLAIMED list
RECEIPT_LINGERING = "wpotp:receiptq:lingering"  # receipt drain jobs waiting for more (jobs/enqueue.py linger)
RECEIPT_DRAIN_FLAG_TTL = 15  # seconds: a flag whose job was lost blocks new drains no longer than this
RECEIPT_CLAIMED_TTL = 86400
RECEIPT_DRAIN_FOR = 30  # seconds one drain job keeps claiming before it hands on to a fresh job


def hand_off_receipts(items: list[str]) -> str | None:
    """The webhook's hand-off: the receipts to the list and the drain flag in one MULTI; a drain job
    if this hand-off set the flag. A Redis error before the MULTI ran propagates (the caller applies
    the receipts inline); one enqueueing the drain job is logged (the sweep makes one pending)."""
    with redis_client.conn.pipeline() as pipe:
        pipe.rpush(RECEIPT_QUEUE, *items)
        pipe.eval(NEED_DRAIN, 2, RECEIPT_DRAIN_FLAG, RECEIPT_LINGERING, RECEIPT_DRAIN_FLAG_TTL)
        _, flagged = pipe.execute()
    if flagged != 1:  # a drain job is pending or lingers: it takes these
        return None
    try:
        return enqueue_receipt_drain()
    except redis.exceptions.RedisError:  # the receipts are queued: the sweep makes a drain job pending
        log.warning("could not enqueue a receipt drain job; the sweep will")
        return None


def receipts_claimed_key(job_id: str) -> str:
    return f"wpotp:receiptq:claimed:{job_id}"


def enqueue_receipt_drain() -> str:
    job = get_queue("otp").enqueue(RECEIPT_DRAIN_JOB, job_id=f"rdrain-{random_base62(10)}",
                                   description="drain receipts", result_ttl=60, failure_ttl=86400)
    return job.id


def ensure_receipt_drain() -> str | None:
    """Receipts waiting and no drain pending (its enqueue was lost, a batch was given back, or
    RECEIPT_BATCH was turned off with receipts in the list): enqueue one."""
    conn = redis_client.conn
    if conn.llen(RECEIPT_QUEUE) and conn.eval(NEED_DRAIN, 2, RECEIPT_DRAIN_FLAG, RECEIPT_LINGERING,
                                              RECEIPT_DRAIN_FLAG_TTL) == 1:
        return enqueue_receipt_drain()
    return None


def claim_receipts(job_id: str, count: int, first: bool, woken: bytes | None = None) -> list[bytes]:
    """Move up to `count` queued receipts into this drain job's CLAIMED list (one script, atomic);
    the first claim also clears the drain flag. `woken`: the receipt a lingering wait already moved
    there, counted in and first."""
    return redis_client.conn.eval(_CLAIM, 5, RECEIPT_QUEUE, receipts_claimed_key(job_id), RECEIPT_DRAIN_FLAG,
                                  RECEIPT_CLAIMS, RECEIPT_LINGERING, count, "1" if first else "0", job_id,
                                  RECEIPT_CLAIMED_TTL, woken or "")


def release_receipts(job_id: str) -> None:
    """The batch has committed: forget the CLAIMED list."""
    with redis_client.conn.pipeline() as pipe:
        pipe.delete(receipts_claimed_key(job_id)).srem(RECEIPT_CLAIMS, job_id).execute()


def give_back_receipts(job_id: str) -> int:
    """A job's claimed receipts back to the head of the queue, in their order; how many."""
    return redis_client.conn.eval(_GIVE_BACK, 3, receipts_claimed_key(job_id), RECEIPT_QUEUE, RECEIPT_CLAIMS,
                                  job_id)


def hand_back_receipts(job_id: str) -> str | None:
    """A stopping worker's unfinished drain job: its receipts back to the queue, and a drain job for them."""
    give_back_receipts(job_id)
    return ensure_receipt_drain()


def rescue_receipts() -> int:
    """The sweep's part: receipts claimed by a drain job that is no longer alive (its worker was
    killed) go back to the queue; a drain job is made pending for whatever waits. How many."""
    conn = redis_client.conn
    rescued = 0
    for raw in conn.smembers(RECEIPT_CLAIMS):
        job_id = raw.decode()
        if not job_alive(job_id, 2 * RECEIPT_DRAIN_FOR + 30):
            rescued += give_back_receipts(job_id)
    ensure_receipt_drain()
    if rescued:
        log.warning("%d receipt(s) of a lost drain job given back to the queue", rescued)
    return rescued



_CLAIM = """
if ARGV[2] == '1' then redis.call('DEL', KEYS[3]) end
redis.call('ZREM', KEYS[5], ARGV[3])
local items = {}
if ARGV[5] ~= '' then items[1] = ARGV[5] end
for i = #items + 1, tonumber(ARGV[1]) do
  local item = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
  if not item then break end
  items[#items + 1] = item
end
if #items > 0 then
  redis.call('SADD', KEYS[4], ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
return items
"""

_GIVE_BACK = """
local n = 0
while true do
  local item = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not item then break end
  n = n + 1
end
redis.call('SREM', KEYS[3], ARGV[1])
return n
"""


def linger_for_receipts(job_id: str, milliseconds: int, stopping) -> bytes | bool:
    """An idle receipt drain job's wait for more (jobs/enqueue.py linger). The job is named in
    RECEIPT_CLAIMS while it waits, so a receipt its wait took is rescued if the job dies."""
    return linger(RECEIPT_QUEUE, RECEIPT_LINGERING, RECEIPT_CLAIMS, receipts_claimed_key(job_id), job_id,
                  milliseconds, stopping)


def let_go_of_receipts(job_id: str) -> None:
    let_go(RECEIPT_QUEUE, RECEIPT_LINGERING, RECEIPT_CLAIMS, receipts_claimed_key(job_id), job_id)
