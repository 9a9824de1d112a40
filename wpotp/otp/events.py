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


class EventRows:
    """Events and the outbox rows they owe, gathered for one executemany each in the caller's
    transaction (Core, no unit of work): a drain job's batch of sends, a batch of receipts. `write`
    inserts them and notes the deliveries for `commit_and_queue`; metrics are the caller's."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.deliveries: list[dict] = []

    def event(self, app_id: str, event_type: str, data: dict, at: datetime, otp_id: str | None = None,
              message_id: str | None = None) -> None:
        event_id = new_id("evt")
        self.events.append({"id": event_id, "app_id": app_id, "otp_id": otp_id, "message_id": message_id,
                            "type": event_type, "data": data, "created_at": at})
        delivery = owed_delivery(app_id, event_id, event_type, data, at)
        if delivery is not None:
            self.deliveries.append(delivery)

    def write(self, conn) -> None:
        """The events, then the deliveries that refer to them: one INSERT each (executemany)."""
        if self.events:
            conn.execute(_INSERT_EVENTS, self.events)
        if self.deliveries:
            conn.execute(_INSERT_DELIVERIES, self.deliveries)
            for delivery in self.deliveries:
                owe(delivery["id"])
        self.events, self.deliveries = [], []
