"""Periodic upkeep: expire due OTPs, rescue sends stuck in QUEUED; then report rollups, and the
retention job when it is due (its own job: see wpotp/otp/maintenance.py)."""

from __future__ import annotations

from ..otp import maintenance
from . import job


@job
def sweep_job() -> dict:
    result = maintenance.sweep()
    result.update(maintenance.upkeep())
    return result


@job
def retention_job() -> dict:
    from ..otp.retention import purge

    return purge().as_dict()
