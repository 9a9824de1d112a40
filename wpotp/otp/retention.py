"""Data retention (SPEC §11, §12; docs/operations.md "Retention"): `flask wpotp purge` and the
periodic `retention` job.

For each app, past its retention period (`App.retention_days`, else RETENTION_DAYS) counted from
each row's creation:

- OTPs (final ones, or past their expiry) are *anonymised*: the number goes (`recipient` becomes ""), its keyed hash
  (`recipient_hash`, wpotp.otp.codes.hash_recipient) and the country stay, `anonymised_at` says when.
  Status, channel and timestamps stay, so reports and rollups over those days do not change.
- Messages are anonymised the same way; their template variables are emptied.
- Verify attempts keep their time and result; their IP address is dropped.
- Events, send attempts, and webhook deliveries (finished ones, with their attempts) are deleted;
  an event still owed to an endpoint (a pending delivery) waits for it.

Every step works in batches of PURGE_BATCH rows, one short transaction each (select a batch of ids
by an index, change or delete just those rows, commit), so no table stays locked for long and a
purge interrupted half-way leaves only whole batches done: running it again finishes the job, and
running it when there is nothing left changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import bindparam, delete, exists, func, or_, select, update

from ..extensions import db
from ..models import (
    TERMINAL_STATUSES,
    App,
    Event,
    Message,
    Otp,
    SendAttempt,
    VerifyAttempt,
    WebhookAttempt,
    WebhookDelivery,
)
from ..util import utcnow
from .codes import hash_recipient

log = logging.getLogger("wpotp.retention")

STEPS = ("otps_anonymised", "messages_anonymised", "attempt_ips_dropped", "send_attempts_deleted",
         "webhook_deliveries_deleted", "events_deleted")


@dataclass
class PurgeResult:
    """What a purge did (or, dry, would do): rows per step, and how many batches (transactions) it took."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STEPS, 0))
    batches: int = 0
    dry_run: bool = False

    def as_dict(self) -> dict:
        return {**self.counts, "batches": self.batches}


def retention_days(app: App) -> int:
    return app.retention_days or int(current_app.config["RETENTION_DAYS"])


def purge(dry_run: bool = False, now: datetime | None = None, batch: int | None = None) -> PurgeResult:
    """Apply retention to every app once (see the module's docstring). `dry_run` only counts."""
    now = now or utcnow()
    batch = batch or int(current_app.config["PURGE_BATCH"])
    result = PurgeResult(dry_run=dry_run)
    apps = db.session.execute(select(App.id, App.retention_days)).all()
    db.session.rollback()  # no transaction held open between batches
    for app_id, own_days in apps:
        cutoff = now - timedelta(days=own_days or int(current_app.config["RETENTION_DAYS"]))
        for step, (count, run) in _steps(app_id, cutoff, now).items():
            if dry_run:
                result.counts[step] += db.session.scalar(count) or 0
                db.session.rollback()
            else:
                done, batches = _in_batches(run, batch)
                result.counts[step] += done
                result.batches += batches
    if any(result.counts.values()) and not dry_run:
        log.info("retention: %s", result.as_dict())
    return result


def _in_batches(run: Callable[[int], int], batch: int) -> tuple[int, int]:
    """Call run(batch) (which changes at most `batch` rows and commits) until a batch comes back short."""
    total = batches = 0
    while True:
        done = run(batch)
        if done:
            batches += 1
            total += done
        if done < batch:
            return total, batches


def _steps(app_id: str, cutoff: datetime, now: datetime) -> dict[str, tuple]:
    """Per step: (a COUNT of what is due, a function doing one batch)."""
    # Final, or long past its expiry (dead to verify even if no sweep ever marked it EXPIRED).
    old_otps = (Otp.app_id == app_id, Otp.created_at < cutoff, Otp.anonymised_at.is_(None),
                or_(Otp.status.in_(TERMINAL_STATUSES), Otp.expires_at < cutoff))
    old_messages = (Message.app_id == app_id, Message.created_at < cutoff, Message.anonymised_at.is_(None))
    old_ips = (VerifyAttempt.app_id == app_id, VerifyAttempt.created_at < cutoff, VerifyAttempt.ip.is_not(None))
    old_deliveries = (WebhookDelivery.app_id == app_id, WebhookDelivery.created_at < cutoff,
                      WebhookDelivery.status != "pending")
    # An event still owed to an endpoint (pending), or redelivered lately, stays.
    kept = exists().where(WebhookDelivery.event_id == Event.id,
                          (WebhookDelivery.status == "pending") | (WebhookDelivery.created_at >= cutoff))
    old_events = (Event.app_id == app_id, Event.created_at < cutoff, ~kept)
    return {
        "otps_anonymised": (_count(Otp, old_otps), lambda n: _anonymise_otps(old_otps, now, n)),
        "messages_anonymised": (_count(Message, old_messages), lambda n: _anonymise_messages(old_messages, now, n)),
        "attempt_ips_dropped": (_count(VerifyAttempt, old_ips), lambda n: _drop_ips(old_ips, n)),
        "send_attempts_deleted": (_count(SendAttempt, _send_attempts_of(app_id, cutoff)),
                                  lambda n: _delete_send_attempts(app_id, cutoff, n)),
        "webhook_deliveries_deleted": (_count(WebhookDelivery, old_deliveries),
                                       lambda n: _delete_deliveries(old_deliveries, n)),
        "events_deleted": (_count(Event, old_events), lambda n: _delete_events(old_events, n)),
    }


def _finish(done: int) -> int:
    """End a batch's transaction: commit what it changed; a batch that found nothing commits nothing."""
    if done:
        db.session.commit()
    else:
        db.session.rollback()
    return done


def _count(model, where) -> select:
    return select(func.count()).select_from(model).where(*where)


def _anonymise_otps(where, now: datetime, n: int) -> int:
    rows = db.session.execute(select(Otp.id, Otp.recipient).where(*where).limit(n)).all()
    if rows:
        table = Otp.__table__  # Core: one executemany, no ORM bulk-by-primary-key rules
        db.session.execute(
            update(table).where(table.c.id == bindparam("oid"), table.c.anonymised_at.is_(None))
            .values(recipient="", recipient_hash=bindparam("rhash"), anonymised_at=now),
            [{"oid": r.id, "rhash": hash_recipient(r.recipient)} for r in rows])
    return _finish(len(rows))


def _anonymise_messages(where, now: datetime, n: int) -> int:
    ids = select(Message.id).where(*where).limit(n).scalar_subquery()
    done = db.session.execute(
        update(Message).where(Message.id.in_(ids), Message.anonymised_at.is_(None))
        .values(recipient="", variables={}, anonymised_at=now).execution_options(synchronize_session=False)).rowcount
    return _finish(done)


def _drop_ips(where, n: int) -> int:
    ids = select(VerifyAttempt.id).where(*where).limit(n).scalar_subquery()
    done = db.session.execute(update(VerifyAttempt).where(VerifyAttempt.id.in_(ids)).values(ip=None)
                              .execution_options(synchronize_session=False)).rowcount
    return _finish(done)


def _send_attempts_of(app_id: str, cutoff: datetime):
    """Send attempts of the app's OTPs and messages created before the cutoff (send_attempts has no
    app_id; its otp_id and message_id are indexed, and so are the parents' (app_id, created_at))."""
    of_otps = SendAttempt.otp_id.in_(select(Otp.id).where(Otp.app_id == app_id, Otp.created_at < cutoff))
    of_messages = SendAttempt.message_id.in_(
        select(Message.id).where(Message.app_id == app_id, Message.created_at < cutoff))
    return (of_otps | of_messages,)


def _delete_send_attempts(app_id: str, cutoff: datetime, n: int) -> int:
    ids = db.session.scalars(select(SendAttempt.id).where(*_send_attempts_of(app_id, cutoff)).limit(n)).all()
    if ids:
        db.session.execute(delete(SendAttempt).where(SendAttempt.id.in_(ids)))
    return _finish(len(ids))


def _delete_deliveries(where, n: int) -> int:
    ids = db.session.scalars(select(WebhookDelivery.id).where(*where).limit(n)).all()
    if ids:
        db.session.execute(delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(ids)))
        db.session.execute(delete(WebhookDelivery).where(WebhookDelivery.id.in_(ids)))
    return _finish(len(ids))


def _delete_events(where, n: int) -> int:
    ids = db.session.scalars(select(Event.id).where(*where).limit(n)).all()
    if not ids:
        return _finish(0)
    unowed = ~exists().where(WebhookDelivery.event_id == Event.id)  # a delivery made since the SELECT keeps it
    return _finish(db.session.execute(delete(Event).where(Event.id.in_(ids), unowed)).rowcount)
