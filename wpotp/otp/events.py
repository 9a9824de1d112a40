"""The append-only event log: one row for every status change or receipt of an OTP."""

from __future__ import annotations

from datetime import datetime

from .. import metrics
from ..extensions import db
from ..models import Event, Message, Otp
from ..util import new_id, utcnow
from ..webhooks.events import owe_deliveries


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
