"""The SMS fallback of channel `auto` (SPEC §12, docs/channels.md).

An `auto` OTP starts on WhatsApp with `fallback = "armed"`. It falls back at most once: the same
code and the same expiry go out over SMS, as a new send generation (so a late WhatsApp receipt is
kept in the timeline as superseded and moves nothing), recorded as `otp.fallback`:

- when WhatsApp says the recipient cannot get it (`providers.means_not_on_whatsapp`): in the send's
  own answer (Meta's 131026 and kin), in a gateway's check before the send (WAHA's check-exists,
  Evolution's `exists: false`), or in a later `failed` receipt (otp/receipts.py queues a job);
- when no DELIVERED (or READ) receipt came within the app's FALLBACK_AFTER_SECONDS of the send: a
  job scheduled with the hand-off (RQ's scheduler keeps it in Redis, so it outlives a worker
  restart), and the sweep for any whose job was lost (`fall_back_overdue`).

Never after VERIFIED, CANCELED, EXPIRED or FAILED, nor once DELIVERED or READ. The fallback send is
not counted again against the recipient and app send limits (the OTP was counted when it was
asked for); the fraud guard is asked again, for `sms`, and its refusal (recorded as `otp.blocked`)
fails the OTP as a failed WhatsApp send would have. The code travels as every send's does: sealed
in Redis for the new generation, unsealed from the current one, never in a job's arguments.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import redis
from sqlalchemy import select, update

from ..errors import FraudBlocked
from ..extensions import db, job_queue, redis_client
from ..models import App, Otp, OtpStatus
from ..settings import settings
from ..util import utcnow
from ..webhooks.events import commit_and_queue
from . import fraud
from .codes import seal_code, unseal_code
from .events import record_event

log = logging.getLogger("wpotp.fallback")

ARMED, DONE, REFUSED = "armed", "done", "refused"
NO_RECEIPT = "no_receipt: no delivery receipt in time"
FALLING_BACK = (OtpStatus.QUEUED, OtpStatus.SENT)  # not yet delivered, still alive
LOCK_SECONDS = 60  # one fallback attempt at a time per OTP (the timer job, the sweep, a receipt)
BATCH = 200


def fallback_after(app: App) -> int:
    """The app's seconds without a receipt before the SMS fallback (0: never on a timer)."""
    own = app.fallback_after_seconds
    return settings().fallback_after if own is None else max(0, own)


def fallback_for(requested: str | None, previous: str | None = None) -> str | None:
    """The `fallback` state of a send over `requested` (whatsapp | sms | auto | None: as before).
    Once fallen back, an OTP stays so (it falls back at most once)."""
    if previous in (DONE, REFUSED):
        return previous
    if requested is None:
        return previous
    return ARMED if requested == "auto" else None


def fall_back(otp_id: str, generation: int, reason: str, due_only: bool = False) -> str:
    """Send this generation of an armed OTP again over SMS. Returns what happened: `fell-back`,
    `refused` (the fraud guard said no: FAILED), `failed` (the code was gone), `early` (a timer
    that came before its time: scheduled again), `busy` (another fallback of it is under way) or
    `skipped` (nothing to do: not armed, moved on, delivered, about to expire).
    `due_only`: the no-receipt timer, which acts only once the app's delay has passed."""
    otp = db.session.get(Otp, otp_id)
    now = utcnow()
    if (otp is None or otp.generation != generation or otp.fallback != ARMED or otp.status not in FALLING_BACK
            or otp.delivered_at is not None or otp.read_at is not None
            or otp.expires_at <= now + timedelta(seconds=1)):
        db.session.rollback()
        return "skipped"
    app = db.session.get(App, otp.app_id)
    if due_only:
        after = fallback_after(app)
        if after <= 0:
            return "skipped"
        wait = (otp.last_sent_at + timedelta(seconds=after) - now).total_seconds()
        if wait > 0:
            db.session.rollback()
            job_queue().schedule_fallback(otp.id, generation, int(wait) + 1)
            return "early"
    conn = redis_client.conn
    lock = f"wpotp:fallback:{otp.id}:{generation}"
    if not conn.set(lock, "1", nx=True, ex=LOCK_SECONDS):
        db.session.rollback()
        return "busy"
    from .delivery import _fail
    from .service import provider_for_mode, seal_key

    sealed = conn.get(seal_key(otp.id, generation))
    if sealed is None:
        _fail(otp, f"{reason[:200]}; code_unavailable: the code left the queue before the SMS fallback")
        return "failed"
    try:
        fraud.guard(app, otp.recipient, otp.country, "sms")
    except FraudBlocked as exc:  # its otp.blocked event is committed; the OTP fails as it would have
        db.session.execute(update(Otp).where(Otp.id == otp.id, Otp.generation == generation,
                                             Otp.fallback == ARMED).values(fallback=REFUSED))
        _fail(otp, f"{reason[:200]}; SMS fallback refused by the fraud guard ({exc.details.get('reason')})")
        return "refused"
    code = unseal_code(otp.id, generation, sealed.decode())
    new = generation + 1
    remaining = int((otp.expires_at - now).total_seconds())
    conn.set(seal_key(otp.id, new), seal_code(otp.id, new, code), ex=remaining + 120)
    moved = db.session.execute(
        update(Otp)
        .where(Otp.id == otp.id, Otp.generation == generation, Otp.fallback == ARMED, Otp.status.in_(FALLING_BACK),
               Otp.delivered_at.is_(None), Otp.read_at.is_(None), Otp.expires_at > now)
        .values(generation=new, channel="sms", provider=provider_for_mode(otp.mode, "sms"),
                status=OtpStatus.QUEUED, fallback=DONE, last_sent_at=now, sent_at=None, provider_message_id=None,
                error=None)
        .execution_options(synchronize_session=False)).rowcount == 1
    if not moved:  # verified, canceled, delivered or resent meanwhile
        db.session.rollback()
        conn.delete(seal_key(otp.id, new))
        return "skipped"
    record_event(otp, "otp.fallback", at=now, status=OtpStatus.QUEUED, generation=new, channel="sms",
                 reason=reason[:200])
    commit_and_queue()
    conn.delete(seal_key(otp.id, generation))
    _queue_sms(otp.id, new, otp.ttl_seconds)
    return "fell-back"


def _queue_sms(otp_id: str, generation: int, ttl: int) -> None:
    """Queue the SMS send; if Redis is away now, the sweep's rescue queues it (its row is QUEUED and
    its sealed code is in Redis)."""
    try:
        with redis_client.conn.pipeline() as pipe:
            pipe.multi()
            job_queue().hand_off_send(otp_id, generation, ttl=ttl, pipeline=pipe)
            replies = pipe.execute()
        job_queue().after_hand_off(replies)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        log.warning("could not queue the SMS fallback of %s (Redis unavailable); the sweep will", otp_id)


def fall_back_overdue() -> int:
    """The sweep's part: armed OTPs still not delivered past their app's delay (their timer job was
    lost with Redis, or never made). Returns how many fell back."""
    now = utcnow()
    rows = db.session.execute(
        select(Otp.id, Otp.generation, Otp.app_id, Otp.last_sent_at)
        .where(Otp.fallback == ARMED, Otp.last_sent_at <= now - timedelta(seconds=1), Otp.status.in_(FALLING_BACK),
               Otp.expires_at > now)
        .order_by(Otp.last_sent_at).limit(BATCH)).all()
    db.session.rollback()
    delays: dict[str, int] = {}
    done = 0
    for row in rows:
        if row.app_id not in delays:
            delays[row.app_id] = fallback_after(db.session.get(App, row.app_id))
        after = delays[row.app_id]
        if after > 0 and row.last_sent_at + timedelta(seconds=after) <= now:
            done += fall_back(row.id, row.generation, NO_RECEIPT, due_only=True) == "fell-back"
    return done
