"""Meta WhatsApp Cloud API webhooks: /webhooks/whatsapp (SPEC §7).

GET is Meta's subscription handshake. POST carries receipts, signed with the app secret:
`X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>`. The signature is
checked on the raw bytes before anything is parsed; a bad one is 401 and changes nothing.

Once the signature holds, the answer is always 2xx: Meta retries anything else for days,
so a body we cannot use (inbound user messages, unknown statuses, unknown wamids, odd
shapes) is acknowledged and ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import UTC, datetime

from flask import current_app, jsonify, request

from ..otp.receipts import Receipt, take_receipts
from . import bp

log = logging.getLogger("wpotp.inbound.whatsapp")

PROVIDER = "cloud_api"
RECEIPT_STATUSES = ("sent", "delivered", "read", "failed")


@bp.get("/whatsapp")
def whatsapp_handshake():
    """Answer `hub.challenge` only to the verify token we were configured with."""
    expected = current_app.config.get("WHATSAPP_VERIFY_TOKEN") or ""
    given = request.args.get("hub.verify_token", "")
    if (request.args.get("hub.mode") == "subscribe" and expected
            and hmac.compare_digest(given.encode(), expected.encode())):
        return request.args.get("hub.challenge", ""), 200, {"Content-Type": "text/plain; charset=utf-8"}
    return "forbidden", 403, {"Content-Type": "text/plain; charset=utf-8"}


@bp.post("/whatsapp")
def whatsapp_receipts():
    raw = request.get_data(cache=True)
    if not signature_ok(raw, request.headers.get("X-Hub-Signature-256", "")):
        return jsonify({"error": {"code": "unauthorized", "message": "bad or missing X-Hub-Signature-256"}}), 401
    payload = request.get_json(force=True, silent=True)
    receipts = [Receipt(PROVIDER, *receipt) for receipt in receipts_in(payload)]
    applied = take_receipts(receipts)  # queued for a drain job, or applied here (RECEIPT_BATCH=0, Redis away)
    log.info("whatsapp webhook: %d receipt(s), %d applied inline", len(receipts), applied)
    return jsonify({"status": "ok"})


def signature_ok(raw: bytes, header: str) -> bool:
    """An unset app secret verifies nothing: every POST is refused until it is configured."""
    secret = current_app.config.get("WHATSAPP_APP_SECRET") or ""
    if not secret or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(header.strip().lower().encode(), expected.encode())


def receipts_in(payload: object) -> list[tuple[str, str, datetime, str | None]]:
    """(wamid, status, at, error) for every usable entry[].changes[].value.statuses[] item."""
    found = []
    for value in _values(payload):
        statuses = value.get("statuses")
        for item in statuses if isinstance(statuses, list) else ():
            if not isinstance(item, dict):
                continue
            wamid, status = item.get("id"), item.get("status")
            if isinstance(wamid, str) and wamid and status in RECEIPT_STATUSES:
                error = failure_reason(item.get("errors")) if status == "failed" else None
                found.append((wamid, status, receipt_time(item.get("timestamp")), error))
    return found


def _values(payload: object) -> list[dict]:
    """Each change's `value` object, skipping anything that is not shaped like Meta's."""
    entries = payload.get("entry") if isinstance(payload, dict) else None
    values = []
    for entry in entries if isinstance(entries, list) else ():
        changes = entry.get("changes") if isinstance(entry, dict) else None
        for change in changes if isinstance(changes, list) else ():
            value = change.get("value") if isinstance(change, dict) else None
            if isinstance(value, dict):
                values.append(value)
    return values


def receipt_time(timestamp: object) -> datetime:
    """Meta's unix seconds (a string) as naive UTC; now when absent or nonsense."""
    try:
        return datetime.fromtimestamp(int(str(timestamp)), UTC).replace(tzinfo=None)
    except (TypeError, ValueError, OverflowError, OSError):
        return datetime.now(UTC).replace(tzinfo=None)


def failure_reason(errors: object) -> str:
    """`131026: Message undeliverable` from the first error Meta lists."""
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    code = first.get("code")
    # Control characters (NUL, which PostgreSQL refuses in text, among them) become spaces.
    title = "".join(c if c.isprintable() else " " for c in str(first.get("title") or first.get("message") or "failed"))
    title = title.strip().rstrip(".").strip()
    reason = f"{code}: {title}" if code is not None else title
    return " ".join(reason.split())[:200]
