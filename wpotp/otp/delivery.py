"""The worker side of the lifecycle: hand an OTP to its provider (receipts: receipts.py).

Idempotent: a job for an older generation or a status that has moved on does nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import bindparam, insert, select, update

from .. import metrics
from ..extensions import db, job_queue, redis_client
from ..models import ACTIVE_STATUSES, App, Otp, OtpStatus, SendAttempt
from ..providers import OutboundOtp, OutboundSms, Provider, ProviderError, get_provider, get_sms_provider
from ..providers.base import means_not_on_whatsapp
from ..providers.faults import note_config_fault
from ..providers.throttle import SlotWaitStopped, wait_for_slot
from ..settings import settings
from ..util import utcnow
from ..webhooks.events import commit_and_queue
from .codes import unseal_code
from .events import EventRows, record_event
from .receipts import replay_early_receipts, replay_early_receipts_of
from .service import expire_one, seal_key
from .sms_text import sms_body
from .templates import render, template_by_id

log = logging.getLogger("wpotp.delivery")


# The send job's statements, built once (building them per job, column comparisons and all,
# cost about as much as executing them): what a send needs of its OTP row, no ORM object;
# the compare-and-set to SENT; one row per provider call.
_otps = Otp.__table__
_SEND_COLUMNS = (_otps.c.id, _otps.c.app_id, _otps.c.recipient, _otps.c.provider, _otps.c.template_id,
                 _otps.c.footer, _otps.c.status, _otps.c.generation, _otps.c.expires_at, _otps.c.ttl_seconds,
                 _otps.c.channel, _otps.c.language, _otps.c.fallback)
_LOAD_FOR_SEND = select(*_SEND_COLUMNS).where(_otps.c.id == bindparam("otp_id"))
_LOAD_MANY_FOR_SEND = select(*_SEND_COLUMNS).where(_otps.c.id.in_(bindparam("otp_ids", expanding=True)))
_MARK_SENT = (update(_otps)
              .where(_otps.c.id == bindparam("otp_id"), _otps.c.generation == bindparam("gen"),
                     _otps.c.status == OtpStatus.QUEUED.value)
              .values(status=OtpStatus.SENT.value, sent_at=bindparam("at"),
                      provider_message_id=bindparam("pmid")))
_MESSAGE_IDS = select(_otps.c.id, _otps.c.provider_message_id).where(
    _otps.c.id.in_(bindparam("otp_ids", expanding=True)), _otps.c.status != OtpStatus.QUEUED.value)
_INSERT_ATTEMPT = insert(SendAttempt.__table__)


def deliver_otp(otp_id: str, generation: int, try_number: int = 1) -> str:
    """Send one generation of an OTP. Returns what happened, for the job log.

    The row is read with one Core SELECT (on the session's connection, past the ORM's execution
    layer: no identity map, no autoflush) and nothing is written until the provider has
    answered: then the send attempt, the compare-and-set to SENT and its event go in one
    transaction and one commit. No write lock is held across the provider call (on SQLite the
    write transaction begins with the first INSERT after it).
    """
    otp = db.session.connection().execute(_LOAD_FOR_SEND, {"otp_id": otp_id}).first()
    if otp is None or otp.generation != generation or otp.status != OtpStatus.QUEUED:
        return "skipped"
    if otp.expires_at <= utcnow():
        expire_one(_orm(otp_id))
        return "expired"
    sealed = redis_client.conn.get(seal_key(otp.id, generation))
    if sealed is None:
        _fail(otp, "code_unavailable: the code left the queue before it could be sent")
        return "failed"
    message = _outbound(otp, generation, sealed)
    provider = provider_of(otp)
    started = time.monotonic()
    try:
        result = call_provider(provider, sender(provider, message), message, expires_at=otp.expires_at)
    except TooLate:
        expire_one(_orm(otp_id), within=SEND_MARGIN)
        return "expired"
    except ProviderError as exc:
        record_send(provider.name, started, otp_id=otp.id, generation=generation, error=exc, channel=otp.channel)
        return _after_failure(otp, exc, try_number)
    record_send(provider.name, started, otp_id=otp.id, generation=generation,
                provider_message_id=result.provider_message_id, channel=otp.channel)
    now = utcnow()
    moved = db.session.connection().execute(_MARK_SENT, {"otp_id": otp.id, "gen": generation, "at": now,
                                                         "pmid": result.provider_message_id}).rowcount == 1
    if moved:
        record_event(otp, "otp.sent", at=now, status=OtpStatus.SENT, generation=generation,
                     provider=provider.name, channel=otp.channel)
    commit_and_queue()
    replay_early_receipts(provider.name, result.provider_message_id)  # receipts that beat this commit
    if moved:
        provider.after_sent(message, result)
    return "sent" if moved else "sent-late"


def _outbound(otp, generation: int, sealed: bytes) -> OutboundOtp | OutboundSms:
    """The message for the provider: the template rendered with the code unsealed for it, or
    for channel sms the built-in text of the OTP's language with the code and the app's name."""
    code = unseal_code(otp.id, generation, sealed.decode())
    if otp.channel == "sms":
        owner = db.session.connection().execute(select(App.name, App.sms_texts).where(App.id == otp.app_id)).first()
        return OutboundSms(otp_id=otp.id, app_id=otp.app_id, recipient=otp.recipient,
                           body=sms_body(otp.language, code, owner.name if owner else "",
                                         owner.sms_texts if owner else None))
    template = template_by_id(otp.template_id)
    return OutboundOtp(otp_id=otp.id, app_id=otp.app_id, recipient=otp.recipient, code=code,
                       template_name=template.name, language=template.language,
                       body=render(template, code, otp.footer), copy_code_button=template.copy_code_button)


def provider_of(otp) -> Provider:
    """The OTP's provider: an SMS one for channel sms, else a WhatsApp one."""
    return get_sms_provider(otp.provider) if otp.channel == "sms" else get_provider(otp.provider)


def sender(provider: Provider, message: OutboundOtp | OutboundSms) -> Callable:
    return provider.send_sms if isinstance(message, OutboundSms) else provider.send_otp


# --- the batch send path (SEND_BATCH; jobs/enqueue.py, reached through the queue port jobs/port.py) -----

def drain_sends(job_id: str) -> str:
    """A drain job: claim batches of waiting sends and deliver each (deliver_batch) until the
    list is empty; after DRAIN_FOR seconds, hand on to a fresh drain job instead (RQ's job
    timeout, and a stopping worker's hand-back, stay about one batch). A full batch means more
    may wait: then one more drain job is made pending (if none is), so a backlog spreads over
    the free slots one drain job at a time.

    A stop request to the worker (the queue port's `stopping()`, set by our Worker) is seen
    between batches and by every send of a batch before it starts, its wait for a WHATSAPP_MPS
    slot included: the sends not started go back to the list (give_back_unstarted), the ones in
    flight finish and are committed, and the job ends, so a stopping worker is done within about
    one provider call. The list, the claims and the drain jobs are the queue port's (jobs/port.py)."""
    queue = job_queue()
    size = settings().send_batch or queue.DRAIN_SIZE_WHEN_OFF  # sends left from before it was turned off
    linger_ms = settings().drain_linger_ms
    app = current_app._get_current_object()
    stopping = queue.stopping()
    started = time.monotonic()
    outcomes: dict[str, int] = {}
    first = True
    woken = None  # a send a lingering wait took, not claimed yet
    lingered = False
    done_claims = False  # the last batch's claims, its rows committed: released by the next claim or at the end
    with ThreadPoolExecutor(max_workers=size, thread_name_prefix="send") as pool:
        while not (stopping and stopping()):
            claimed = queue.claim_sends(job_id, size, first, woken, release=done_claims)
            first, woken, done_claims = False, None, False
            if not claimed:
                # Nothing left: wait a while for more, as a lingering job, rather than leave each next
                # arrival an RQ job of its own.
                got = queue.linger(job_id, linger_ms, stopping) if time.monotonic() - started < queue.DRAIN_FOR \
                    else False
                if got is False:
                    break
                lingered = True
                woken = None if got is True else got
                continue
            if len(claimed) == size:
                queue.ensure_drain()  # more may wait: a second drain job for a free slot, if none is pending
            results = deliver_batch([item for _raw, item in claimed], pool, app, stopping)
            unstarted = [raw for (raw, _item), outcome in zip(claimed, results, strict=True) if outcome == "unstarted"]
            if unstarted:
                queue.give_back_unstarted(job_id, unstarted)
            for outcome in results:
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
            done_claims = True
            if time.monotonic() - started >= queue.DRAIN_FOR:
                break
    if done_claims:  # the job ends after a batch (its time is up, or its worker stops)
        queue.release_claimed(job_id)
        if not (stopping and stopping()):
            queue.hand_on()  # its time is up and the list may not be empty: a successor takes over
    if lingered:  # a stop may have come while it was among the lingering jobs
        queue.let_go(job_id)
    if woken is not None:  # the worker stopped as a wait took a send: back to the list with it
        queue.give_back_unstarted(job_id, [woken])
    if stopping and stopping():
        queue.hand_on_stopping()
        outcomes["stopped"] = 1
    return " ".join(f"{k}={v}" for k, v in sorted(outcomes.items())) or "empty"


@dataclass(slots=True)
class _Call:
    """One send of a batch: what deliver_otp has in its locals."""

    otp: object
    try_number: int
    message: OutboundOtp | OutboundSms
    provider: Provider
    result: object = None
    error: ProviderError | None = None
    too_late: bool = False
    unstarted: bool = False  # the worker is stopping: not sent, handed back
    crashed: bool = False
    latency_ms: int = 0
    at: datetime | None = None


def deliver_batch(items: list[tuple[str, int, int, int]], pool: ThreadPoolExecutor, app,
                  stopping: Callable[[], bool] | None = None) -> list[str]:
    """deliver_otp for many sends: one SELECT for the rows, one MGET for the sealed codes, the
    provider calls concurrently on `pool` (throttle and expiry margin as for one), then the
    attempts, the compare-and-sets to SENT and their events in one transaction and one commit.
    Failures, expiries and retries then take deliver_otp's own paths, one by one.
    Returns an outcome per item, as deliver_otp would, and "unstarted" for a send not started
    because `stopping()` said so (the caller gives it back)."""
    conn = db.session.connection()
    rows = {row.id: row for row in conn.execute(_LOAD_MANY_FOR_SEND, {"otp_ids": [i[0] for i in items]})}
    seals = redis_client.conn.mget([seal_key(otp_id, generation) for otp_id, generation, _, _ in items])
    outcomes: list[str] = []
    calls: list[_Call] = []
    seen: set[tuple[str, int]] = set()
    for (otp_id, generation, try_number, _ttl), sealed in zip(items, seals, strict=True):
        otp = rows.get(otp_id)
        if (otp is None or otp.generation != generation or otp.status != OtpStatus.QUEUED
                or (otp_id, generation) in seen):  # a send handed back twice goes once per batch
            outcomes.append("skipped")
            continue
        seen.add((otp_id, generation))
        if otp.expires_at <= utcnow():
            expire_one(_orm(otp_id))
            outcomes.append("expired")
            continue
        if sealed is None:
            _fail(otp, "code_unavailable: the code left the queue before it could be sent")
            outcomes.append("failed")
            continue
        calls.append(_Call(otp, try_number, _outbound(otp, generation, sealed), provider_of(otp)))
    db.session.rollback()  # no read transaction held across the provider calls

    def make(call: _Call) -> _Call:
        started = time.monotonic()
        with app.app_context():
            try:
                call.result = call_provider(call.provider, sender(call.provider, call.message), call.message,
                                            expires_at=call.otp.expires_at, stopping=stopping)
            except SlotWaitStopped:
                call.unstarted = True
            except TooLate:
                call.too_late = True
            except ProviderError as exc:
                call.error = exc
            except Exception:  # a bug: the row stays QUEUED and the sweep hands it back
                log.exception("send of %s failed unexpectedly", call.otp.id)
                call.crashed = True
        call.latency_ms = int((time.monotonic() - started) * 1000)
        call.at = utcnow()
        return call

    done = list(pool.map(make, calls))
    # One transaction: every attempt row, every compare-and-set to SENT and its event.
    conn = db.session.connection()
    attempts = [_attempt_row(c) for c in done if c.result is not None or c.error is not None]
    if attempts:
        conn.execute(_INSERT_ATTEMPT, attempts)
    moved = _mark_sent(conn, [c for c in done if c.result is not None])
    sent = EventRows()  # one executemany, not an ORM flush of each event
    for c in done:
        if id(c) in moved:
            sent.event(c.otp.app_id, "otp.sent", {"status": OtpStatus.SENT, "generation": c.otp.generation,
                                                  "provider": c.provider.name, "channel": c.otp.channel},
                       c.at, otp_id=c.otp.id)
            metrics.otp_event("otp.sent", c.otp)  # counted when the transaction commits
    sent.write(conn)
    commit_and_queue()
    # Receipts that beat this commit, for every answered call in one round trip.
    replay_early_receipts_of([(c.provider.name, c.result.provider_message_id) for c in done if c.result is not None])
    for call in done:
        if call.result is not None:
            if id(call) in moved:
                call.provider.after_sent(call.message, call.result)
            outcomes.append("sent" if id(call) in moved else "sent-late")
        elif call.unstarted:
            outcomes.append("unstarted")
        elif call.too_late:
            expire_one(_orm(call.otp.id), within=SEND_MARGIN)
            outcomes.append("expired")
        elif call.error is not None:
            outcomes.append(_after_failure(call.otp, call.error, call.try_number))
        else:
            outcomes.append("crashed")
    return outcomes


def _mark_sent(conn, calls: list[_Call]) -> set[int]:
    """The compare-and-sets to SENT of a batch's answered calls, as one executemany (psycopg sends it
    as one pipeline); id() of the calls whose row moved. When fewer rows moved than were asked (a
    send canceled, resent or expired meanwhile), the rows say which: a moved row carries its call's
    provider message id (unique per provider call)."""
    if not calls:
        return set()
    params = [{"otp_id": c.otp.id, "gen": c.otp.generation, "at": c.at, "pmid": c.result.provider_message_id}
              for c in calls]
    if conn.execute(_MARK_SENT, params if len(params) > 1 else params[0]).rowcount == len(calls):
        return {id(c) for c in calls}
    carried = dict(conn.execute(_MESSAGE_IDS, {"otp_ids": [c.otp.id for c in calls]}).all())
    return {id(c) for c in calls if carried.get(c.otp.id) == c.result.provider_message_id}


def _attempt_row(call: _Call) -> dict:
    return _send_attempt(call.provider.name, call.latency_ms, call.at, otp_id=call.otp.id,
                         generation=call.otp.generation, error=call.error, channel=call.otp.channel,
                         provider_message_id=None if call.error is not None else call.result.provider_message_id)


def _orm(otp_id: str) -> Otp:
    """The ORM object, for the rare paths that hand it on (expiry)."""
    return db.session.get(Otp, otp_id)


class TooLate(Exception):
    """The OTP or message would reach the user too late to be of use: no call is made."""


SEND_MARGIN = timedelta(seconds=1)  # a send starting later than this before expiry is not made


def call_provider(provider: Provider, send, message, expires_at: datetime | None = None,
                  stopping: Callable[[], bool] | None = None):
    """One provider call: wait for a throughput slot if the provider is capped, then send.

    The expiry is checked after the wait too (it can take seconds at a low cap): a call that
    would start within SEND_MARGIN of `expires_at`, or past it, raises TooLate instead.
    With `stopping` (a drain job's view of its worker's stop request), a call not started when
    it says so raises SlotWaitStopped instead (before the wait, during it, or after it).
    A configuration fault (bad token, missing permission) is also noted for operators.
    """
    if stopping is not None and stopping():
        raise SlotWaitStopped()
    if provider.throttled:
        wait_for_slot(provider.name, stopping=stopping)
    if expires_at is not None and utcnow() >= expires_at - SEND_MARGIN:
        raise TooLate()
    started = time.perf_counter()  # wpotp.metrics: the call alone, after the throttle's wait
    try:
        result = send(message)
    except ProviderError as exc:
        metrics.provider_call(provider.name, started, exc)
        if exc.config_fault:
            note_config_fault(provider.name, str(exc))
        raise
    metrics.provider_call(provider.name, started)
    return result


def record_send(provider: str, started: float, *, otp_id: str | None = None, message_id: str | None = None,
                generation: int = 1, error: ProviderError | None = None,
                provider_message_id: str | None = None, channel: str = "whatsapp") -> None:
    """Keep one row per provider call: which message, how long, what went wrong (one Core INSERT,
    in the transaction the caller commits)."""
    db.session.connection().execute(_INSERT_ATTEMPT, _send_attempt(
        provider, int((time.monotonic() - started) * 1000), utcnow(), otp_id=otp_id, message_id=message_id,
        generation=generation, error=error, provider_message_id=provider_message_id, channel=channel))


def _send_attempt(provider: str, latency_ms: int, at: datetime, *, otp_id: str | None = None,
                  message_id: str | None = None, generation: int = 1, error: ProviderError | None = None,
                  provider_message_id: str | None = None, channel: str = "whatsapp") -> dict:
    """A send_attempts row's values."""
    return dict(otp_id=otp_id, message_id=message_id, generation=generation, provider=provider, channel=channel,
                ok=error is None,
                provider_message_id=provider_message_id, permanent=None if error is None else error.permanent,
                error=None if error is None else str(error)[:500], latency_ms=latency_ms, created_at=at)


def retry_delay(exc: ProviderError, try_number: int) -> int | None:
    """Seconds before the next try, or None when no try is left. The provider's hint wins if longer."""
    delays = settings().send_retry_delays
    if exc.permanent or try_number > len(delays):
        return None
    return max(delays[try_number - 1], int(exc.retry_after or 0))


def _after_failure(otp, exc: ProviderError, try_number: int) -> str:
    """Retry with backoff while the OTP is alive; otherwise FAILED with the provider's reason. A
    channel `auto` OTP whose recipient is not on WhatsApp falls back to SMS instead (otp/fallback.py)."""
    if getattr(otp, "fallback", None) == "armed" and otp.channel == "whatsapp" and means_not_on_whatsapp(exc):
        from .fallback import fall_back

        commit_and_queue()  # the send attempt, before the fallback's own transaction
        outcome = fall_back(otp.id, otp.generation, str(exc))
        if outcome != "skipped":
            return outcome
    delay = retry_delay(exc, try_number)
    if delay is not None and (otp.expires_at - utcnow()).total_seconds() > delay:
        commit_and_queue()
        job_queue().schedule_retry(otp.id, otp.generation, try_number + 1, delay=delay, ttl=otp.ttl_seconds)
        return "retrying"
    _fail(otp, str(exc))
    return "failed"


def _fail(otp, reason: str, at: datetime | None = None) -> bool:
    """FAILED with `reason` (compare-and-set), its event, one commit. `otp`: an Otp or a row of
    its columns (id, app_id, generation)."""
    now = at or utcnow()
    moved = db.session.execute(
        update(Otp.__table__)
        .where(Otp.id == otp.id, Otp.generation == otp.generation, Otp.status.in_(ACTIVE_STATUSES))
        .values(status=OtpStatus.FAILED, failed_at=now, error=reason[:500])
    ).rowcount == 1
    if moved:
        record_event(otp, "otp.failed", at=now, status=OtpStatus.FAILED, generation=otp.generation,
                     error=reason[:500])
    commit_and_queue()
    redis_client.conn.delete(seal_key(otp.id, otp.generation))
    return moved
