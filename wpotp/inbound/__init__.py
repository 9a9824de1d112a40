"""Inbound webhooks from WhatsApp providers: /webhooks/... (receipts and acks).

Each provider module adds its routes to `bp` and authenticates every call itself (Meta's
signature, a gateway's HMAC or an unguessable URL token). They translate the provider's
receipt into `wpotp.otp.receipts.Receipt(provider, message_id, status, at, error)` and hand them to
`wpotp.otp.receipts.take_receipts` (the receipt queue, or applied inline)
and never change an OTP any other way.
"""

from __future__ import annotations

from flask import Blueprint, request

bp = Blueprint("inbound", __name__, url_prefix="/webhooks")

# Providers batch receipts (Meta) or send whole message objects (gateways): a big batch must not
# be refused by the API's small body cap, or the provider would retry it for days.
MAX_WEBHOOK_BYTES = 1024 * 1024


@bp.before_request
def _allow_big_batches() -> None:
    request.max_content_length = MAX_WEBHOOK_BYTES

from . import gateway, sms, whatsapp  # noqa: E402,F401  (routes register on bp)
