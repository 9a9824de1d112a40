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

from sqlalchemy import Connection, Insert, Select, insert, literal, select, update

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
    timeline: list | None = None

    @property
    def attempts_remaining(self) -> int:
        return max(0, self.max_attempts - self.attempts)


COLUMNS = tuple(f.name for f in fields(OtpView) if f.name != "timeline")


def _one_statement(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


# --- send -----------------------------------------------------------------------------------------

def insert_otp(conn: Connection, values: dict, event_type: str, event_data: dict) -> OtpView:
    """The new OTP row and its event (and the delivery it owes): one INSERT on PostgreSQL.

    A reference taken meanwhile raises IntegrityError (the partial unique index), as before."""
    row = {name: values.get(name) for name in COLUMNS}
    event = _event(row["app_id"], row["id"], event_type, event_data, row["created_at"])
    statements = [insert(otps).values(row), insert(events).values(event)]
    delivery = owed_delivery(event["app_id"], event["id"], event_type, event_data, event["created_at"])
    if delivery is not None:
        statements.append(insert(deliveries).values(delivery))
    if _one_statement(conn):
        *first, last = statements
        conn.execute(last.add_cte(*(s.cte(f"w{i}") for i, s in enumerate(first))))
    else:
        for statement in statements:
            conn.execute(statement)
    if delivery is not None:
        owe(delivery["id"])
    return OtpView(**row)


# --- read -----------------------------------------------------------------------------------------

def read_otp(conn: Connection, app_id: str, otp_id: str, with_timeline: bool = False) -> OtpView | None:
    """One SELECT: the app's OTP, and with `with_timeline` its events (oldest first) joined to it."""
    if not with_timeline:
        row = conn.execute(select(otps).where(otps.c.id == otp_id, otps.c.app_id == app_id)).first()
        return None if row is None else OtpView(**row._mapping)
    query = (select(otps, events.c.id.label("evt_id"), events.c.type.label("evt_type"),
                    events.c.data.label("evt_data"), events.c.created_at.label("evt_created_at"))
             .outerjoin(events, events.c.otp_id == otps.c.id)
             .where(otps.c.id == otp_id, otps.c.app_id == app_id)
             .order_by(events.c.created_at, events.c.id))
    rows = conn.execute(query).all()
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

def claim_verified(conn: Connection, otp: OtpView, now: datetime, ip: str | None) -> OtpView | None:
    """Mark the OTP VERIFIED if it still can be (active, attempts left, unexpired, the same code),
    with its `verified` attempt, its otp.verified event and the delivery that owes: one statement
    on PostgreSQL. Returns the verified OTP, or None if the compare-and-set lost a race."""
    claim = (update(otps)
             .where(otps.c.id == otp.id, otps.c.status.in_(ACTIVE_STATUSES), otps.c.attempts < otps.c.max_attempts,
                    otps.c.expires_at > now, otps.c.code_hash == otp.code_hash)
             .values(status=OtpStatus.VERIFIED, verified_at=now))
    data = {"status": OtpStatus.VERIFIED, "generation": otp.generation}
    event = _event(otp.app_id, otp.id, "otp.verified", data, now)
    delivery = owed_delivery(otp.app_id, event["id"], "otp.verified", data, now)
    owed = [(verify_attempts, _attempt(otp, "verified", ip, now)), (events, event)]
    if delivery is not None:
        owed.append((deliveries, delivery))
    if not _change_with_rows(conn, claim.returning(otps.c.id), owed):
        return None
    if delivery is not None:
        owe(delivery["id"])
    return replace(otp, status=OtpStatus.VERIFIED, verified_at=now, timeline=None)


def spend_attempt(conn: Connection, otp: OtpView, now: datetime, ip: str | None) -> int | None:
    """A wrong code: spend one attempt if any is left (compare-and-set) and record the
    `invalid_code` attempt with it. Returns the attempts remaining after it, or None if none
    could be spent (the caller says why)."""
    spend = (update(otps)
             .where(otps.c.id == otp.id, otps.c.status.in_(ACTIVE_STATUSES), otps.c.attempts < otps.c.max_attempts,
                    otps.c.expires_at > now)
             .values(attempts=otps.c.attempts + 1)
             .returning(otps.c.attempts, otps.c.max_attempts))
    row = _change_with_rows(conn, spend, [(verify_attempts, _attempt(otp, "invalid_code", ip, now))])
    return None if row is None else row.max_attempts - row.attempts


def record_attempt(conn: Connection, otp: OtpView, result: str, ip: str | None, now: datetime) -> None:
    """A verify attempt that changed nothing (a refused one): only its row."""
    conn.execute(insert(verify_attempts).values(_attempt(otp, result, ip, now)))


# --- helpers --------------------------------------------------------------------------------------

def _change_with_rows(conn: Connection, change, rows: list[tuple]):
    """Run the compare-and-set `change` (an UPDATE … RETURNING) and, only if it matched, insert
    `rows` ((table, values) pairs). Returns the RETURNING row, or None.

    PostgreSQL: one statement, each row an `INSERT … SELECT … FROM` the change's CTE.
    SQLite: the UPDATE, then the INSERTs, in the caller's transaction."""
    if _one_statement(conn):
        changed = change.cte("changed")
        inserts = [_insert_from(table, values, changed).cte(f"w{i}") for i, (table, values) in enumerate(rows)]
        query: Select = select(*changed.c).add_cte(*inserts)
        return conn.execute(query).first()
    row = conn.execute(change).first()
    if row is not None:
        for table, values in rows:
            conn.execute(insert(table).values(values))
    return row


def _insert_from(table, values: dict, source) -> Insert:
    """INSERT INTO table SELECT <values> FROM source: one row per row `source` returns."""
    names = list(values)
    return insert(table).from_select(
        names, select(*(literal(values[n], table.c[n].type) for n in names)).select_from(source))


def _event(app_id: str, otp_id: str, event_type: str, data: dict, at: datetime) -> dict:
    """An `events` row. `data` must never include a code."""
    return {"id": new_id("evt"), "app_id": app_id, "otp_id": otp_id, "message_id": None, "type": event_type,
            "data": data, "created_at": at}


def _attempt(otp: OtpView, result: str, ip: str | None, now: datetime) -> dict:
    return {"otp_id": otp.id, "app_id": otp.app_id, "result": result, "ip": ip, "created_at": now}
