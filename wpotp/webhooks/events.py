"""Fan-out: every new public event owes a delivery to its app's endpoint, written in the same
transaction as the event (an outbox), and queued once that transaction commits.

Nothing here runs by itself: the writer of an event calls `owe_deliveries` (wpotp.otp.events
does) and commits with `commit_and_queue`, which queues what the committed transaction owes.
A transaction committed any other way leaves its deliveries to the sweep (`rescue_due`).
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select

from .. import metrics
from ..cache import cached
from ..extensions import db
from ..models import Event, Message, Otp, WebhookDelivery, WebhookEndpoint
from ..util import iso, new_id

log = logging.getLogger("wpotp.webhooks")

PUBLIC_EVENTS = (
    "otp.sent", "otp.delivered", "otp.read", "otp.verified", "otp.failed", "otp.expired", "otp.canceled",
    "otp.fallback", "message.sent", "message.delivered", "message.read", "message.failed",
)
# What an endpoint set up without a list of events gets: SPEC §6's events. `otp.fallback` (channel
# `auto`'s SMS fallback) is there to subscribe to, not sent to endpoints that did not ask for it.
DEFAULT_EVENTS = tuple(e for e in PUBLIC_EVENTS if e != "otp.fallback")
_OWED = "wpotp_owed_deliveries"  # session.info: (the transaction, the delivery ids it owes)


def owe_deliveries(evt: Event) -> None:
    """Add the delivery this event owes, if its app's endpoint wants it, to the session's
    transaction; `commit_and_queue` queues it once that transaction has committed."""
    values = owed_delivery(evt.app_id, evt.id, evt.type, evt.data, evt.created_at)
    if values is None:
        return
    db.session.flush()  # the event row first: the delivery refers to it
    db.session.add(WebhookDelivery(**values))
    owe(values["id"])


def owed_delivery(app_id: str, event_id: str, event_type: str, data: dict | None, at: datetime) -> dict | None:
    """The webhook_deliveries row (its column values) an event owes, or None if its app's
    endpoint does not want it. The caller writes the row in the event's transaction and calls
    `owe` with its id (wpotp.otp.store writes it as Core, `owe_deliveries` through the ORM)."""
    if event_type not in PUBLIC_EVENTS or (data or {}).get("superseded"):
        return None
    endpoint = _endpoint(app_id)
    if endpoint is None or event_type not in endpoint.events:
        return None
    return {"id": new_id("whd"), "app_id": app_id, "event_id": event_id, "event_type": event_type,
            "url": endpoint.url, "status": "pending", "attempts": 0, "next_attempt_at": at, "created_at": at}


def owe(delivery_id: str) -> None:
    """Note a delivery row written in the session's current transaction, to queue after its commit."""
    session = db.session()
    transaction = session.get_transaction()
    owed = session.info.get(_OWED)
    if owed is None or owed[0] is not transaction:  # a new transaction: what an earlier one owed is gone
        owed = session.info[_OWED] = (transaction, [])
    owed[1].append(delivery_id)


def commit_and_queue() -> None:
    """Commit the session, then count its metrics and queue the webhook deliveries its transaction wrote.

    Only ids owed by the very transaction that committed are queued (one rolled back before
    leaves nothing behind). Redis away: the deliveries are pending rows, and the sweep queues
    them when they are due.
    """
    session = db.session()
    transaction = session.get_transaction()
    owed = session.info.pop(_OWED, None)
    session.commit()
    metrics.count_committed(session, transaction)  # the counts this transaction staged (wpotp.metrics)
    if owed is None or owed[0] is not transaction or not owed[1]:
        return
    from .delivery import enqueue_delivery

    try:
        for delivery_id in owed[1]:
            enqueue_delivery(delivery_id)
    except Exception:  # noqa: BLE001  (the rows are committed: the sweep finds them)
        log.exception("could not queue %d webhook deliveries; the sweep will", len(owed[1]))


def _endpoint(app_id: str) -> WebhookEndpoint | None:
    """The app's endpoint, from the process's configuration cache (wpotp.cache)."""
    return cached(("webhook_endpoint", app_id), lambda s: s.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.app_id == app_id)).first(), keep_misses=True)


def payload(evt: Event) -> dict:
    """The body of SPEC §6: the event, and the OTP or message as it was at that event."""
    data: dict = {}
    if evt.otp_id:
        otp = db.session.get(Otp, evt.otp_id)
        # The channel the event concerns (its own record; else the OTP's last send).
        data = {"id": otp.id, "recipient": otp.recipient, "reference": otp.reference,
                "status": evt.data.get("status", otp.status), "templateId": otp.template_id,
                "channel": evt.data.get("channel") or otp.channel}
        if evt.type == "otp.fallback":
            data["fromChannel"], data["reason"] = "whatsapp", evt.data.get("reason")
    elif evt.message_id:
        message = db.session.get(Message, evt.message_id)
        data = {"id": message.id, "recipient": message.recipient,
                "status": evt.data.get("status", message.status), "templateId": message.template_id}
    if evt.data.get("error"):
        data["error"] = evt.data["error"]
    return {"id": evt.id, "event": evt.type, "createdAt": iso(evt.created_at), "data": data}
