"""Upkeep run by the periodic sweep job and by `flask wpotp sweep`.

- Expire: active OTPs past `expires_at` become EXPIRED, each with an `otp.expired` event.
- Receipts: receipts claimed by a drain job that died with its worker go back to the
  receipt queue, and a drain job is made pending for any that wait (the queue port's rescue_receipts).
- In doubt: a new OTP whose COMMIT lost its answer (its client got a 503) is deleted if it is
  there (service.resolve_in_doubt).
- Fallback: a channel `auto` OTP still not delivered past its app's FALLBACK_AFTER_SECONDS (its
  timer job lost with Redis) falls back to SMS (otp/fallback.py).
- Rescue: an OTP QUEUED for longer than STUCK_QUEUED_AFTER whose send job is gone (lost
  with a Redis restart, or failed on a crash) is queued again while its sealed code is
  still in Redis, and FAILED otherwise. No OTP stays QUEUED forever.

After the sweep, the periodic sweep job runs `upkeep`:

- Rollups: the report rollup takes in the hours that have settled (wpotp/reports/rollups.py);
  when none has, that is one read of its state row.
- Retention: once every RETENTION_INTERVAL (across all workers, a Redis SET NX EX), a
  `retention_job` is queued that applies data retention (wpotp/otp/retention.py) in its own
  job, so a long purge never holds up the next sweep.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select, update

from .. import metrics
from ..extensions import db, get_queue, job_queue, redis_client
from ..models import ACTIVE_STATUSES, Event, Otp, OtpStatus
from ..redis_url import follow_failover
from ..settings import settings
from ..util import new_id, utcnow
from ..webhooks.events import commit_and_queue, owe_deliveries
from .delivery import _fail
from .fallback import fall_back_overdue
from .service import resolve_in_doubt, seal_key

log = logging.getLogger("wpotp.maintenance")
BATCH = 500
RETENTION_JOB = "wpotp.jobs.maintenance.retention_job"
RETENTION_JOB_TIMEOUT = 3600  # a first purge of a large history; an interrupted one resumes next time


def sweep() -> dict:
    from ..messages import expire_due_messages
    from ..webhooks.delivery import rescue_due

    in_doubt = resolve_in_doubt(sweep=True)  # before the rescue: such a row is deleted, never failed
    expired = expire_due()
    fell_back = fall_back_overdue()
    requeued, failed = rescue_stuck()
    result = {"in_doubt_deleted": in_doubt, "expired": expired, "requeued": requeued, "failed": failed,
              "messages_expired": expire_due_messages(), "webhooks_requeued": rescue_due(),
              "receipts_rescued": job_queue().rescue_receipts()}
    if fell_back:  # only when there were some: the sweep's figures stay as they were for apps without `auto`
        result["fell_back"] = fell_back
    if any(result.values()):
        log.info("sweep: %s", result)
    return result


def upkeep() -> dict:
    """The sweep job's upkeep after the sweep: report rollups, and retention when it is due."""
    from ..reports.rollups import roll_up

    result = roll_up()
    result["retention_queued"] = queue_retention_if_due()
    return result


def queue_retention_if_due() -> bool:
    """Queue the retention job once per RETENTION_INTERVAL, however many workers sweep."""
    interval = settings().retention_interval
    if not redis_client.conn.set("wpotp:periodic:retention", "1", nx=True, ex=interval):
        return False
    get_queue("default").enqueue(RETENTION_JOB, description="periodic retention", result_ttl=86400,
                                 job_timeout=RETENTION_JOB_TIMEOUT)
    return True


def expire_due() -> int:
    total = 0
    while True:
        now = utcnow()
        rows = db.session.execute(
            update(Otp)
            .where(Otp.id.in_(select(Otp.id).where(Otp.status.in_(ACTIVE_STATUSES), Otp.expires_at <= now)
                              .limit(BATCH).scalar_subquery()),
                   Otp.status.in_(ACTIVE_STATUSES), Otp.expires_at <= now)
            .values(status=OtpStatus.EXPIRED, expired_at=now)
            .returning(Otp.id, Otp.app_id, Otp.generation, Otp.provider, Otp.channel)  # the last two: metrics
            .execution_options(synchronize_session=False)
        ).all()
        for row in rows:
            event = Event(id=new_id("evt"), app_id=row.app_id, otp_id=row.id, type="otp.expired", created_at=now,
                          data={"status": OtpStatus.EXPIRED, "generation": row.generation})
            db.session.add(event)
            owe_deliveries(event)
            metrics.otp_event("otp.expired", row)  # counted when the transaction commits
        commit_and_queue()
        total += len(rows)
        if len(rows) < BATCH:
            return total


def rescue_stuck() -> tuple[int, int]:
    now = utcnow()
    cutoff = now - timedelta(seconds=settings().stuck_queued_after)
    stuck = db.session.scalars(
        select(Otp).where(Otp.status == OtpStatus.QUEUED, Otp.last_sent_at <= cutoff, Otp.expires_at > now)
        .limit(BATCH)
    ).all()
    requeued = failed = 0
    conn = redis_client.conn
    follow_failover(conn)  # a missing seal must be looked for on the master of now, not a replaced one
    for otp in stuck:
        if _send_pending(otp.id):
            continue
        if conn.exists(seal_key(otp.id, otp.generation)):
            job_queue().queue_send(otp.id, otp.generation, ttl=otp.ttl_seconds)
            requeued += 1
        elif _fail(otp, "queue_lost: the send job and its code were lost before delivery"):
            failed += 1
    # Batched sends waiting with no drain job pending (even with SEND_BATCH now 0). After the loop,
    # not before: a drain job enqueued here and popped by a worker that has not started it yet is
    # in no queue and not started, which _send_pending takes for dead; the loop would then queue
    # its sends a second time while it sends them (seen after a Redis failover, issue 17).
    job_queue().ensure_drain()
    return requeued, failed


def _send_pending(otp_id: str) -> bool:
    # A send runs at most PROVIDER_TIMEOUT plus a throughput wait; twice that and more is a dead worker.
    grace = 2 * settings().provider_timeout + 30
    return job_queue().send_pending(otp_id, grace)
