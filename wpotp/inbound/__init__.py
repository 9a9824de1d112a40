"""Inbound webhooks from WhatsApp providers: /webhooks/... (receipts and acks).

Each provider module adds its routes to `bp` and authenticates every call itself (Meta's
signature, a gateway's HMAC or an unguessable URL token). They translate the provider's
receipt into `wpotp.otp.delivery.apply_receipt(provider, message_id, status, at, error)`
and never change an OTP any other way.
"""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("inbound", __name__, url_prefix="/webhooks")

from . import gateway, whatsapp  # noqa: E402,F401  (routes register on bp)
