"""Receipts: a provider's sent / delivered / read / failed reports, applied to the OTP or the
template message they are about (moved here from delivery.py, which keeps sending).

Every receipt is idempotent: a status only moves forward from a status it may leave, a
receipt seen before (its column already filled) changes nothing, a receipt of a replaced
(resent) OTP message is kept in the timeline as `superseded` without moving the status, and
a receipt for a message id no row carries yet is held in Redis and replayed when the send
commits (the provider can answer before the worker's commit).

Two ways in, the same outcomes:
- `apply_receipt(...)`: one receipt, one transaction (RECEIPT_BATCH=0, and the inline fallback
  when Redis is away at hand-off).
- `apply_receipts(batch)`: many receipts in one transaction and one commit (the receipt drain
  job, wpotp/jobs/receipts.py): the rows the batch names are read with one SELECT (FOR UPDATE
  on PostgreSQL), each receipt's compare-and-set runs as today, and the events and webhook
  outbox rows of the whole batch go in as multi-row INSERTs. `apply_receipts_or_each` falls
  back to one receipt at a time if the batch fails, so one bad receipt never loses the others.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta
from typing import NamedTuple

import redis
from sqlalchemy import bindparam, case, select, update
from sqlalchemy.exc import InterfaceError, OperationalError

from .. import metrics
from ..extensions import db, job_queue, redis_client
from ..models import Message, Otp, SendAttempt
from ..providers.base import means_not_on_whatsapp
from ..settings import settings
from ..util import utcnow
from ..webhooks.events import commit_and_queue
from .events import EventRows

log = logging.getLogger("wpotp.receipts")

_otps = Otp.__table__
_messages = Message.__table__

# Which column a receipt fills, and the statuses it may move a row out of (forward only).
# OTP and Message statuses share these names.
_RECEIPTS = {
    "sent": ("sent_at", "SENT", ("QUEUED",)),
    "delivered": ("delivered_at", "DELIVERED", ("QUEUED", "SENT")),
    "read": ("read_at", "READ", ("QUEUED", "SENT", "DELIVERED")),
    "failed": ("failed_at", "FAILED", ("QUEUED", "SENT", "DELIVERED")),
}
RECEIPT_STATUSES = tuple(_RECEIPTS)
# Two events of one row written in one batch are stamped at least this far apart, so a timeline
# (ordered by created_at, then the random event id) reads in arrival order: sent -> delivered -> read.
EVENT_SPACING = timedelta(microseconds=1)
SENT_SLACK = timedelta(seconds=2)  # Meta's whole-second receipt times, and our commit after its answer


class Receipt(NamedTuple):
    provider: str
    message_id: str
    status: str
    at: datetime | None = None
    error: str | None = None

    def dumps(self) -> str:
        """The receipt as one item of the receipt queue (no code or secret is ever in one)."""
        return json.dumps([self.provider, self.message_id, self.status,
                           self.at.isoformat() if self.at else None, self.error])

    @classmethod
    def loads(cls, raw: bytes | str) -> Receipt:
        provider, message_id, status, at, error = json.loads(raw)
        return cls(provider, message_id, status, datetime.fromisoformat(at) if at else None, error)


class _Batch(EventRows):
    """What one transaction writes besides the compare-and-sets: its events and outbox rows
    (inserted together at the end, multi-row), and the last stamp of each row's events."""

    def __init__(self) -> None:
        super().__init__()
        self.last: dict[str, datetime] = {}
        self.status: dict[str, str] = {}  # a row's status as this transaction left it
        self.locked: _Locked | None = None  # PostgreSQL's batch: decided here, written in one UPDATE
        self.fallbacks: list[tuple[str, int, str]] = []  # (OTP id, generation, reason): queued after the commit

    def next_stamp(self, row_id: str, at: datetime) -> datetime:
        """`at`, or just after this row's last event of the batch if that is not earlier."""
        previous = self.last.get(row_id)
        return previous + EVENT_SPACING if previous is not None and at <= previous else at

    def stamp(self, row_id: str, at: datetime) -> datetime:
        at = self.next_stamp(row_id, at)
        self.last[row_id] = at
        return at

    def write(self) -> None:  # type: ignore[override]
        """The rows the batch decided (PostgreSQL), then its events and deliveries, in the session's transaction."""
        conn = db.session.connection()
        if self.locked is not None:
            self.locked.write(conn)
        EventRows.write(self, conn)


# --- one receipt ----------------------------------------------------------------------------------

def apply_receipt(provider: str, provider_message_id: str, status: str, at: datetime | None = None,
                  error: str | None = None) -> bool:
    """Apply a provider's receipt to the OTP or message it is about. False when it changed nothing.

    Repeats and receipts of a replaced (resent) OTP message change no status. A late receipt
    (delivered after read) is kept in the timeline without moving the status back. A receipt
    for an id no row carries yet is held for EARLY_RECEIPT_TTL (hold_receipt): the provider
    can answer a send's webhook before the worker has committed that send's message id.
    """
    if status not in _RECEIPTS or not provider_message_id:
        return False
    now = at or utcnow()
    applied = _apply_one(provider_message_id, status, now, error)
    if applied is None:
        hold_receipt(provider, provider_message_id, status, now, error)
        return False
    return applied


def _apply_one(provider_message_id: str, status: str, now: datetime, error: str | None) -> bool | None:
    """One receipt in its own transaction: applied and committed (True), a repeat or superseded
    (False; a superseded one's event committed), or None when no row carries the id."""
    batch = _Batch()
    try:
        applied = _apply_known(batch, provider_message_id, status, now, error)
        if batch.events:
            batch.write()
            commit_and_queue()
    finally:
        if db.session().in_transaction():
            db.session.rollback()  # nothing written (a repeat, an unknown id), or a failure
    _queue_fallbacks(batch.fallbacks)
    return applied


def _queue_fallbacks(fallbacks: list[tuple[str, int, str]]) -> None:
    """The SMS fallbacks a batch's "not on WhatsApp" receipts asked for (otp/fallback.py). Redis away:
    the sweep falls back once the app's FALLBACK_AFTER_SECONDS have passed without a receipt."""
    for otp_id, generation, reason in fallbacks:
        try:
            job_queue().queue_fallback(otp_id, generation, reason)
        except redis.exceptions.RedisError:
            log.warning("could not queue the SMS fallback of %s (Redis unavailable); the sweep will", otp_id)


def _apply_known(batch: _Batch, provider_message_id: str, status: str, now: datetime, error: str | None,
                 found: dict | None = None) -> bool | None:
    """The receipt applied to the row that carries this id, in the session's transaction (not
    committed; its event goes to `batch`): True if it moved the row, False for a repeat or a
    receipt of a replaced message (whose event is still recorded, as `superseded`); None when no
    row carries the id. `found`: the batch's look-up (message id -> what _look_up gives), else
    one is made here."""
    if found is None:
        found = _look_up([provider_message_id])
    target = found.get(provider_message_id)
    if target is None:
        return None
    kind, row, generation = target
    if kind == "otp":
        if generation != row.generation:
            data = {"status": batch.status.get(row.id, row.status), "generation": generation, "superseded": True}
            batch.event(row.app_id, f"otp.{status}", data, batch.stamp(row.id, now), otp_id=row.id)
            return False
        if (status == "failed" and row.fallback == "armed" and row.channel == "whatsapp"
                and means_not_on_whatsapp(error)):
            # Channel `auto`: not a failure of the OTP but its cue to go by SMS; the fallback job
            # records it (otp.fallback, with this reason). Nothing changes here.
            batch.fallbacks.append((row.id, generation, error or "not_on_whatsapp"))
            return False
        return _apply_to(batch, _OTP_UPDATES[status], row, status, now, error, generation)
    return _apply_to(batch, _MESSAGE_UPDATES[status], row, status, now, error, None)


def _receipt_update(table, status: str, with_generation: bool):
    """One compare-and-set per receipt: the receipt's column filled if it is still empty, and
    the status moved forward in the same UPDATE only from a status it may leave (SET reads
    the row as it was); RETURNING the status the row has now."""
    column, target, movable = _RECEIPTS[status]
    values = {column: bindparam("rc_at", type_=table.c[column].type),
              "status": case((table.c.status.in_(movable), target), else_=table.c.status)}
    if status == "failed":
        values["error"] = case((table.c.status.in_(movable), bindparam("rc_error")), else_=table.c.error)
    where = [table.c.id == bindparam("rc_id"), table.c[column].is_(None)]
    if with_generation:
        where.append(table.c.generation == bindparam("rc_generation"))
    return update(table).where(*where).values(values).returning(table.c.status)


_OTP_UPDATES = {status: _receipt_update(_otps, status, True) for status in _RECEIPTS}
_MESSAGE_UPDATES = {status: _receipt_update(_messages, status, False) for status in _RECEIPTS}


def _apply_to(batch: _Batch, statement, row, status: str, now: datetime, error: str | None,
              generation: int | None) -> bool:
    """The compare-and-set of one receipt, then its event (OTP: status and generation, as SPEC §6's
    payload reads them; message: status)."""
    error_text = (error or "failed: reported by the provider")[:500] if status == "failed" else None
    if row.sent_at is not None and row.sent_at - SENT_SLACK < now <= row.sent_at and status != "sent":
        # Meta's whole-second time of a receipt that reached us just before or after our own `sent`
        # commit (say, queued before it and applied after): stamped just after that `sent`, so the
        # timeline (created_at, then the random event id) never reads it first. A time further
        # back is the provider's own (a gateway's clock) and is kept.
        now = row.sent_at + EVENT_SPACING
    at = batch.next_stamp(row.id, now)
    if batch.locked is not None:
        new_status = batch.locked.apply(row, status, at, error_text, "otps" if generation is not None else "messages")
    else:
        moved = db.session.connection().execute(statement, {"rc_id": row.id, "rc_generation": generation,
                                                            "rc_at": at, "rc_error": error_text}).first()
        new_status = moved.status if moved is not None else None
    if new_status is None:
        return False  # a repeat
    batch.stamp(row.id, at)
    batch.status[row.id] = new_status
    data = {"status": new_status}
    if generation is not None:
        data["generation"] = generation
        data["channel"] = row.channel  # the channel of the message this receipt is about (its generation's)
    if error_text:
        data["error"] = error_text
    if generation is not None:
        batch.event(row.app_id, f"otp.{status}", data, at, otp_id=row.id)
        if new_status == _RECEIPTS[status][1]:
            metrics.otp_event(status, row)  # a forward move; counted when the transaction commits
    else:
        batch.event(row.app_id, f"message.{status}", data, at, message_id=row.id)
    return True


_RECEIPT_COLUMNS = ("status", "sent_at", "delivered_at", "read_at", "failed_at", "error")
_RECEIPT_OTP_COLUMNS = (_otps.c.id, _otps.c.app_id, _otps.c.generation, _otps.c.provider_message_id,
                        _otps.c.fallback, _otps.c.channel, *(_otps.c[name] for name in _RECEIPT_COLUMNS),
                        _otps.c.provider)  # provider and channel: labels of wpotp.metrics too
_MESSAGE_COLUMNS = (_messages.c.id, _messages.c.app_id, _messages.c.provider_message_id,
                    *(_messages.c[name] for name in _RECEIPT_COLUMNS))


class _Locked:
    """PostgreSQL's batch: the rows the batch names were read FOR UPDATE, so nothing else changes
    them before the commit and each receipt's compare-and-set can be decided here, on their values,
    exactly as the UPDATE's WHERE and CASE would (the column filled only if empty, the status moved
    only from a status it may leave). The rows changed are then written with one UPDATE … FROM
    (VALUES …) per table."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, dict]] = {"otps": {}, "messages": {}}

    def apply(self, row, status: str, at: datetime, error_text: str | None, table: str) -> str | None:
        state = self.rows[table].get(row.id)
        if state is None:
            state = self.rows[table][row.id] = {name: getattr(row, name) for name in _RECEIPT_COLUMNS}
        column, target, movable = _RECEIPTS[status]
        if state[column] is not None:
            return None
        state[column] = at
        if state["status"] in movable:
            state["status"] = target
            if status == "failed":
                state["error"] = error_text
        state["changed"] = True
        return state["status"]

    def write(self, conn) -> None:
        for table in (_otps, _messages):
            changed = [{"r_id": row_id, **{f"r_{name}": state[name] for name in _RECEIPT_COLUMNS}}
                       for row_id, state in self.rows[table.name].items() if state.get("changed")]
            if changed:
                # One statement compiled once, sent as executemany (psycopg pipelines it: one round trip).
                # An UPDATE … FROM (VALUES …) with the rows inlined was a new statement for every batch:
                # compiling it took about an eighth of a worker's CPU under the bench's load.
                conn.execute(_WRITE_RECEIPTS[table.name], changed)


_WRITE_RECEIPTS = {table.name: update(table).where(table.c.id == bindparam("r_id"))
                   .values({name: bindparam(f"r_{name}") for name in _RECEIPT_COLUMNS})
                   for table in (_otps, _messages)}


def _look_up(message_ids: list[str]) -> dict:
    """message id -> ("otp", the OTP's row, the generation that message was) or ("message", the
    message's row, None), for the ids some row carries: at most four SELECTs for any number of
    receipts (the OTPs that carry them now, the send attempts of replaced messages, those OTPs,
    the template messages). On PostgreSQL the OTP and message rows are locked (FOR UPDATE, in id
    order) until the commit, so two drain jobs never interleave their receipts for one row."""
    conn = db.session.connection()
    lock = conn.dialect.name == "postgresql"
    ids = list(dict.fromkeys(message_ids))
    found: dict = {}
    query = select(*_RECEIPT_OTP_COLUMNS).where(_otps.c.provider_message_id.in_(ids)).order_by(_otps.c.id)
    for row in conn.execute(query.with_for_update() if lock else query):
        found[row.provider_message_id] = ("otp", row, row.generation)
    missing = [i for i in ids if i not in found]
    if missing:
        attempts = {}
        for attempt in conn.execute(select(SendAttempt.provider_message_id, SendAttempt.otp_id,
                                           SendAttempt.generation)
                                    .where(SendAttempt.provider_message_id.in_(missing),
                                           SendAttempt.otp_id.is_not(None))):
            attempts.setdefault(attempt.provider_message_id, attempt)
        if attempts:
            query = (select(*_RECEIPT_OTP_COLUMNS)
                     .where(_otps.c.id.in_({a.otp_id for a in attempts.values()})).order_by(_otps.c.id))
            otps = {row.id: row for row in conn.execute(query.with_for_update() if lock else query)}
            for message_id, attempt in attempts.items():
                if attempt.otp_id in otps:
                    found[message_id] = ("otp", otps[attempt.otp_id], attempt.generation)
        missing = [i for i in missing if i not in found]
    if missing:
        query = select(*_MESSAGE_COLUMNS).where(_messages.c.provider_message_id.in_(missing)).order_by(
            _messages.c.id)
        for row in conn.execute(query.with_for_update() if lock else query):
            found[row.provider_message_id] = ("message", row, None)
    return found


# --- many receipts ----------------------------------------------------------------------------------

def apply_receipts(batch: list[Receipt]) -> list[bool]:
    """Apply receipts in arrival order in one transaction and one commit; whether each moved its
    row (as apply_receipt would say). Held receipts (no row carries the id yet) are held after
    the commit. Raises if a statement fails (the transaction is rolled back): see
    apply_receipts_or_each."""
    valid = [(i, r) for i, r in enumerate(batch) if r.status in _RECEIPTS and r.message_id]
    results = [False] * len(batch)
    if not valid:
        return results
    writes = _Batch()
    if db.session.connection().dialect.name == "postgresql":
        writes.locked = _Locked()  # the look-up locks the rows (FOR UPDATE)
    held: list[Receipt] = []
    try:
        found = _look_up([r.message_id for _, r in valid])
        for i, receipt in valid:
            now = receipt.at or utcnow()
            applied = _apply_known(writes, receipt.message_id, receipt.status, now, receipt.error, found)
            if applied is None:
                held.append(receipt._replace(at=now))
            results[i] = bool(applied)
        writes.write()
        commit_and_queue()
    except BaseException:
        db.session.rollback()
        raise
    _queue_fallbacks(writes.fallbacks)
    for receipt in held:
        hold_receipt(receipt.provider, receipt.message_id, receipt.status, receipt.at, receipt.error)
    return results


# The database itself failing (unreachable, restarting, SQLite's lock held past its timeout, a
# deadlock): no receipt is to blame, so none is skipped; the caller keeps them all for later.
DATABASE_OUTAGES = (OperationalError, InterfaceError)


def apply_receipts_or_each(batch: list[Receipt]) -> list[bool]:
    """apply_receipts, and if the batch fails, each receipt on its own (a failing one is logged and
    skipped), so one bad receipt never loses the others. A database outage (DATABASE_OUTAGES) is
    raised instead, the batch and the fallback alike: then no receipt is at fault and none is dropped
    (the drain job gives them back to the queue)."""
    try:
        return apply_receipts(batch)
    except DATABASE_OUTAGES:
        raise
    except Exception:  # noqa: BLE001
        log.exception("a batch of %d receipts failed; applying them one at a time", len(batch))
    results = []
    for receipt in batch:
        try:
            results.append(apply_receipt(*receipt))
        except DATABASE_OUTAGES:
            db.session.rollback()
            raise
        except Exception:  # noqa: BLE001
            db.session.rollback()
            log.exception("a %s %s receipt could not be applied; skipped", receipt.provider, receipt.status)
            results.append(False)
    return results


# --- receipts that overtake the worker's commit --------------------------------------------------

EARLY_RECEIPT_TTL = 300  # seconds a receipt for a not-yet-known message id is kept in Redis
EARLY_RECEIPTS_PER_ID = 10  # a message has at most four receipts; repeats beyond this are dropped


def early_receipt_key(provider: str, provider_message_id: str) -> str:
    return f"wpotp:early-receipt:{provider}:{provider_message_id}"


def hold_receipt(provider: str, provider_message_id: str, status: str, at: datetime, error: str | None) -> None:
    """Keep a receipt whose message id no row has yet, for replay_early_receipts after the commit.

    Held: the status, its time and the provider's error text (never a code or a secret). Ids
    that never appear (another system's messages on the same number) expire unread. After
    the hold, the database is asked once more: if the worker committed between our look-up
    and the hold, it may have looked for held receipts already, so we take them ourselves.
    Whoever takes the list (one MULTI) applies it, so each receipt is applied once.
    """
    key = early_receipt_key(provider, provider_message_id)
    entry = json.dumps({"status": status, "at": at.isoformat(), "error": error})
    try:
        with redis_client.conn.pipeline() as pipe:
            pipe.rpush(key, entry).ltrim(key, 0, EARLY_RECEIPTS_PER_ID - 1).expire(key, EARLY_RECEIPT_TTL)
            pipe.execute()
    except redis.exceptions.RedisError:
        log.warning("a %s receipt for an unknown message id could not be held (Redis unavailable); dropped",
                    provider)
        return
    db.session.rollback()  # end the read transaction: a fresh snapshot sees a commit made since
    if _known_message_id(provider_message_id):
        replay_early_receipts(provider, provider_message_id)


def replay_early_receipts(provider: str, provider_message_id: str | None) -> int:
    """Apply, in arrival order, the receipts held for a message id just committed; how many moved it.

    Each is stamped at the time it is applied (so never before the `sent` it overtook).
    The worker calls this right after committing a send's provider message id. Redis away:
    the held receipts stay until their TTL and the status waits for the provider's next one.
    """
    return replay_early_receipts_of([(provider, provider_message_id)])


def replay_early_receipts_of(sent: list[tuple[str, str | None]]) -> int:
    """replay_early_receipts for the (provider, provider message id) pairs of a batch just
    committed, taken in one MULTI (one round trip, not one per send); how many moved a row."""
    pairs = [(provider, pmid) for provider, pmid in sent if pmid]
    if not pairs:
        return 0
    try:
        with redis_client.conn.pipeline() as pipe:  # MULTI: exactly one taker of each list
            for provider, pmid in pairs:
                key = early_receipt_key(provider, pmid)
                pipe.lrange(key, 0, -1).delete(key)
            answers = pipe.execute()
    except redis.exceptions.RedisError:
        log.warning("could not read the held receipts of %d sent message(s) (Redis unavailable)", len(pairs))
        return 0
    applied = 0
    for (provider, pmid), held in zip(pairs, answers[::2], strict=True):
        moved = 0
        for raw in held:
            receipt = json.loads(raw)
            # Stamped now, not at the provider's time (which is before our `sent`, often by less than
            # Meta's one-second resolution): the timeline and the durations in reports stay in order.
            at = max(datetime.fromisoformat(receipt["at"]), utcnow())
            moved += bool(_apply_one(pmid, receipt["status"], at, receipt["error"]))
        if held:
            log.info("%s: %d early receipt(s) replayed, %d applied", provider, len(held), moved)
        applied += moved
    return applied


def _known_message_id(provider_message_id: str) -> bool:
    """Whether any committed send carries this provider message id (OTP or message)."""
    return db.session.scalar(select(SendAttempt.id).where(SendAttempt.provider_message_id == provider_message_id)
                             .limit(1)) is not None


# --- the receipt queue (RECEIPT_BATCH > 0) ----------------------------------------------------------
#
# The Redis side (the list, the drain flag, claims, give-backs, the sweep's rescue) is the job
# queue's (wpotp/jobs/receipt_queue.py, reached through the queue port, extensions.job_queue());
# this module decides what to hand off and applies what a drain job claims.

RECEIPT_BATCH_WHEN_OFF = 100  # a drain job's batch with RECEIPT_BATCH=0 (receipts queued before it was)


def take_receipts(receipts: list[Receipt]) -> int:
    """The webhook's hand-off: queue the receipts for a drain job (RECEIPT_BATCH > 0), or apply them
    here and now (RECEIPT_BATCH=0, or Redis unreachable). How many were applied here.

    A message id with a control character in it names no message we sent (PostgreSQL would
    refuse even to look it up: NUL is not allowed in text), so such a receipt is dropped here."""
    receipts = [r for r in receipts if r.message_id.isprintable()]
    if not receipts:
        return 0
    if settings().receipt_batch:
        try:
            job_queue().hand_off_receipts([r.dumps() for r in receipts])
        except redis.exceptions.RedisError:
            log.warning("the receipt queue is unreachable; %d receipt(s) applied inline", len(receipts))
        else:
            return 0
    return sum(apply_receipt(*receipt) for receipt in receipts)


def drain_receipts(job_id: str) -> str:
    """A drain job: claim batches of queued receipts and apply each batch (apply_receipts_or_each)
    until the queue is empty; after RECEIPT_DRAIN_FOR seconds, hand on to a fresh job instead. A full
    batch means more may wait: one more drain job is made pending then (if none is)."""
    size = settings().receipt_batch or RECEIPT_BATCH_WHEN_OFF
    linger_ms = settings().drain_linger_ms
    queue = job_queue()
    stopping = queue.stopping()
    started = time.monotonic()
    total = applied = 0
    first = True
    woken = None  # a receipt a lingering wait took, not claimed yet
    lingered = stopped = False
    while True:
        claimed = queue.claim_receipts(job_id, size, first, woken)
        first, woken = False, None
        if not claimed:
            # Nothing left: wait a while for more, as a lingering job, not a job per receipt POST.
            got = False
            if time.monotonic() - started < queue.RECEIPT_DRAIN_FOR and not (stopping and stopping()):
                got = queue.linger_for_receipts(job_id, linger_ms, stopping)
            if got is False:
                break
            lingered = True
            if stopping and stopping():
                stopped = True
                break
            woken = None if got is True else got
            continue
        if len(claimed) == size:
            queue.ensure_receipt_drain()
        batch = []
        for raw in claimed:
            try:
                batch.append(Receipt.loads(raw))
            except (ValueError, TypeError):
                log.error("an unreadable item in the receipt queue; dropped")
        try:
            applied += sum(apply_receipts_or_each(batch))
        except DATABASE_OUTAGES:
            # Back to the head of the queue, in order, for the next drain job (one a hand-off or the
            # sweep makes pending once the database answers again); this job fails, visibly.
            given = queue.give_back_receipts(job_id)
            log.warning("the database is unavailable; %d claimed receipt(s) given back to the receipt queue",
                        given)
            raise
        total += len(batch)
        queue.release_receipts(job_id)
        if time.monotonic() - started >= queue.RECEIPT_DRAIN_FOR:
            queue.hand_on_receipts()
            break
    if lingered:
        queue.let_go_of_receipts(job_id)  # first: a job still among the lingering would keep the next from pending
    if stopped:  # the worker stopped as the wait ended: what it took back to the head of the queue
        queue.give_back_receipts(job_id)
        queue.ensure_receipt_drain()
    return f"receipts={total} applied={applied}"
