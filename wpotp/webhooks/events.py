"""Fan-out: every new public event owes a delivery to its app's endpoint, written in the same
transaction as the event (an outbox), and queued once that transaction commits."""

from __future__ import annotations

import logging

from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..cache import cached
from ..extensions import db
from ..models import Event, Message, Otp, WebhookDelivery, WebhookEndpoint
from ..util import iso, new_id

log = logging.getLogger("wpotp.webhooks")

PUBLIC_EVENTS = (
    "otp.sent", "otp.delivered", "otp.read", "otp.verified", "otp.failed", "otp.expired", "otp.canceled",
    "message.sent", "message.delivered", "message.read", "message.failed",
)
_TO_QUEUE = "wpotp_webhooks_to_queue"


def owe_deliveries(evt: Event) -> None:
    """Add the delivery this event owes, if its app's endpoint wants it. Call before commit."""
    if evt.type not in PUBLIC_EVENTS or (evt.data or {}).get("superseded"):
        return
    endpoint = _endpoint(evt.app_id)
    if endpoint is None or evt.type not in endpoint.events:
        return
    db.session.flush()  # the event row first: the delivery refers to it
    delivery = WebhookDelivery(id=new_id("whd"), app_id=evt.app_id, event_id=evt.id, event_type=evt.type,
                               url=endpoint.url, status="pending", attempts=0, next_attempt_at=evt.created_at,
                               created_at=evt.created_at)
    db.session.add(delivery)
    db.session.info.setdefault(_TO_QUEUE, []).append(delivery.id)


def _endpoint(app_id: str) -> WebhookEndpoint | None:
    """The app's endpoint, from the process's configuration cache (wpotp.cache)."""
    return cached(("webhook_endpoint", app_id), lambda s: s.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.app_id == app_id)).first(), keep_misses=True)


@sa_event.listens_for(Session, "after_commit")
def _queue_after_commit(session: Session) -> None:
    ids = session.info.pop(_TO_QUEUE, None)
    if not ids:
        return
    from .delivery import enqueue_delivery

    try:
        for delivery_id in ids:
            enqueue_delivery(delivery_id)
    except Exception:  # Redis away: the sweep finds pending deliveries that are due
        log.exception("could not queue %d webhook deliveries; the sweep will", len(ids))


@sa_event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(_TO_QUEUE, None)


def payload(evt: Event) -> dict:
    """The body of SPEC §6: the event, and the OTP or message as it was at that event."""
    data: dict = {}
    if evt.otp_id:
        otp = db.session.get(Otp, evt.otp_id)
        data = {"id": otp.id, "recipient": otp.recipient, "reference": otp.reference,
                "status": evt.data.get("status", otp.status), "templateId": otp.template_id}
    elif evt.message_id:
        message = db.session.get(Message, evt.message_id)
        data = {"id": message.id, "recipient": message.recipient,
                "status": evt.data.get("status", message.status), "templateId": message.template_id}
    if evt.data.get("error"):
        data["error"] = evt.data["error"]
    return {"id": evt.id, "event": evt.type, "createdAt": iso(evt.created_at), "data": data}
