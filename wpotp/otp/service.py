"""The OTP lifecycle (SPEC §4): send, verify, resend, cancel, read.

Every rule lives here, and this module (with delivery.py and maintenance.py) is the only
writer of an OTP's status. State changes are compare-and-set UPDATEs whose WHERE clause
carries the rule, so the database, not a lock in Python, decides races: N parallel wrong
guesses spend at most the budget, N parallel right guesses verify exactly once.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError

from ..errors import (
    CountryNotAllowed,
    InvalidCode,
    OtpAlreadyVerified,
    OtpCanceled,
    OtpExpired,
    OtpFailed,
    OtpNotFound,
    RateLimited,
    ReferenceConflict,
    ServiceUnavailable,
    TooManyAttempts,
    WpotpError,
)
from ..extensions import db, job_queue, redis_client
from ..models import ACTIVE_STATUSES, ApiKey, App, Event, Otp, OtpStatus, WebhookAttempt, WebhookDelivery
from ..redis_url import set_replicated
from ..settings import settings
from ..util import new_id, utcnow
from ..webhooks.events import commit_and_queue
from . import fraud, store
from .codes import code_matches, generate_code, hash_code, seal_code
from .events import record_event
from .fallback import fallback_after, fallback_for
from .limits import consume_send
from .phones import normalize_recipient
from .templates import resolve_template

log = logging.getLogger("wpotp.service")


@dataclass
class SendRequest:
    recipient: str
    template_id: str | None = None
    code: str | None = None
    reference: str | None = None
    length: int | None = None
    ttl: int | None = None
    language: str | None = None
    footer: str | None = None  # free text after the code, where the provider can carry it
    channel: str = "whatsapp"  # whatsapp | sms | auto (SPEC §12)


def seal_key(otp_id: str, generation: int) -> str:
    return f"wpotp:seal:{otp_id}:{generation}"


CHANNELS = ("whatsapp", "sms", "auto")


def sending_channel(requested: str | None) -> str:
    """The channel a send goes over: `sms` when asked for, else WhatsApp (`auto` starts there)."""
    return "sms" if requested == "sms" else "whatsapp"


def provider_for(api_key: ApiKey, channel: str = "whatsapp") -> str:
    """Test keys never reach WhatsApp."""
    return provider_for_mode(api_key.mode, channel)


def provider_for_mode(mode: str, channel: str) -> str:
    """The provider of a send: test keys go to a sandbox (WhatsApp's or the SMS one), live keys to
    WPOTP_PROVIDER or, for SMS, to SMS_PROVIDER (named `sms_<name>` on the row)."""
    if channel == "sms":
        return "sms_" + ("sandbox" if mode == "test" else settings().sms_provider)
    return "sandbox" if mode == "test" else settings().provider


# --- send ---------------------------------------------------------------------------------------

def send_otp(app: App, api_key: ApiKey, req: SendRequest) -> tuple[store.OtpView | Otp, bool]:
    """Create and queue an OTP. Returns (otp, created); created is False for a reused reference
    (then the OTP is the ORM row found by reference; a new one is the values written)."""
    recipient, country = normalize_recipient(req.recipient)
    allowed = app.allowed_country_set()
    if allowed and country not in allowed:
        raise CountryNotAllowed(details={"country": country, "allowed": sorted(allowed)})
    fraud.guard(app, recipient, country, getattr(req, "channel", None) or "whatsapp")
    template = resolve_template(req.template_id, req.language, app.default_language)
    if req.reference:
        existing = _active_by_reference(app, req.reference, recipient)
        if existing is not None:
            return existing, False

    code = req.code or generate_code(req.length or app.otp_length)
    ttl = req.ttl or app.otp_ttl
    now = utcnow()
    otp_id = new_id("otp")
    channel = sending_channel(req.channel)
    fallback = fallback_for(req.channel)
    values = dict(id=otp_id, app_id=app.id, api_key_id=api_key.id, mode=api_key.mode, channel=channel,
                  fallback=fallback, provider=provider_for(api_key, channel), recipient=recipient, country=country,
                  reference=req.reference, footer=req.footer,
                  template_id=template.id, language=template.language, code_hash=hash_code(otp_id, code),
                  code_length=len(code), status=OtpStatus.QUEUED, attempts=0, max_attempts=app.max_attempts,
                  generation=1, ttl_seconds=ttl, expires_at=now + timedelta(seconds=ttl), created_at=now,
                  last_sent_at=now)
    try:
        otp = store.insert_otp(db.session.connection(), values, "otp.queued",
                               {"status": OtpStatus.QUEUED, "generation": 1, "channel": channel})
    except IntegrityError:
        # Another request took this reference between our look-up and our insert.
        db.session.rollback()
        return _reused_after_race(app, req.reference, recipient)
    # Counted only once the row is in (a request that loses a reference race spends nothing);
    # a refusal rolls the row back.
    consume_send(app, recipient)
    _commit_new(otp_id)  # the answer is the values written: no SELECT back
    _hand_to_worker(otp, code, fallback_in=fallback_after(app) if fallback else 0)
    if _in_doubt:
        try:
            resolve_in_doubt()
        except Exception:  # noqa: BLE001  (this send is done; the sweep resolves them)
            db.session.rollback()
            log.exception("could not resolve in-doubt OTPs; the sweep will")
    return otp, True


# --- a COMMIT whose answer was lost ------------------------------------------------------------
# The database went away during the COMMIT of a new OTP (a crash, a cut connection): the row may
# or may not be in, and the client gets a 503. So that a 503 leaves no row, its id is noted here
# (and in Redis, for the sweep, in case this process ends first) and the row, if it is there, is
# deleted with its event and deliveries once the database answers again: by this process after
# its next stored send, or by the sweep. The id was never handed to a worker nor shown to anyone.

IN_DOUBT_KEY = "wpotp:otp:in_doubt"  # hash: OTP id -> when its COMMIT failed (epoch seconds)
IN_DOUBT_KEEP = 600  # the sweep re-checks an id this long (a late COMMIT on a cut connection)
_in_doubt: set[str] = set()


def _commit_new(otp_id: str) -> None:
    try:
        commit_and_queue()
    except (OperationalError, InterfaceError):
        _in_doubt.add(otp_id)
        try:
            redis_client.conn.hset(IN_DOUBT_KEY, otp_id, int(time.time()))
        except redis.exceptions.RedisError:
            log.warning("could not note an in-doubt OTP in Redis; this process will resolve it")
        raise


def resolve_in_doubt(sweep: bool = False) -> int:
    """Delete the rows of new OTPs whose COMMIT lost its answer (this process's, and with
    `sweep` every process's noted in Redis). Returns the rows deleted; a database still away
    leaves the ids for the next try."""
    ids = set(_in_doubt)
    noted: dict[str, int] = {}
    if sweep:
        noted = {k.decode(): int(v) for k, v in redis_client.conn.hgetall(IN_DOUBT_KEY).items()}
        ids |= set(noted)
    if not ids:
        return 0
    try:
        deleted = _delete_new_otps(sorted(ids))
        commit_and_queue()
    except (OperationalError, InterfaceError):
        db.session.rollback()
        log.warning("%d in-doubt OTPs not resolved yet: the database is still unavailable", len(ids))
        return 0
    _in_doubt.difference_update(ids)
    old = [otp_id for otp_id, at in noted.items() if at < time.time() - IN_DOUBT_KEEP]
    if old:
        redis_client.conn.hdel(IN_DOUBT_KEY, *old)
    if deleted:
        log.warning("deleted %d OTPs whose COMMIT had failed (the clients got a 503)", deleted)
    return deleted


def _noted_in_doubt(otp_id: str) -> bool:
    if otp_id in _in_doubt:
        return True
    try:
        return bool(redis_client.conn.hexists(IN_DOUBT_KEY, otp_id))
    except redis.exceptions.RedisError:
        return False


def _delete_new_otps(ids: list[str]) -> int:
    """Delete OTPs that no client knows of, with their events and the deliveries they owe."""
    event_ids = select(Event.id).where(Event.otp_id.in_(ids))
    delivery_ids = select(WebhookDelivery.id).where(WebhookDelivery.event_id.in_(event_ids))
    db.session.execute(delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(delivery_ids)))
    db.session.execute(delete(WebhookDelivery).where(WebhookDelivery.event_id.in_(event_ids)))
    db.session.execute(delete(Event).where(Event.otp_id.in_(ids)))
    return db.session.execute(delete(Otp).where(Otp.id.in_(ids))).rowcount or 0


def _reused_after_race(app: App, reference: str | None, recipient: str) -> tuple[Otp, bool]:
    existing = _active_by_reference(app, reference, recipient) if reference else None
    if existing is None:
        raise ServiceUnavailable("The OTP could not be stored; retry.")
    return existing, False


def _active_by_reference(app: App, reference: str, recipient: str) -> Otp | None:
    existing = db.session.scalars(
        select(Otp).where(Otp.app_id == app.id, Otp.reference == reference, Otp.status.in_(ACTIVE_STATUSES))
    ).first()
    if existing is None:
        return None
    if existing.status == OtpStatus.QUEUED and _noted_in_doubt(existing.id):
        # A 503's row (its COMMIT lost its answer): the client's retry gets a new OTP, not one never sent.
        _delete_new_otps([existing.id])
        commit_and_queue()
        return None
    if existing.expires_at <= utcnow():
        expire_one(existing)  # frees the reference for a new OTP
        return None
    if existing.recipient != recipient:
        raise ReferenceConflict(details={"reference": reference, "otpId": existing.id})
    return existing


# The hand-off's own Redis being unreachable: the only failure after the commit that undoes it.
# Anything else (a full Redis, a bug) is a 500 that leaves the row for the sweep to rescue or fail.
QUEUE_OUTAGES = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def _hand_to_worker(otp: Otp | store.OtpView, code: str, revert_to: dict | None = None, fallback_in: int = 0) -> None:
    """After the commit: leave the sealed code for the worker and queue the send (and, for an armed
    channel `auto` send, its no-receipt timer: the SMS fallback job in `fallback_in` seconds).

    If Redis cannot be reached here the change is undone, so the caller's 503 leaves nothing
    behind: a new OTP is removed, a resend is put back as it was (the previous code keeps
    working). Any other error propagates (a 500, logged) with the committed row left as it is.
    """
    generation = otp.generation
    replicas = settings().redis_min_replicas
    try:
        if replicas:
            _seal_on_replicas(otp, generation, code, replicas)
        # One round trip: the sealed code (unless already on the replicas), the job and its
        # bookkeeping go to Redis together.
        with redis_client.conn.pipeline() as pipe:
            pipe.multi()
            if not replicas:
                pipe.set(seal_key(otp.id, generation), seal_code(otp.id, generation, code), ex=otp.ttl_seconds + 120)
            if fallback_in > 0:  # before the send: the send's replies stay last (after_hand_off reads them)
                job_queue().schedule_fallback(otp.id, generation, fallback_in, pipeline=pipe)
            job_queue().hand_off_send(otp.id, generation, ttl=otp.ttl_seconds, pipeline=pipe)
            replies = pipe.execute()
    except QUEUE_OUTAGES as exc:
        _undo_hand_off(otp, generation, revert_to)
        raise ServiceUnavailable("The queue is unavailable; nothing was sent or changed. Retry.") from exc
    try:
        job_queue().after_hand_off(replies)  # the batch path: a drain job, only if none is pending
    except QUEUE_OUTAGES:  # the send is in the list: the flag lapses and the sweep enqueues a drain
        log.warning("could not enqueue a drain job for a queued send (Redis unavailable); the sweep will")


def _seal_on_replicas(otp: Otp | store.OtpView, generation: int, code: str, replicas: int) -> None:
    """REDIS_MIN_REPLICAS: the sealed code is on that many replicas before the send is queued, so
    a failover to one of them cannot lose an OTP answered 201 (a queued job it loses, the sweep
    queues again: the code is what cannot be recovered). Nothing is queued yet when the replicas
    fall short, so the undo is complete; the seal left on the master is taken back."""
    key = seal_key(otp.id, generation)
    try:
        set_replicated(redis_client.conn, key, seal_code(otp.id, generation, code), ex=otp.ttl_seconds + 120,
                       replicas=replicas, timeout_ms=settings().redis_replica_timeout)
    except QUEUE_OUTAGES:
        with contextlib.suppress(redis.exceptions.RedisError):
            redis_client.conn.delete(key)
        raise


def _undo_hand_off(otp: Otp | store.OtpView, generation: int, revert_to: dict | None) -> None:
    db.session.rollback()
    if revert_to is None:
        _delete_new_otps([otp.id])
    else:
        db.session.execute(delete(Event).where(Event.otp_id == otp.id, Event.type == "otp.resent",
                                               Event.data["generation"].as_integer() == generation))
        db.session.execute(update(Otp).where(Otp.id == otp.id, Otp.generation == generation)
                           .values(revert_to).execution_options(synchronize_session=False))
    commit_and_queue()


# --- read ---------------------------------------------------------------------------------------

OTP_ID = re.compile(r"^otp_[0-9A-Za-z]{1,36}$")


def get_otp(app: App, otp_id: str, with_timeline: bool = False) -> store.OtpView:
    """The app's OTP as plain values (one Core SELECT; with its events when `with_timeline`)."""
    otp = store.read_otp(db.session.connection(), app.id, otp_id, with_timeline) if OTP_ID.match(otp_id) else None
    if otp is None:
        raise OtpNotFound(details={"id": otp_id[:64]})
    return otp


def _load_otp(app: App, otp_id: str) -> Otp:
    """The app's OTP as an ORM object, for the paths that are not hot (resend, cancel)."""
    otp = db.session.get(Otp, otp_id) if OTP_ID.match(otp_id) else None
    if otp is None or otp.app_id != app.id:
        raise OtpNotFound(details={"id": otp_id[:64]})
    return otp


def blocker(otp: Otp | store.OtpView, now: datetime) -> WpotpError | None:
    """Why this OTP cannot be verified or resent now, or None."""
    if otp.status == OtpStatus.VERIFIED:
        return OtpAlreadyVerified()
    if otp.status == OtpStatus.CANCELED:
        return OtpCanceled()
    if otp.status == OtpStatus.FAILED:
        return OtpFailed(details={"error": otp.error})
    if otp.status == OtpStatus.EXPIRED or otp.expires_at <= now:
        return OtpExpired()
    if otp.attempts >= otp.max_attempts:
        return TooManyAttempts(details={"attemptsRemaining": 0})
    return None


# --- verify -------------------------------------------------------------------------------------

def verify_otp(app: App, otp_id: str, code: str, ip: str | None) -> store.OtpView:
    """Check a code (SPEC §4); every call is recorded as a verify attempt, whatever it answers.

    A wrong code spends one attempt (compare-and-set). A code a resend replaced spends none and
    answers OTP_CANCELED "replaced by a resend": the user typed the code of an earlier message,
    which tells a guesser nothing, and hearing "invalid" would wrongly suggest a typo.

    The read, then one statement on PostgreSQL (wpotp.otp.store): the compare-and-set with its
    attempt row (and, for a right code, its event and outbox row), then the commit.
    """
    conn = db.session.connection()
    otp = get_otp(app, otp_id)
    now = utcnow()
    problem = blocker(otp, now)
    if problem is None:
        if code_matches(otp.id, code, otp.code_hash):
            verified = store.claim_verified(conn, otp, now, ip)
            if verified is not None:
                commit_and_queue()
                return verified
        elif _superseded(otp, code):
            problem = _replaced_by_resend()
        else:
            remaining = store.spend_attempt(conn, otp, now, ip)
            if remaining is not None:
                commit_and_queue()
                raise _invalid_code(remaining)
    if problem is None:
        # Lost a race (another verify, a resend, a cancel): say what the row says now.
        db.session.rollback()
        conn = db.session.connection()
        otp = get_otp(app, otp_id)
        problem = blocker(otp, now) or (_replaced_by_resend() if _superseded(otp, code)
                                        else _invalid_code(otp.attempts_remaining))
    store.record_attempt(conn, otp, _attempt_result(problem), ip, now)
    commit_and_queue()
    raise problem


def _invalid_code(remaining: int) -> InvalidCode:
    return InvalidCode(details={"attemptsRemaining": remaining})


REPLACED_BY_RESEND = "replaced_by_resend"


def _replaced_by_resend() -> OtpCanceled:
    return OtpCanceled("This code was replaced by a resend: use the code of the latest message.",
                       details={"reason": REPLACED_BY_RESEND})


def _attempt_result(problem: WpotpError) -> str:
    """The verify attempt's `result` for an error answer: its code, or `superseded_code`."""
    if isinstance(problem, OtpCanceled) and problem.details.get("reason") == REPLACED_BY_RESEND:
        return "superseded_code"
    return problem.code.lower()


def _superseded(otp: Otp | store.OtpView, code: str) -> bool:
    """Whether `code` is one a resend replaced. Every stored hash is compared (constant time
    each, no early exit), so the answer's timing does not say which send it came from."""
    matches = [code_matches(otp.id, code, old) for old in (otp.superseded_code_hashes or "").split()]
    return any(matches)


# --- resend -------------------------------------------------------------------------------------

def resend_otp(app: App, otp_id: str, channel: str | None = None) -> Otp:
    """A new code on the same OTP id: the old code dies, the expiry is renewed. `channel`
    (whatsapp | sms | auto) switches the channel for this send; None keeps the last one.

    The old code's keyed hash is kept (`superseded_code_hashes`), so verifying it answers
    OTP_CANCELED "replaced by a resend" rather than spending an attempt.

    At most RESEND_MAX resends, none sooner than RESEND_INTERVAL seconds after the last send.
    The attempt budget is not renewed, so resending never buys a guesser more tries.
    """
    otp = _load_otp(app, otp_id)
    now = utcnow()
    problem = blocker(otp, now)
    if problem is not None:
        raise problem
    cfg = settings()
    if _resends(otp) >= cfg.resend_max:
        retry = int((otp.expires_at - now).total_seconds())
        raise RateLimited(f"{cfg.resend_max} resends per OTP", retry,
                          f"This OTP was resent {cfg.resend_max} times already; send a new OTP.")
    wait = cfg.resend_interval - (now - otp.last_sent_at).total_seconds()
    if wait > 0:
        raise RateLimited(f"1 send per {cfg.resend_interval} seconds per OTP", int(wait) + 1,
                          f"Resend allowed {int(wait) + 1} s from now.")
    fallback = fallback_for(channel, otp.fallback)
    # After a fallback, `auto` means the channel that reached the user: SMS.
    channel = otp.channel if channel is None else "sms" if channel == "auto" and fallback != "armed" \
        else sending_channel(channel)
    fraud.guard(app, otp.recipient, otp.country, channel)
    code = generate_code(otp.code_length)
    generation = otp.generation + 1
    before = _snapshot(otp)
    stmt = (update(Otp)
            .where(Otp.id == otp.id, Otp.generation == otp.generation, Otp.status.in_(ACTIVE_STATUSES),
                   Otp.expires_at > now, Otp.attempts < Otp.max_attempts)
            .values(code_hash=hash_code(otp.id, code), superseded_code_hashes=_superseding(otp),
                    generation=generation, status=OtpStatus.QUEUED, channel=channel, fallback=fallback,
                    provider=provider_for_mode(otp.mode, channel),
                    expires_at=now + timedelta(seconds=otp.ttl_seconds), last_sent_at=now, sent_at=None,
                    delivered_at=None, read_at=None, provider_message_id=None, error=None)
            .execution_options(synchronize_session=False))
    if db.session.execute(stmt).rowcount != 1:
        db.session.rollback()
        db.session.refresh(otp)
        raise blocker(otp, now) or RateLimited("1 resend at a time", cfg.resend_interval,
                                               "Another resend of this OTP just happened.")
    record_event(otp, "otp.resent", at=now, status=OtpStatus.QUEUED, generation=generation, channel=channel)
    consume_send(app, otp.recipient)  # a refusal rolls the resend back
    commit_and_queue()
    db.session.refresh(otp)
    armed = fallback == "armed" and channel == "whatsapp"
    _hand_to_worker(otp, code, revert_to=before, fallback_in=fallback_after(app) if armed else 0)
    return otp


def _resends(otp: Otp) -> int:
    """Resends so far: one generation per send, but an SMS fallback's is not the caller's resend."""
    return otp.generation - 1 - (1 if otp.fallback == "done" else 0)


def _superseding(otp: Otp) -> str:
    """The superseded hashes once this resend replaces the current code (oldest first).

    Only hashes: the plaintext of a replaced code is never kept. The compare-and-set on
    `generation` makes the row read here the one the UPDATE changes.
    """
    return " ".join(filter(None, (otp.superseded_code_hashes, otp.code_hash)))


_RESEND_FIELDS = ("code_hash", "superseded_code_hashes", "generation", "status", "expires_at", "last_sent_at",
                  "sent_at", "delivered_at", "read_at", "provider_message_id", "error", "channel", "provider",
                  "fallback")


def _snapshot(otp: Otp) -> dict:
    return {name: getattr(otp, name) for name in _RESEND_FIELDS}


# --- cancel -------------------------------------------------------------------------------------

def cancel_otp(app: App, otp_id: str) -> Otp:
    """Cancel an active OTP. Canceling a canceled OTP answers it again (idempotent)."""
    otp = _load_otp(app, otp_id)
    now = utcnow()
    if otp.status == OtpStatus.CANCELED:
        return otp
    problem = blocker(otp, now)
    if problem is not None and not isinstance(problem, TooManyAttempts):
        raise problem
    stmt = (update(Otp)
            .where(Otp.id == otp.id, Otp.status.in_(ACTIVE_STATUSES), Otp.expires_at > now)
            .values(status=OtpStatus.CANCELED, canceled_at=now)
            .execution_options(synchronize_session=False))
    if db.session.execute(stmt).rowcount != 1:
        db.session.rollback()
        db.session.refresh(otp)
        if otp.status == OtpStatus.CANCELED:
            return otp
        raise blocker(otp, now) or OtpCanceled()
    record_event(otp, "otp.canceled", at=now, status=OtpStatus.CANCELED, generation=otp.generation)
    commit_and_queue()
    db.session.refresh(otp)
    redis_client.conn.delete(seal_key(otp.id, otp.generation))
    return otp


# --- expiry (shared with maintenance) -------------------------------------------------------------

def expire_one(otp: Otp, within: timedelta = timedelta(0)) -> bool:
    """Mark one OTP EXPIRED (compare-and-set) and commit, if it is due within `within` from now
    (a send that would reach the user in its last moment is not made: it is as good as expired)."""
    now = utcnow()
    stmt = (update(Otp)
            .where(Otp.id == otp.id, Otp.status.in_(ACTIVE_STATUSES), Otp.expires_at <= now + within)
            .values(status=OtpStatus.EXPIRED, expired_at=now)
            .execution_options(synchronize_session=False))
    changed = db.session.execute(stmt).rowcount == 1
    if changed:
        record_event(otp, "otp.expired", at=now, status=OtpStatus.EXPIRED, generation=otp.generation)
    commit_and_queue()
    db.session.refresh(otp)
    return changed
