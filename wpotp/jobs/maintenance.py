"""Periodic upkeep: expire due OTPs, rescue sends stuck in QUEUED."""

from __future__ import annotations

from ..otp import maintenance
from . import job


@job
def sweep_job() -> dict:
    return maintenance.sweep()
