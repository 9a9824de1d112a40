"""The append-only event log: one row for every status change or receipt of an OTP."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert

from .. import metrics
from ..extensions import db
from ..models import Event, Message, Otp, WebhookDelivery
from ..util import new_id, utcnow
from ..webhooks.events import owe, owe_deliveries, owed_delivery

_INSERT_EVENTS = insert(Event.__table__)  # built once: executemany, sent by psycopg as one pipeline
_INSERT_DELIVERIES = insert(WebhookDelivery.__table__)


def record_event(otp: Otp, event_type: str, at: datetime | None = None, **data: object) -> Event:
    """Add (not commit) an event. `data` must never include a code."""
    event = Event(id=new_id("evt"), app_id=otp.app_id, otp_id=otp.id, type=event_type, data=data,
                  created_at=at or utcnow())
    db.session.add(event)
    owe_deliveries(event)
    metrics.otp_event(event_type, otp)  # counted when the transaction commits
    return event


def record_message_event(message: Message, event_type: str, at: datetime | None = None, **data: object) -> Event:
    event = Event(id=new_id("evt"), app_id=message.app_id, message_id=message.id, type=event_type, data=data,
                  created_at=at or utcnow())
    db.session.add(event)
    owe_deliveries(event)
    return event


def insert_otp_events(conn, events: list[tuple[object, str, datetime, dict]]) -> None:
    """Many OTPs' events at once, as Core in the caller's transaction: `(otp, type, at, data)` each,
    with the outbox rows they owe (queued by `commit_and_queue`) and their metrics staged. What
    `record_event` does for one through the ORM, without a unit of work (a drain job's batch)."""
    rows, deliveries = [], []
    for otp, event_type, at, data in events:
        event_id = new_id("evt")
        rows.append({"id": event_id, "app_id": otp.app_id, "otp_id": otp.id, "message_id": None,
                     "type": event_type, "data": data, "created_at": at})
        delivery = owed_delivery(otp.app_id, event_id, event_type, data, at)
        if delivery is not None:
            deliveries.append(delivery)
        metrics.otp_event(event_type, otp)  # counted when the transaction commits
    if rows:
        conn.execute(_INSERT_EVENTS, rows)
    if deliveries:
        conn.execute(_INSERT_DELIVERIES, deliveries)
        for delivery in deliveries:
            owe(delivery["id"])
