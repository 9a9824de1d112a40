"""The hot statements of the OTP lifecycle, as SQLAlchemy Core: no ORM unit of work on the
paths every OTP takes (send, verify, show).

Each function writes an OTP's change together with the rows it owes, in the caller's
transaction (the session's connection: `wpotp.webhooks.events.commit_and_queue` commits it):
the `events` row of the change and, where the app's endpoint wants that event, its
`webhook_deliveries` outbox row (`owe` notes it for queueing after the commit).

On PostgreSQL the rows of one change go in one statement (data-modifying CTEs: the OTP's
INSERT or compare-and-set UPDATE, the attempt, the event and the delivery; the rows that
depend on a compare-and-set are `INSERT … SELECT … FROM` its RETURNING, so they exist only
if it matched). SQLite has no DML in CTEs: there the same statements run one after another in
the transaction. Either way the rule stays in the UPDATE's WHERE clause, so the database
decides races exactly as the ORM version did.

Answers are built from the values written (`OtpView`), never read back.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import datetime

from sqlalchemy import Connection, Select, bindparam, insert, select, update

from .. import metrics
from ..models import ACTIVE_STATUSES, Event, Otp, OtpStatus, VerifyAttempt, WebhookDelivery
from ..util import new_id
from ..webhooks.events import owe, owed_delivery

otps = Otp.__table__
events = Event.__table__
verify_attempts = VerifyAttempt.__table__
deliveries = WebhookDelivery.__table__


@dataclass(slots=True)
class OtpView:
    """An OTP row as plain values (what the serializers and the compat dialects render).
    The fields are the `otps` columns; `timeline` is the OTP's events when they were read with it."""

    id: str
    app_id: str
    api_key_id: str
    mode: str
    provider: str
    recipient: str
    country: str | None
    reference: str | None
    footer: str | None
    template_id: str
    language: str
    code_hash: str
    superseded_code_hashes: str | None
    code_length: int
    status: str
    attempts: int
    max_attempts: int
    generation: int
    ttl_seconds: int
    provider_message_id: str | None
    error: str | None
    expires_at: datetime
    created_at: datetime
    last_sent_at: datetime
    sent_at: datetime | None = None
    delivered_at: datetime | None = None
    read_at: datetime | None = None
    verified_at: datetime | None = None
    failed_at: datetime | None = None
    canceled_at: datetime | None = None
    expired_at: datetime | None = None
    channel: str = "whatsapp"
    fallback: str | None = None
    anonymised_at: datetime | None = None  # set by retention (wpotp/otp/retention.py), with recipient_hash
    recipient_hash: str | None = None
    timeline: list | None = None

    @property
    def attempts_remaining(self) -> int:
        return max(0, self.max_attempts - self.attempts)


COLUMNS = tuple(f.name for f in fields(OtpView) if f.name != "timeline")


def _one_statement(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


# The statements are built once, with named parameters (`o_<column>` for the OTP, `e_` its event,
# `d_` its delivery, `a_` a verify attempt): building and cache-keying a statement of thirty
# values on every call cost more than running it.

def _params(table, prefix: str, names=None) -> dict:
    return {n: bindparam(prefix + n, type_=table.c[n].type) for n in (names or table.c.keys())}


def _prefixed(prefix: str, values: dict) -> dict:
    return {prefix + k: v for k, v in values.items()}


EVENT_COLUMNS = ("id", "app_id", "otp_id", "message_id", "type", "data", "created_at")
DELIVERY_COLUMNS = ("id", "app_id", "event_id", "event_type", "url", "status", "attempts", "next_attempt_at",
                    "created_at")
ATTEMPT_COLUMNS = ("otp_id", "app_id", "result", "ip", "created_at")

_INSERT_OTP = insert(otps).values(_params(otps, "o_", COLUMNS))
_INSERT_EVENT = insert(events).values(_params(events, "e_", EVENT_COLUMNS))
_INSERT_DELIVERY = insert(deliveries).values(_params(deliveries, "d_", DELIVERY_COLUMNS))
_INSERT_ATTEMPT = insert(verify_attempts).values(_params(verify_attempts, "a_", ATTEMPT_COLUMNS))
# PostgreSQL: the rows of a send in one statement.
_SEND = _INSERT_EVENT.add_cte(_INSERT_OTP.cte("new_otp"))
_SEND_OWING = _INSERT_DELIVERY.add_cte(_INSERT_OTP.cte("new_otp"), _INSERT_EVENT.cte("new_event"))


# --- send -----------------------------------------------------------------------------------------

def insert_otp(conn: Connection, values: dict, event_type: str, event_data: dict) -> OtpView:
    """The new OTP row and its event (and the delivery it owes): one INSERT on PostgreSQL.

    A reference taken meanwhile raises IntegrityError (the partial unique index), as before."""
    row = {name: values.get(name) for name in COLUMNS}
    event = _event(row["app_id"], row["id"], event_type, event_data, row["created_at"])
    params = _prefixed("o_", row) | _prefixed("e_", event)
    delivery = owed_delivery(event["app_id"], event["id"], event_type, event_data, event["created_at"])
    if delivery is not None:
        params |= _prefixed("d_", delivery)
    if _one_statement(conn):
        conn.execute(_SEND if delivery is None else _SEND_OWING, params)
    else:
        for statement in (_INSERT_OTP, _INSERT_EVENT) + ((_INSERT_DELIVERY,) if delivery is not None else ()):
            conn.execute(statement, params)
    if delivery is not None:
        owe(delivery["id"])
    view = OtpView(**row)
    metrics.otp_event(event_type, view)  # counted when the transaction commits
    return view


# --- read -----------------------------------------------------------------------------------------

_THE_OTP = (otps.c.id == bindparam("r_id"), otps.c.app_id == bindparam("r_app_id"))
_READ = select(otps).where(*_THE_OTP)
_READ_WITH_TIMELINE = (
    select(otps, events.c.id.label("evt_id"), events.c.type.label("evt_type"), events.c.data.label("evt_data"),
           events.c.created_at.label("evt_created_at"))
    .outerjoin(events, events.c.otp_id == otps.c.id).where(*_THE_OTP).order_by(events.c.created_at, events.c.id))


def read_otp(conn: Connection, app_id: str, otp_id: str, with_timeline: bool = False) -> OtpView | None:
    """One SELECT: the app's OTP, and with `with_timeline` its events (oldest first) joined to it."""
    params = {"r_id": otp_id, "r_app_id": app_id}
    if not with_timeline:
        row = conn.execute(_READ, params).first()
        return None if row is None else OtpView(**row._mapping)
    rows = conn.execute(_READ_WITH_TIMELINE, params).all()
    if not rows:
        return None
    first = rows[0]._mapping
    timeline = [EventView(r.evt_id, r.evt_type, r.evt_data or {}, r.evt_created_at) for r in rows
                if r.evt_id is not None]
    return OtpView(**{name: first[name] for name in COLUMNS}, timeline=timeline)


@dataclass(slots=True, frozen=True)
class EventView:
    """An event row as the timeline shows it (the attributes `serializers.event_item` reads)."""

    id: str
    type: str
    data: dict
    created_at: datetime


# --- verify ---------------------------------------------------------------------------------------

# The compare-and-sets; their rule is the WHERE clause (`c_id`, `c_now`, `c_code_hash`).
_NOW = bindparam("c_now", type_=otps.c.expires_at.type)
_STILL_OPEN = (otps.c.id == bindparam("c_id"), otps.c.status.in_(ACTIVE_STATUSES),
               otps.c.attempts < otps.c.max_attempts, otps.c.expires_at > _NOW)
_CLAIM = (update(otps).where(*_STILL_OPEN, otps.c.code_hash == bindparam("c_code_hash"))
          .values(status=OtpStatus.VERIFIED, verified_at=_NOW).returning(otps.c.id))
_SPEND = (update(otps).where(*_STILL_OPEN).values(attempts=otps.c.attempts + 1)
          .returning(otps.c.attempts, otps.c.max_attempts))


def _if_changed(change, *rows: tuple[str, object, tuple[str, ...]]) -> Select:
    """PostgreSQL: the compare-and-set `change` and, only if it matched, the rows
    ((parameter prefix, table, columns) each: `INSERT … SELECT … FROM` the change), in one
    statement that returns the change's RETURNING."""
    changed = change.cte("changed")
    inserts = []
    for i, (prefix, table, names) in enumerate(rows):
        source = select(*(bindparam(prefix + n, type_=table.c[n].type) for n in names)).select_from(changed)
        inserts.append(insert(table).from_select(list(names), source).cte(f"row{i}"))
    return select(*changed.c).add_cte(*inserts)


_ATTEMPT_ROW = ("a_", verify_attempts, ATTEMPT_COLUMNS)
_EVENT_ROW = ("e_", events, EVENT_COLUMNS)
_DELIVERY_ROW = ("d_", deliveries, DELIVERY_COLUMNS)
_CLAIM_WITH_ROWS = _if_changed(_CLAIM, _ATTEMPT_ROW, _EVENT_ROW)
_CLAIM_WITH_ROWS_OWING = _if_changed(_CLAIM, _ATTEMPT_ROW, _EVENT_ROW, _DELIVERY_ROW)
_SPEND_WITH_ROW = _if_changed(_SPEND, _ATTEMPT_ROW)


def claim_verified(conn: Connection, otp: OtpView, now: datetime, ip: str | None) -> OtpView | None:
    """Mark the OTP VERIFIED if it still can be (active, attempts left, unexpired, the same code),
    with its `verified` attempt, its otp.verified event and the delivery that owes: one statement
    on PostgreSQL. Returns the verified OTP, or None if the compare-and-set lost a race."""
    data = {"status": OtpStatus.VERIFIED, "generation": otp.generation}
    event = _event(otp.app_id, otp.id, "otp.verified", data, now)
    delivery = owed_delivery(otp.app_id, event["id"], "otp.verified", data, now)
    params = ({"c_id": otp.id, "c_now": now, "c_code_hash": otp.code_hash}
              | _prefixed("a_", _attempt(otp, "verified", ip, now)) | _prefixed("e_", event))
    if delivery is not None:
        params |= _prefixed("d_", delivery)
    if _one_statement(conn):
        row = conn.execute(_CLAIM_WITH_ROWS if delivery is None else _CLAIM_WITH_ROWS_OWING, params).first()
    else:
        row = _then_rows(conn, _CLAIM, params, _INSERT_ATTEMPT, _INSERT_EVENT,
                         *((_INSERT_DELIVERY,) if delivery is not None else ()))
    if row is None:
        return None
    if delivery is not None:
        owe(delivery["id"])
    metrics.otp_event("otp.verified", otp)  # both counted when the transaction commits
    metrics.verify_outcome("verified")
    return replace(otp, status=OtpStatus.VERIFIED, verified_at=now, timeline=None)


def spend_attempt(conn: Connection, otp: OtpView, now: datetime, ip: str | None) -> int | None:
    """A wrong code: spend one attempt if any is left (compare-and-set) and record the
    `invalid_code` attempt with it. Returns the attempts remaining after it, or None if none
    could be spent (the caller says why)."""
    params = {"c_id": otp.id, "c_now": now} | _prefixed("a_", _attempt(otp, "invalid_code", ip, now))
    if _one_statement(conn):
        row = conn.execute(_SPEND_WITH_ROW, params).first()
    else:
        row = _then_rows(conn, _SPEND, params, _INSERT_ATTEMPT)
    if row is not None:
        metrics.verify_outcome("invalid_code")  # counted when the transaction commits
    return None if row is None else row.max_attempts - row.attempts


def record_attempt(conn: Connection, otp: OtpView, result: str, ip: str | None, now: datetime) -> None:
    """A verify attempt that changed nothing (a refused one): only its row."""
    conn.execute(_INSERT_ATTEMPT, _prefixed("a_", _attempt(otp, result, ip, now)))
    metrics.verify_outcome(result)  # counted when the transaction commits


def write_event(conn: Connection, app_id: str, otp_id: str, event_type: str, data: dict, at: datetime) -> None:
    """One event of an OTP and the webhook delivery it owes (if its app's endpoint wants it),
    as Core INSERTs in the caller's transaction; commit with `commit_and_queue`."""
    event = _event(app_id, otp_id, event_type, data, at)
    conn.execute(_INSERT_EVENT, _prefixed("e_", event))
    delivery = owed_delivery(app_id, event["id"], event_type, data, at)
    if delivery is not None:
        conn.execute(_INSERT_DELIVERY, _prefixed("d_", delivery))
        owe(delivery["id"])


# --- helpers --------------------------------------------------------------------------------------

def _then_rows(conn: Connection, change, params: dict, *inserts):
    """SQLite: the compare-and-set, then (only if it matched) the inserts, in the caller's
    transaction. Returns the RETURNING row, or None."""
    row = conn.execute(change, params).first()
    if row is not None:
        for statement in inserts:
            conn.execute(statement, params)
    return row


def _event(app_id: str, otp_id: str, event_type: str, data: dict, at: datetime) -> dict:
    """An `events` row. `data` must never include a code."""
    return {"id": new_id("evt"), "app_id": app_id, "otp_id": otp_id, "message_id": None, "type": event_type,
            "data": data, "created_at": at}


def _attempt(otp: OtpView, result: str, ip: str | None, now: datetime) -> dict:
    return {"otp_id": otp.id, "app_id": otp.app_id, "result": result, "ip": ip, "created_at": now}
