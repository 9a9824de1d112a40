"""Data retention (SPEC §11, §12; docs/operations.md "Retention"): `flask wpotp purge` and the
periodic `retention` job.

For each app, past its retention period (`App.retention_days`, else RETENTION_DAYS) counted from
each row's creation:

- OTPs (final ones, or past their expiry) are *anonymised*: the number goes (`recipient` becomes ""), its keyed hash
  (`recipient_hash`, wpotp.otp.codes.hash_recipient) and the country stay, `anonymised_at` says when.
  Status, channel and timestamps stay, so reports and rollups over those days do not change.
- Messages are anonymised the same way; their template variables are emptied.
- Verify attempts keep their time and result; their IP address is dropped.
- The provider calls (send attempts) of those OTPs and messages are deleted with them, in the same
  batch (a provider's error text may quote the number).
- Events and webhook deliveries (finished ones, with their attempts) are deleted; an event still
  owed to an endpoint (a pending delivery) waits for it.

Every step works in batches of PURGE_BATCH rows, one short transaction each (select a batch of ids
by an index, change or delete just those rows, commit; the anonymising steps walk the index by
(created_at, id) from where the last batch ended), so no table stays locked for long and a
purge interrupted half-way leaves only whole batches done: running it again finishes the job, and
running it when there is nothing left changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, bindparam, delete, exists, func, or_, select, true, update

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
        for count, run in _steps(app_id, cutoff, now):
            if dry_run:
                for step, query in count.items():
                    result.counts[step] += db.session.scalar(query) or 0
                db.session.rollback()
            else:
                _in_batches(run, batch, result)
    if any(result.counts.values()) and not dry_run:
        log.info("retention: %s", result.as_dict())
    return result


Batch = Callable[[int], tuple[int, dict[str, int]]]


def _in_batches(run: Batch, batch: int, result: PurgeResult) -> None:
    """Call run(batch) until a batch comes back short. Each call takes at most `batch` rows, changes
    them in one transaction and commits; it answers (rows taken, {step: rows changed})."""
    while True:
        taken, done = run(batch)
        if taken:
            result.batches += 1
            for step, n in done.items():
                result.counts[step] += n
        if taken < batch:
            return


class _Keyset:
    """Where a walk over (created_at, id) has got to: each batch starts after the last row of the one
    before, so rows a batch left as they were (or changed so they no longer match) are read once,
    not once per batch."""

    def __init__(self, model) -> None:
        self.model, self.last = model, None

    def after(self):
        if self.last is None:
            return true()
        at, row_id = self.last
        return or_(self.model.created_at > at, and_(self.model.created_at == at, self.model.id > row_id))

    def order(self) -> tuple:
        return (self.model.created_at, self.model.id)

    def advance(self, rows) -> None:
        if rows:
            self.last = (rows[-1].created_at, rows[-1].id)


def _steps(app_id: str, cutoff: datetime, now: datetime) -> list[tuple[dict, Batch]]:
    """Per step: ({step: a COUNT of what is due}, a function doing one batch)."""
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
    sends_of = (SendAttempt.otp_id.in_(select(Otp.id).where(*old_otps))
                | SendAttempt.message_id.in_(select(Message.id).where(*old_messages)))
    otps, messages, attempts = _Keyset(Otp), _Keyset(Message), _Keyset(VerifyAttempt)
    return [
        ({"otps_anonymised": _count(Otp, old_otps), "send_attempts_deleted": _count(SendAttempt, (sends_of,))},
         lambda n: _anonymise_otps(old_otps, otps, now, n)),
        ({"messages_anonymised": _count(Message, old_messages)},
         lambda n: _anonymise_messages(old_messages, messages, now, n)),
        ({"attempt_ips_dropped": _count(VerifyAttempt, old_ips)}, lambda n: _drop_ips(old_ips, attempts, n)),
        ({"webhook_deliveries_deleted": _count(WebhookDelivery, old_deliveries)},
         lambda n: _delete_deliveries(old_deliveries, n)),
        ({"events_deleted": _count(Event, old_events)}, lambda n: _delete_events(old_events, n)),
    ]


def _finish(taken: int, done: dict[str, int]) -> tuple[int, dict[str, int]]:
    """End a batch's transaction: commit what it changed; a batch that changed nothing commits nothing."""
    if any(done.values()):
        db.session.commit()
    else:
        db.session.rollback()
    return taken, done


def _count(model, where) -> select:
    return select(func.count()).select_from(model).where(*where)


def _delete_sends(column, ids: list[str]) -> int:
    """The provider calls of these OTPs or messages (an error text may quote the number)."""
    return db.session.execute(delete(SendAttempt).where(column.in_(ids))).rowcount if ids else 0


def _anonymise_otps(where, keyset: _Keyset, now: datetime, n: int) -> tuple[int, dict[str, int]]:
    rows = db.session.execute(select(Otp.id, Otp.created_at, Otp.recipient).where(*where, keyset.after())
                              .order_by(*keyset.order()).limit(n)).all()
    keyset.advance(rows)
    changed = 0
    if rows:
        table = Otp.__table__  # Core: one executemany, no ORM bulk-by-primary-key rules
        changed = db.session.execute(
            update(table).where(table.c.id == bindparam("oid"), table.c.anonymised_at.is_(None))
            .values(recipient="", recipient_hash=bindparam("rhash"), anonymised_at=now),
            [{"oid": r.id, "rhash": hash_recipient(r.recipient)} for r in rows]).rowcount
    sends = _delete_sends(SendAttempt.otp_id, [r.id for r in rows])
    return _finish(len(rows), {"otps_anonymised": changed if changed >= 0 else len(rows),
                               "send_attempts_deleted": sends})


def _anonymise_messages(where, keyset: _Keyset, now: datetime, n: int) -> tuple[int, dict[str, int]]:
    rows = db.session.execute(select(Message.id, Message.created_at).where(*where, keyset.after())
                              .order_by(*keyset.order()).limit(n)).all()
    keyset.advance(rows)
    ids = [r.id for r in rows]
    changed = db.session.execute(
        update(Message).where(Message.id.in_(ids), Message.anonymised_at.is_(None))
        .values(recipient="", variables={}, anonymised_at=now)
        .execution_options(synchronize_session=False)).rowcount if ids else 0
    sends = _delete_sends(SendAttempt.message_id, ids)
    return _finish(len(rows), {"messages_anonymised": changed, "send_attempts_deleted": sends})


def _drop_ips(where, keyset: _Keyset, n: int) -> tuple[int, dict[str, int]]:
    rows = db.session.execute(select(VerifyAttempt.id, VerifyAttempt.created_at).where(*where, keyset.after())
                              .order_by(*keyset.order()).limit(n)).all()
    keyset.advance(rows)
    ids = [r.id for r in rows]
    changed = db.session.execute(update(VerifyAttempt).where(VerifyAttempt.id.in_(ids)).values(ip=None)
                                 .execution_options(synchronize_session=False)).rowcount if ids else 0
    return _finish(len(rows), {"attempt_ips_dropped": changed})


def _delete_deliveries(where, n: int) -> tuple[int, dict[str, int]]:
    """Deleted rows leave the index, so each batch starts at the oldest left: no keyset needed."""
    ids = db.session.scalars(select(WebhookDelivery.id).where(*where).order_by(WebhookDelivery.created_at)
                             .limit(n)).all()
    if ids:
        db.session.execute(delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(ids)))
        db.session.execute(delete(WebhookDelivery).where(WebhookDelivery.id.in_(ids)))
    return _finish(len(ids), {"webhook_deliveries_deleted": len(ids)})


def _delete_events(where, n: int) -> tuple[int, dict[str, int]]:
    ids = db.session.scalars(select(Event.id).where(*where).order_by(Event.created_at).limit(n)).all()
    if not ids:
        return _finish(0, {})
    unowed = ~exists().where(WebhookDelivery.event_id == Event.id)  # a delivery made since the SELECT keeps it
    deleted = db.session.execute(delete(Event).where(Event.id.in_(ids), unowed)).rowcount
    return _finish(len(ids) if deleted else 0, {"events_deleted": deleted})
