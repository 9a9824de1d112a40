"""WhatsApp-Web gateway acks: POST /webhooks/gateway/<token>.

WAHA posts `message.ack` ({"event","session","timestamp","payload":{"id","ack","ackName"}}) and
Evolution API posts `messages.update` ({"event","instance","date_time","data":{"keyId","status"}};
v1 spreads the message key into `data`, and may send a list). Each ack becomes one
`Receipt("gateway", message id, status, at, error)` for `take_receipts`; nothing else changes an OTP.

Authentication: the unguessable URL token (GATEWAY_WEBHOOK_TOKEN). A wrong token answers 404,
like any URL that does not exist. With GATEWAY_WEBHOOK_HMAC_KEY set, WAHA's `X-Webhook-Hmac`
(hex HMAC-SHA512 of the raw body) is required as well, else 401.

Other events, unknown ids and unreadable bodies answer 200 and change nothing: a gateway
retries anything else, and none of those would ever succeed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flask import Response, abort, current_app, jsonify, request

from ..otp.receipts import Receipt, take_receipts
from ..util import parse_iso, utcnow
from . import bp

log = logging.getLogger("wpotp.inbound.gateway")

# WAHA's WAMessageAck: ERROR -1, PENDING 0, SERVER 1, DEVICE 2, READ 3, PLAYED 4.
WAHA_ACKS = {-1: "failed", 1: "sent", 2: "delivered", 3: "read", 4: "read"}
WAHA_ACK_NAMES = {"ERROR": -1, "PENDING": 0, "SERVER": 1, "DEVICE": 2, "READ": 3, "PLAYED": 4}
# Evolution's message statuses (Baileys' numbers too); its Cloud-API channel upper-cases Meta's.
EVOLUTION_STATUSES = {
    "ERROR": "failed", "SERVER_ACK": "sent", "DELIVERY_ACK": "delivered", "READ": "read", "PLAYED": "read",
    "SENT": "sent", "DELIVERED": "delivered", "FAILED": "failed",
    0: "failed", 2: "sent", 3: "delivered", 4: "read", 5: "read",
}
MAX_ACKS_PER_CALL = 100
MAX_ID_LENGTH = 128
# An event time outside [now - this, now] is not believed; the receipt is stamped now instead.
EVENT_TIME_WINDOW = timedelta(days=7)


@dataclass(frozen=True)
class Ack:
    message_id: str
    status: str  # sent, delivered, read, failed
    at: datetime
    error: str | None = None


@bp.post("/gateway/<token>")
@bp.post("/gateway/<token>/<path:event_name>")  # Evolution's "webhook by events" appends the event name
def gateway_ack(token: str, event_name: str | None = None) -> tuple[Response, int]:
    if not token_matches(token):
        abort(404)
    raw = request.get_data(cache=False)
    if not signature_matches(raw):
        return jsonify({"error": {"code": "unauthorized", "message": "bad or missing X-Webhook-Hmac"}}), 401
    acks = acks_in(read_json(raw), utcnow())
    applied = take_receipts([Receipt("gateway", a.message_id, a.status, a.at, a.error) for a in acks])
    log.info("gateway webhook: %d ack(s), %d applied inline", len(acks), applied)
    return jsonify({"status": "ok"}), 200


def token_matches(token: str) -> bool:
    """The URL token must equal GATEWAY_WEBHOOK_TOKEN; an unset token never matches."""
    expected = current_app.config.get("GATEWAY_WEBHOOK_TOKEN") or ""
    return bool(expected) and hmac.compare_digest(token.encode(), expected.encode())


def signature_matches(raw: bytes) -> bool:
    """WAHA's HMAC, required only when GATEWAY_WEBHOOK_HMAC_KEY is set."""
    key = current_app.config.get("GATEWAY_WEBHOOK_HMAC_KEY") or ""
    if not key:
        return True
    given = request.headers.get("X-Webhook-Hmac", "").strip().lower()
    algorithm = request.headers.get("X-Webhook-Hmac-Algorithm", "sha512").strip().lower()
    if not given or algorithm != "sha512":
        return False
    expected = hmac.new(key.encode(), raw, hashlib.sha512).hexdigest()
    return hmac.compare_digest(given.encode(errors="replace"), expected.encode())


def read_json(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def acks_in(body: object, now: datetime) -> list[Ack]:
    """The acks a webhook body carries, in our receipt words; [] for anything else."""
    if not isinstance(body, dict):
        return []
    event = str(body.get("event") or "").lower().replace("_", ".")
    if event == "message.ack":
        return waha_acks(body, now)
    if event == "messages.update":
        return evolution_acks(body, now)
    return []


def waha_acks(body: dict, now: datetime) -> list[Ack]:
    """`message.ack`: ack 1 sent, 2 delivered, 3/4 read, -1 failed; 0 (PENDING) says nothing."""
    payload = body.get("payload")
    if not isinstance(payload, dict):
        return []
    ack = payload.get("ack")
    if isinstance(ack, bool) or not isinstance(ack, int):
        ack = WAHA_ACK_NAMES.get(str(payload.get("ackName") or "").upper())
    status = WAHA_ACKS.get(ack)
    message_id = message_id_of(payload.get("id"))
    if status is None or message_id is None:
        return []
    error = None
    if status == "failed":
        error = "gateway_error: WhatsApp did not take the message (WAHA ack ERROR" + _error_number(payload) + ")"
    return [Ack(message_id, status, event_time(body.get("timestamp"), now), error)]


def evolution_acks(body: dict, now: datetime) -> list[Ack]:
    """`messages.update`: SERVER_ACK sent, DELIVERY_ACK delivered, READ/PLAYED read, ERROR failed."""
    data = body.get("data")
    items = data if isinstance(data, list) else [data]
    acks = []
    for item in items[:MAX_ACKS_PER_CALL]:
        if not isinstance(item, dict):
            continue
        status = _evolution_status(item.get("status"))
        message_id = evolution_message_id(item)
        if status is None or message_id is None:
            continue
        when = item.get("datetime") or item.get("timestamp") or body.get("date_time")
        error = "gateway_error: WhatsApp did not take the message (Evolution status ERROR)" \
            if status == "failed" else None
        acks.append(Ack(message_id, status, event_time(when, now), error))
    return acks


def _evolution_status(value: object) -> str | None:
    if isinstance(value, str):
        return EVOLUTION_STATUSES.get(value.upper())
    if isinstance(value, int) and not isinstance(value, bool):
        return EVOLUTION_STATUSES.get(value)
    return None


def evolution_message_id(item: dict) -> str | None:
    """v2 `keyId` (its `messageId` is Evolution's own row id), v1 the spread key's `id`."""
    key = item.get("key") if isinstance(item.get("key"), dict) else {}
    for candidate in (item.get("keyId"), key.get("id"), item.get("id"), item.get("messageId")):
        message_id = message_id_of(candidate)
        if message_id is not None:
            return message_id
    return None


def message_id_of(value: object) -> str | None:
    if isinstance(value, dict):
        value = value.get("_serialized")
    if isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH and value.isprintable():
        return value
    return None


def _error_number(payload: dict) -> str:
    data = payload.get("_data")
    number = data.get("error") if isinstance(data, dict) else None
    return f", error {number}" if isinstance(number, int) and not isinstance(number, bool) else ""


def event_time(value: object, now: datetime) -> datetime:
    """The event's own time (epoch seconds or ms, or ISO-8601) as naive UTC; `now` when absent or implausible."""
    at = None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        try:
            at = datetime.fromtimestamp(value / 1000 if value > 1e11 else value, UTC).replace(tzinfo=None)
        except (OverflowError, OSError, ValueError):
            at = None
    elif isinstance(value, str):
        try:
            at = parse_iso(value)
        except ValueError:
            at = None
    if at is None or at > now or at < now - EVENT_TIME_WINDOW:
        return now
    return at
