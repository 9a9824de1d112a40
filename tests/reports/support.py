"""Helpers for the report and rate-limit tests: OTP rows with a chosen status and timeline."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from wpotp.extensions import db
from wpotp.models import ApiKey, Otp, Template
from wpotp.util import new_id

DAY = datetime(2026, 3, 1)  # a fixed day in the past: reports here never depend on the clock


def add_otps(app, app_id: str, *rows: dict) -> list[str]:
    """Insert OTP rows for `app_id` directly. Each row gives `created_at` and may give `status`,
    `country`, `recipient`, `generation`, and the timestamps (`sent_at`, `delivered_at`, ...)
    or `verify_after` (seconds from creation to verified_at). Returns the ids."""
    ids = []
    with app.app_context():
        key_id = db.session.scalars(select(ApiKey.id).where(ApiKey.app_id == app_id)).first()
        template_id = db.session.scalars(select(Template.id)).first()
        for i, spec in enumerate(rows):
            spec = dict(spec)
            created = spec.pop("created_at")
            verify_after = spec.pop("verify_after", None)
            if verify_after is not None:
                spec.setdefault("status", "VERIFIED")
                spec["verified_at"] = created + timedelta(seconds=verify_after)
            otp = Otp(id=new_id("otp"), app_id=app_id, api_key_id=key_id, mode="test", provider="sandbox",
                      recipient=spec.pop("recipient", f"+90555222{i % 10000:04d}"),
                      country=spec.pop("country", "TR"), template_id=template_id, language="en",
                      code_hash="0" * 64, code_length=6, status=spec.pop("status", "QUEUED"), attempts=0,
                      max_attempts=5, generation=spec.pop("generation", 1), ttl_seconds=300,
                      expires_at=created + timedelta(seconds=300), created_at=created, last_sent_at=created,
                      **spec)
            db.session.add(otp)
            ids.append(otp.id)
        db.session.commit()
    return ids


def at(day: int = 0, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return DAY + timedelta(days=day, hours=hour, minutes=minute, seconds=second)
