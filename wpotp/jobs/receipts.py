"""Receipts: delivered / read / failed reports from a provider, applied to an OTP."""

from __future__ import annotations

from rq import get_current_job

from ..otp import receipts
from . import job


@job
def apply_receipt_job(provider: str, provider_message_id: str, status: str, error: str | None = None) -> bool:
    return receipts.apply_receipt(provider, provider_message_id, status, error=error)


@job
def drain_receipts_job() -> str:
    """The receipt queue (RECEIPT_BATCH): apply queued webhook receipts in batches (otp/receipts.py
    says how they are queued, claimed and rescued)."""
    return receipts.drain_receipts(get_current_job().id)
