"""The webhook delivery job."""

from __future__ import annotations

from ..webhooks import delivery
from . import job


@job
def deliver_webhook_job(delivery_id: str) -> str:
    return delivery.deliver(delivery_id)
