"""/v1/logs: the app's events (status changes of its OTPs and messages), newest first."""

from __future__ import annotations

from flask import jsonify
from pydantic import Field
from sqlalchemy import and_, or_, select

from ..errors import ValidationError
from ..extensions import db
from ..models import Event
from ..otp.queries import decode_cursor, encode_cursor
from ..util import iso, parse_iso
from . import bp
from .auth import require_key
from .schemas import Strict, Text, parse_query


class LogQuery(Strict):
    model_config = Strict.model_config | {"strict": False}
    type: Text | None = Field(None, pattern=r"^(otp|message)\.[a-z_]{2,20}$")
    otpId: Text | None = Field(None, pattern=r"^otp_[0-9A-Za-z]{1,36}$")  # noqa: N815
    messageId: Text | None = Field(None, pattern=r"^msg_[0-9A-Za-z]{1,36}$")  # noqa: N815
    from_: Text | None = Field(None, alias="from", max_length=40)
    to: Text | None = Field(None, max_length=40)
    limit: int = Field(20, ge=1, le=100)
    cursor: Text | None = Field(None, max_length=200)


def log_item(event: Event) -> dict:
    return {"id": event.id, "type": event.type, "createdAt": iso(event.created_at), "otpId": event.otp_id,
            "messageId": event.message_id, "data": event.data}


@bp.get("/logs")
def list_logs():
    _key, app = require_key()
    q = parse_query(LogQuery)
    rows, next_cursor = events_page(app.id, q)
    return jsonify({"data": [log_item(e) for e in rows], "nextCursor": next_cursor})


def events_page(app_id: str, q: LogQuery) -> tuple[list[Event], str | None]:
    """One page of the app's events for a parsed query (shared with the compat dialects' logs)."""
    query = select(Event).where(Event.app_id == app_id)
    for column, value in ((Event.type, q.type), (Event.otp_id, q.otpId), (Event.message_id, q.messageId)):
        if value:
            query = query.where(column == value)
    for name, raw, op in (("from", q.from_, "ge"), ("to", q.to, "lt")):
        if raw:
            try:
                at = parse_iso(raw)
            except ValueError:
                raise ValidationError("Invalid query parameters.",
                                      details={"fields": {name: "expected an ISO-8601 timestamp"}}) from None
            query = query.where(Event.created_at >= at if op == "ge" else Event.created_at < at)
    if q.cursor:
        at, row_id = decode_cursor(q.cursor)
        query = query.where(Event.created_at <= at,  # an index range bound (see otp/queries.py)
                            or_(Event.created_at < at, and_(Event.created_at == at, Event.id < row_id)))
    rows = db.session.scalars(query.order_by(Event.created_at.desc(), Event.id.desc()).limit(q.limit + 1)).all()
    next_cursor = encode_cursor(rows[q.limit - 1].created_at, rows[q.limit - 1].id) if len(rows) > q.limit else None
    return list(rows[: q.limit]), next_cursor
