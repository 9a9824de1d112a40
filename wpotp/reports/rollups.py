"""Report rollups: the OTP counts of every app per UTC hour, kept by the sweep.

Why hours: a report's day is 24 whole UTC hours, and so is a day in any time zone whose offset is
a whole number of hours (23 or 25 on a DST change), so hourly rows make a day bucket in such a
zone exact, and they serve the hourly view as they are. (Zones with a half-hour offset would take
their days' first and last half hour from the `otps` table: `split_ranges` already reads any part
of a range that is not whole rolled hours from there.)

What a row holds (`report_rollups`): app, hour, channel, status, country ("" for none) and the
number of OTPs created in that hour with that key, with how many of them were sent and
delivered (and per whole UTC day, `span` "day", the sums of its hours: a report by UTC day reads
one row a day and key instead of 24) (wpotp/reports/usage.py says what counts as sent and delivered). Per app, hour and
channel, `report_rollup_durations` keeps the verified OTPs' milliseconds to verify (sorted 32-bit
ints), so the median of any range is exact; and per whole UTC day a day run, the day's hour runs
merged, so a report by UTC day takes one run per day and channel (a median over a thousand short
runs costs more than one over thirty long ones). Each OTP counts under its current status, as
the reports do.

When an hour is rolled: once it is *settled* (usage.settle_delay(): every OTP created in it has a
final status), by `roll_up`, which the sweep calls (wpotp/otp/maintenance.py). One row of
`report_rollup_state` says how far the rollup has got (`rolled_until`): the reports read rolled
hours from the rollup and everything after `rolled_until` (today, the last hour or so) from the
`otps` table, so they are exact up to now. A receipt can still land on a settled OTP (a phone
that was off for a day sends `read` when it comes back): once an hour, the rollup rolls the last
ROLLUP_RECHECK_HOURS again. Retention never deletes OTP rows (it anonymises them, keeping the
columns the rollup reads), so a purged hour can always be rolled again.
"""

from __future__ import annotations

import logging
from array import array
from datetime import datetime, timedelta
from itertools import chain

from flask import current_app
from sqlalchemy import delete, func, literal_column, or_, select
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import App, Otp, ReportRollup, ReportRollupDurations, ReportRollupState
from ..util import utcnow
from .usage import _DURATIONS, BucketData, _as_datetime, _bucket_expr, compute_buckets, floor_to, settle_delay

log = logging.getLogger("wpotp.reports")

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
PASS_HOURS = 24 * 7  # the most hours one pass rolls: a first run over a long history takes a few sweeps


def ceil_hour(at: datetime) -> datetime:
    floor = floor_to(at, "hour")
    return floor if floor == at else floor + HOUR


def enabled() -> bool:
    return bool(current_app.config.get("REPORT_ROLLUPS", True))


def rolled_until() -> datetime | None:
    """Every hour before this one is rolled up (None: nothing is, or rollups are switched off)."""
    if not enabled():
        return None
    return db.session.scalar(select(ReportRollupState.rolled_until).where(ReportRollupState.id == 1))


def split_ranges(ranges: list[tuple[datetime, datetime]]) -> tuple[list, list]:
    """([start, end) ranges of whole rolled-up hours, the rest), for `ranges` of creation times."""
    horizon = rolled_until() if ranges else None
    rolled, raw = [], []
    for start, end in ranges:
        first, last = ceil_hour(start), min(floor_to(end, "hour"), horizon) if horizon else None
        if last is None or first >= last:
            raw.append((start, end))
            continue
        rolled.append((first, last))
        raw.extend(r for r in ((start, first), (last, end)) if r[0] < r[1])
    return rolled, raw


def _ceil_day(at: datetime) -> datetime:
    floor = floor_to(at, "day")
    return floor if floor == at else floor + DAY


def _day_and_hour_ranges(interval: str, ranges: list[tuple[datetime, datetime]]) -> tuple[list, list]:
    """(day ranges, hour ranges) to read `ranges` (whole hours) from: by UTC day the whole days come
    from the day rows (one per day instead of 24), the rest from the hour rows."""
    if interval != "day":
        return [], ranges
    days, hours = [], []
    for start, end in ranges:
        first, last = _ceil_day(start), floor_to(end, "day")
        if first >= last:
            hours.append((start, end))
            continue
        days.append((first, last))
        hours.extend(r for r in ((start, first), (last, end)) if r[0] < r[1])
    return days, hours


def read_rollups(app_id: str, interval: str, ranges: list[tuple[datetime, datetime]]) -> dict[datetime, BucketData]:
    """The rolled-up counts of `app_id` in `ranges` (whole hours), per bucket start."""
    if not ranges:
        return {}
    r = ReportRollup
    spans = dict(zip(("day", "hour"), _day_and_hour_ranges(interval, ranges), strict=True))
    bucket = _bucket_expr(interval, r.hour).label("bucket")
    counts = (
        select(bucket, r.channel, r.status, r.country, func.sum(r.n).label("n"), func.sum(r.sent).label("sent"),
               func.sum(r.delivered).label("delivered"))
        .where(r.app_id == app_id, or_(*((r.span == span) & (r.hour >= s) & (r.hour < e)
                                         for span, pieces in spans.items() for s, e in pieces)))
        .group_by(literal_column("1"), r.channel, r.status, r.country)
    )
    conn = db.session.connection()  # Core rows: no ORM bookkeeping per row
    out: dict[datetime, BucketData] = {}
    starts: dict = {}  # each bucket's value, floored once (a bucket has a row per channel, status and country)
    for row in conn.execute(counts):
        start = starts.get(row.bucket) or starts.setdefault(row.bucket, floor_to(_as_datetime(row.bucket), interval))
        data = out.get(start) or out.setdefault(start, BucketData())
        data.rows.append([row.channel, row.status, row.country or None, int(row.n), int(row.sent),
                          int(row.delivered)])
    d = ReportRollupDurations
    for span, pieces in spans.items():
        if not pieces:
            continue
        runs = select(d.hour, d.channel, d.millis).where(
            d.app_id == app_id, d.span == span, or_(*((d.hour >= s) & (d.hour < e) for s, e in pieces)))
        for row in conn.execute(runs):
            run = array(_DURATIONS)
            run.frombytes(row.millis)
            data = out.setdefault(floor_to(_as_datetime(row.hour), interval), BucketData())
            data.durations.setdefault(row.channel, []).append(run)
    return out


def roll_hours(start: datetime, end: datetime, complete_before: datetime | None = None) -> int:
    """(Re)write the rollup rows of every app for the hours in [start, end), and the day runs of the
    UTC days they touch that end by `complete_before` (default `end`), in the caller's transaction;
    returns how many rows were written."""
    complete_before = complete_before or end
    written = 0
    for app_id in db.session.scalars(select(App.id)).all():
        buckets = compute_buckets(app_id, "hour", [(start, end)])
        r = ReportRollup
        db.session.execute(delete(r).where(r.app_id == app_id, r.span == "hour", r.hour >= start, r.hour < end))
        d = ReportRollupDurations
        db.session.execute(delete(d).where(d.app_id == app_id, d.span == "hour", d.hour >= start, d.hour < end))
        rows, runs = [], []
        for hour, data in buckets.items():
            rows += [{"app_id": app_id, "span": "hour", "hour": hour, "channel": channel, "status": status,
                      "country": country or "", "n": n, "sent": sent, "delivered": delivered}
                     for channel, status, country, n, sent, delivered in data.rows]
            runs += [{"app_id": app_id, "span": "hour", "hour": hour, "channel": channel,
                      "millis": _merged(channel_runs).tobytes()}
                     for channel, channel_runs in data.durations.items()]
        if rows:
            db.session.execute(ReportRollup.__table__.insert(), rows)
        if runs:
            db.session.execute(d.__table__.insert(), runs)
        written += len(rows) + len(runs) + _roll_days(app_id, floor_to(start, "day"),
                                                      min(_ceil_day(end), floor_to(complete_before, "day")))
    return written


def _merged(runs: list[array]) -> array:
    return array(_DURATIONS, sorted(chain.from_iterable(runs)))


def _roll_days(app_id: str, start: datetime, end: datetime) -> int:
    """Rewrite the day rows and runs of the whole UTC days in [start, end) from their hour rows and runs."""
    if start >= end:
        return 0
    r = ReportRollup
    sums = db.session.connection().execute(
        select(_bucket_expr("day", r.hour).label("day"), r.channel, r.status, r.country, func.sum(r.n).label("n"),
               func.sum(r.sent).label("sent"), func.sum(r.delivered).label("delivered"))
        .where(r.app_id == app_id, r.span == "hour", r.hour >= start, r.hour < end)
        .group_by(literal_column("1"), r.channel, r.status, r.country)).all()
    db.session.execute(delete(r).where(r.app_id == app_id, r.span == "day", r.hour >= start, r.hour < end))
    counts = [{"app_id": app_id, "span": "day", "hour": floor_to(_as_datetime(row.day), "day"), "channel": row.channel,
               "status": row.status, "country": row.country, "n": int(row.n), "sent": int(row.sent),
               "delivered": int(row.delivered)} for row in sums]
    if counts:
        db.session.execute(r.__table__.insert(), counts)
    d = ReportRollupDurations
    hours = db.session.connection().execute(select(d.hour, d.channel, d.millis).where(
        d.app_id == app_id, d.span == "hour", d.hour >= start, d.hour < end))
    days: dict[tuple[datetime, str], list[array]] = {}
    for row in hours:
        run = array(_DURATIONS)
        run.frombytes(row.millis)
        days.setdefault((floor_to(_as_datetime(row.hour), "day"), row.channel), []).append(run)
    db.session.execute(delete(d).where(d.app_id == app_id, d.span == "day", d.hour >= start, d.hour < end))
    rows = [{"app_id": app_id, "span": "day", "hour": day, "channel": channel, "millis": _merged(runs).tobytes()}
            for (day, channel), runs in days.items()]
    if rows:
        db.session.execute(d.__table__.insert(), rows)
    return len(counts) + len(rows)


def _state() -> ReportRollupState | None:
    """The state row, locked against a second rollup on PostgreSQL until the caller commits; None
    when another rollup holds it (that one is doing the work: a sweep need not wait for it)."""
    locked = select(ReportRollupState).where(ReportRollupState.id == 1).with_for_update(skip_locked=True)
    state = db.session.scalars(locked).first()
    if state is None and db.session.get(ReportRollupState, 1) is None:
        try:
            with db.session.begin_nested():
                db.session.add(ReportRollupState(id=1))
        except IntegrityError:  # another rollup made it first
            pass
        state = db.session.scalars(locked).first()
    return state


def _first_hour() -> datetime | None:
    firsts = [db.session.scalar(select(func.min(Otp.created_at)).where(Otp.app_id == app_id))
              for app_id in db.session.scalars(select(App.id)).all()]
    firsts = [_as_datetime(f) for f in firsts if f is not None]
    return floor_to(min(firsts), "hour") if firsts else None


def roll_up(now: datetime | None = None) -> dict:
    """Roll up the settled hours not rolled yet (at most PASS_HOURS of them), and once an hour roll
    the last ROLLUP_RECHECK_HOURS again. Commits. Returns {"rollup_hours": n, "rollup_rechecked": m}."""
    if not enabled():
        return {"rollup_hours": 0, "rollup_rechecked": 0}
    now = now or utcnow()
    due = floor_to(now - settle_delay(), "hour")
    state = _state()
    if state is None:
        db.session.rollback()
        return {"rollup_hours": 0, "rollup_rechecked": 0}
    begin = state.rolled_until or _first_hour() or due
    until = min(due, begin + PASS_HOURS * HOUR)
    horizon = max(until, state.rolled_until or until)
    rolled = rechecked = 0
    if begin < until:
        roll_hours(begin, until, horizon)
        rolled = int((until - begin) / HOUR)
    state.rolled_until = horizon
    recheck = int(current_app.config.get("ROLLUP_RECHECK_HOURS", 48))
    if recheck and state.rolled_until >= due and (state.rechecked_at is None or state.rechecked_at <= now - HOUR):
        since, before = due - recheck * HOUR, min(begin, due)  # the hours this pass rolled need no second look
        if since < before:
            roll_hours(since, before, horizon)
            rechecked = int((before - since) / HOUR)
        state.rechecked_at = now
    db.session.commit()
    if rolled or rechecked:
        log.info("report rollup: %d hour(s) rolled, %d rechecked, up to %s", rolled, rechecked,
                 state.rolled_until.isoformat())
    return {"rollup_hours": rolled, "rollup_rechecked": rechecked}


def forget_rollups() -> None:
    """Drop every rollup (the next sweeps roll the history up again, PASS_HOURS at a time)."""
    for table in (ReportRollup, ReportRollupDurations, ReportRollupState):
        db.session.execute(delete(table))
    db.session.commit()
