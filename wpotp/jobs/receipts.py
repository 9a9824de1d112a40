"""Receipts: delivered / read / failed reports from a provider, applied to an OTP."""

from __future__ import annotations

from ..otp import delivery
from . import job


@job
def apply_receipt_job(provider: str, provider_message_id: str, status: str, error: str | None = None) -> bool:
    return delivery.apply_receipt(provider, provider_message_id, status, error=error)
