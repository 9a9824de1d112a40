"""The append-only event log: one row for every status change or receipt of an OTP."""

from __future__ import annotations

from datetime import datetime

from ..extensions import db
from ..models import Event, Otp
from ..util import utcnow


def record_event(otp: Otp, event_type: str, at: datetime | None = None, **data: object) -> Event:
    """Add (not commit) an event. `data` must never include a code."""
    event = Event(app_id=otp.app_id, otp_id=otp.id, type=event_type, data=data, created_at=at or utcnow())
    db.session.add(event)
    return event
