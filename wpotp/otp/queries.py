"""Read-side queries: OTP listing with keyset (cursor) paging, verify attempts, look-ups by recipient."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, and_, or_, select

from ..errors import ValidationError
from ..extensions import db
from ..models import ACTIVE_STATUSES, Otp, VerifyAttempt
from ..util import parse_iso

ID_PATTERN = re.compile(r"^[a-z]{2,4}_[0-9A-Za-z]{1,36}$")


@dataclass
class OtpFilter:
    status: str | None = None
    recipient: str | None = None
    reference: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None


def encode_cursor(created_at: datetime, row_id: str) -> str:
    # Full microseconds: a millisecond cursor would skip rows created within the same millisecond.
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{row_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, row_id = raw.split("|", 1)
        if not ID_PATTERN.match(row_id):
            raise ValueError("not an id")
        return parse_iso(stamp), row_id
    except (ValueError, UnicodeDecodeError):
        raise ValidationError("The cursor is not one this API gave out.",
                              details={"fields": {"cursor": "invalid"}}) from None


def filtered_otps(app_id: str, flt: OtpFilter) -> Select:
    """The app's OTPs matching the filter (the API's list and the console's live log share it)."""
    query = select(Otp).where(Otp.app_id == app_id)
    if flt.status:
        query = query.where(Otp.status == flt.status)
    if flt.recipient:
        query = query.where(Otp.recipient == flt.recipient)
    if flt.reference:
        query = query.where(Otp.reference == flt.reference)
    if flt.created_from:
        query = query.where(Otp.created_at >= flt.created_from)
    if flt.created_to:
        query = query.where(Otp.created_at < flt.created_to)
    return query


def list_otps(app_id: str, flt: OtpFilter, limit: int, cursor: str | None) -> tuple[list[Otp], str | None]:
    query = filtered_otps(app_id, flt)
    if cursor:
        at, row_id = decode_cursor(cursor)
        # The plain bound lets PostgreSQL use the index as a range; the OR alone walks every newer row.
        query = query.where(Otp.created_at <= at,
                            or_(Otp.created_at < at, and_(Otp.created_at == at, Otp.id < row_id)))
    rows = db.session.scalars(query.order_by(Otp.created_at.desc(), Otp.id.desc()).limit(limit + 1)).all()
    next_cursor = encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id) if len(rows) > limit else None
    return list(rows[:limit]), next_cursor


def list_attempts(otp_id: str) -> list[VerifyAttempt]:
    return list(db.session.scalars(
        select(VerifyAttempt).where(VerifyAttempt.otp_id == otp_id).order_by(VerifyAttempt.id)
    ).all())


def latest_active_otp(app_id: str, recipient: str) -> Otp | None:
    """The app's newest OTP still in play for this recipient, for dialects that verify by phone number.

    Served by ix_otps_app_recipient: one recipient of one app has few rows (the per-recipient send
    limit caps them, retention anonymises old ones), so sorting them is cheap. Expired rows the
    sweeper has not reached yet still count: verifying one answers OTP_EXPIRED, which is the truth.
    """
    return db.session.scalars(
        select(Otp).where(Otp.app_id == app_id, Otp.recipient == recipient, Otp.status.in_(ACTIVE_STATUSES))
        .order_by(Otp.created_at.desc(), Otp.id.desc()).limit(1)
    ).first()
