"""Usage reports: OTPs per day or hour by status, delivery and verification rates, time to verify,
all of it also split by channel (the channel of each OTP's last send).

Whole UTC hours the report rollup has reached (wpotp/reports/rollups.py, kept by the sweep) are
read from its tables; the rest of a range (the hours not rolled up yet, about the last one, and
the partial hours at its ends) is aggregated from the `otps` table with two grouped queries
over `ix_otps_app_created` (app_id, created_at): counts by bucket, channel, status and country,
and each bucket's and channel's list of the verified OTPs' times to verify. Both run on SQLite
and PostgreSQL; only the bucketing and the duration arithmetic differ by dialect
(`_bucket_expr`, `_millis_expr`, `_millis_list_expr`). Either way a bucket is the same
`BucketData`, so the figures do not depend on where they came from (tests/reports/test_rollups.py).

A bucket is *settled* once every OTP created in it has reached a final status (its longest
life, resends included, plus a sweep, has passed). Settled buckets change only when a late
delivery or read receipt lands, so they are cached in Redis: a 30-day report on a busy app
then reads 30 cache entries and the live tail instead of scanning a third of a million rows.
A cached bucket older than FRESH_SECONDS is still served, and a background job
(`refresh_report_buckets`) recomputes it, so a late receipt shows up within about an hour
of the next view. Partial buckets (a range that starts or ends inside a bucket) and
unsettled ones are always computed from the table. Redis unreachable: everything is
computed from the table.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import time
from array import array
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import chain

import redis
from flask import current_app
from sqlalchemy import Integer, and_, case, cast, extract, func, literal_column, or_, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.sql import ColumnElement

from ..extensions import db, get_queue, redis_client
from ..jobs import job
from ..models import Otp, OtpStatus
from ..util import iso, parse_iso, utcnow

log = logging.getLogger("wpotp.reports")

STATUSES = tuple(s.value for s in OtpStatus)
CHANNELS = ("whatsapp", "sms")  # the channels an OTP is sent over (SPEC §12); reports split by them
INTERVALS = {"day": timedelta(days=1), "hour": timedelta(hours=1)}
MAX_SPAN = {"day": timedelta(days=90), "hour": timedelta(days=7)}
TOP_COUNTRIES = 10

CACHE_PREFIX = "wpotp:report:v1"
FRESH_SECONDS = 3600  # a cached bucket older than this is recomputed in the background
KEEP_SECONDS = 8 * 86400  # and one not viewed for this long leaves Redis
MAX_TTL_SECONDS = 900  # the longest OTP TTL the API accepts (SPEC §4)
REFRESH_JOB = "wpotp.reports.usage.refresh_report_buckets"

_DURATIONS = "i"  # milliseconds to verify, as 32-bit ints (24 days at most)
assert array(_DURATIONS).itemsize == 4


def floor_to(at: datetime, interval: str) -> datetime:
    """The start of the UTC day or hour that holds `at`."""
    if interval == "day":
        return at.replace(hour=0, minute=0, second=0, microsecond=0)
    return at.replace(minute=0, second=0, microsecond=0)


def default_range(interval: str = "day", end: datetime | None = None) -> tuple[datetime, datetime]:
    """The last 7 days (or 24 hours for `hour`) up to `end`, as whole buckets: the current,
    partial bucket is the last one, so the range is 7 (24) buckets long."""
    end = end or utcnow()
    count = 7 if interval == "day" else 24
    start = floor_to(end - timedelta(microseconds=1), interval) - (count - 1) * INTERVALS[interval]
    return start, end


def check_range(start: datetime, end: datetime, interval: str) -> None:
    """Raise ValueError (naming the problem) unless the range is one usage_report accepts."""
    if interval not in INTERVALS:
        raise ValueError("interval must be day or hour")
    if start.tzinfo is not None or end.tzinfo is not None:
        raise ValueError("from and to must be naive UTC datetimes")
    if end <= start:
        raise ValueError("to must be after from")
    if end - start > MAX_SPAN[interval]:
        raise ValueError(f"at most {MAX_SPAN[interval].days} days by {interval}")


# --- what counts as sent and delivered ------------------------------------------------------------

def delivered_condition() -> ColumnElement:
    """Delivered: a delivered or read receipt came, or the user verified (so it must have arrived)."""
    return or_(Otp.delivered_at.is_not(None), Otp.read_at.is_not(None), Otp.verified_at.is_not(None),
               Otp.status == OtpStatus.VERIFIED)


def sent_condition() -> ColumnElement:
    """Sent: the provider took it (`sent_at`), or it got further (delivered, read, verified)."""
    return or_(Otp.sent_at.is_not(None), delivered_condition())


# --- one bucket's aggregates, from the table or the cache -----------------------------------------

@dataclass
class BucketData:
    """What a report needs of one bucket: counts by (channel, status, country), with how many of them
    were sent and delivered, and per channel the verified OTPs' milliseconds to verify, as sorted runs
    (one from the table, one per rolled-up hour: the median is taken across runs without merging)."""

    rows: list[list] = field(default_factory=list)  # [channel, status, country, n, sent, delivered]
    durations: dict[str, list[array]] = field(default_factory=dict)
    computed_at: float = field(default_factory=time.time)

    def add(self, other: BucketData) -> None:
        self.rows.extend(other.rows)
        for channel, runs in other.durations.items():
            self.durations.setdefault(channel, []).extend(runs)

    def encode(self) -> bytes:
        merged = {c: array(_DURATIONS, sorted(chain.from_iterable(runs))) for c, runs in self.durations.items()}
        head = {"at": self.computed_at, "rows": self.rows, "dur": [[c, len(a)] for c, a in merged.items()]}
        return json.dumps(head, separators=(",", ":")).encode() + b"\n" + b"".join(a.tobytes() for a in merged.values())

    @classmethod
    def decode(cls, raw: bytes) -> BucketData:
        head, _, body = raw.partition(b"\n")
        meta = json.loads(head)
        if any(len(row) != 6 for row in meta["rows"]):
            raise ValueError("an entry of the format before channels")
        durations, offset = {}, 0
        for channel, count in meta["dur"]:
            run = array(_DURATIONS)
            run.frombytes(body[offset:offset + count * run.itemsize])
            offset += count * run.itemsize
            durations[channel] = [run]
        return cls(rows=meta["rows"], durations=durations, computed_at=meta["at"])


def _bucket_expr(interval: str, column=None) -> ColumnElement:
    """A time column (created_at by default) truncated to the bucket, per dialect (PostgreSQL: a
    timestamp; SQLite: text)."""
    column = Otp.created_at if column is None else column
    if db.engine.dialect.name == "postgresql":
        return func.date_trunc(interval, column)
    pattern = "%Y-%m-%d 00:00:00" if interval == "day" else "%Y-%m-%d %H:00:00"
    return func.strftime(pattern, column)


def _millis_expr() -> ColumnElement:
    """verified_at - created_at in whole milliseconds, per dialect."""
    if db.engine.dialect.name == "postgresql":
        seconds = extract("epoch", Otp.verified_at - Otp.created_at)
    else:
        seconds = (func.julianday(Otp.verified_at) - func.julianday(Otp.created_at)) * 86400.0
    return cast(func.round(seconds * 1000), Integer)


def _millis_list_expr() -> ColumnElement:
    """Each bucket's milliseconds to verify in one value (one row per bucket, not per OTP): a sorted
    array on PostgreSQL, a comma-separated string on SQLite."""
    millis = _millis_expr()
    if db.engine.dialect.name == "postgresql":
        return func.array_agg(aggregate_order_by(millis, millis))
    return func.group_concat(millis)


def _millis_array(value) -> array:
    if value is None:
        return array(_DURATIONS)
    if isinstance(value, str):  # SQLite's group_concat, in no particular order
        return array(_DURATIONS, sorted(max(0, int(v)) for v in value.split(",") if v))
    return array(_DURATIONS, (max(0, v) for v in value))  # PostgreSQL's array_agg, ordered


def _as_datetime(value) -> datetime:
    return value if isinstance(value, datetime) else parse_iso(str(value))


def _flag(condition: ColumnElement) -> ColumnElement:
    return func.sum(case((condition, 1), else_=0))


def compute_buckets(app_id: str, interval: str, ranges: list[tuple[datetime, datetime]]) -> dict[datetime, BucketData]:
    """Aggregate the OTPs of `app_id` created in any of `ranges` ([start, end) pairs), per bucket
    start, from the `otps` table. Buckets without OTPs are absent."""
    if not ranges:
        return {}
    in_ranges = or_(*(and_(Otp.created_at >= s, Otp.created_at < e) for s, e in ranges))
    bucket = _bucket_expr(interval).label("bucket")
    counts = (
        select(bucket, Otp.channel, Otp.status, Otp.country, func.count().label("n"),
               _flag(sent_condition()).label("sent"), _flag(delivered_condition()).label("delivered"))
        .where(Otp.app_id == app_id, in_ranges)
        .group_by(literal_column("1"), Otp.channel, Otp.status, Otp.country)
    )
    conn = db.session.connection()  # Core rows: no ORM bookkeeping per row
    out: dict[datetime, BucketData] = {}
    for row in conn.execute(counts):
        data = out.setdefault(floor_to(_as_datetime(row.bucket), interval), BucketData())
        data.rows.append([row.channel or "whatsapp", row.status, row.country, int(row.n), int(row.sent or 0),
                          int(row.delivered or 0)])
    verified = (
        select(bucket, Otp.channel, _millis_list_expr().label("ms"))
        .where(Otp.app_id == app_id, in_ranges, Otp.status == OtpStatus.VERIFIED, Otp.verified_at.is_not(None))
        .group_by(literal_column("1"), Otp.channel)
    )
    for row in conn.execute(verified):
        data = out.setdefault(floor_to(_as_datetime(row.bucket), interval), BucketData())
        data.durations.setdefault(row.channel or "whatsapp", []).append(_millis_array(row.ms))
    return out


def gather_buckets(app_id: str, interval: str, ranges: list[tuple[datetime, datetime]]) -> dict[datetime, BucketData]:
    """Like compute_buckets, but the whole UTC hours the rollup has reached are read from the rollup
    tables (wpotp/reports/rollups.py) and only the rest (the hours not rolled up yet, today's, and the
    partial hours at a range's ends) from the `otps` table."""
    from .rollups import read_rollups, split_ranges

    rolled, raw = split_ranges(ranges)
    out = compute_buckets(app_id, interval, raw)
    for start, data in read_rollups(app_id, interval, rolled).items():
        out.setdefault(start, BucketData()).add(data)
    return out


def settle_delay() -> timedelta:
    """How long after a bucket ends every OTP created in it has a final status: the longest TTL
    renewed by every allowed resend, then a sweep, then five minutes to spare."""
    cfg = current_app.config
    lifetime = MAX_TTL_SECONDS * (int(cfg.get("RESEND_MAX", 3)) + 1)
    return timedelta(seconds=lifetime + int(cfg.get("SWEEP_INTERVAL", 15)) + 300)


def _key(app_id: str, interval: str, start: datetime) -> str:
    return f"{CACHE_PREFIX}:{app_id}:{interval}:{start:%Y%m%dT%H}"


def _load(app_id: str, interval: str, starts: list[datetime]) -> dict[datetime, BucketData]:
    if not starts:
        return {}
    try:
        raw = redis_client.conn.mget([_key(app_id, interval, s) for s in starts])
    except redis.RedisError:
        log.warning("report cache unavailable; computing from the table")
        return {}
    found = {}
    for start, value in zip(starts, raw, strict=True):
        if value is not None:
            try:
                found[start] = BucketData.decode(value)
            except (ValueError, KeyError):
                continue  # an entry this code cannot read: recompute it
    return found


def _store(app_id: str, interval: str, buckets: dict[datetime, BucketData]) -> None:
    if not buckets:
        return
    try:
        pipe = redis_client.conn.pipeline(transaction=False)
        for start, data in buckets.items():
            pipe.set(_key(app_id, interval, start), data.encode(), ex=KEEP_SECONDS)
        pipe.execute()
    except redis.RedisError:
        log.warning("report cache unavailable; not cached")


def _schedule_refresh(app_id: str, interval: str, starts: list[datetime]) -> None:
    """Recompute stale cached buckets in a worker; at most one such job per app and interval at a time."""
    try:
        if redis_client.conn.set(f"{CACHE_PREFIX}:refreshing:{app_id}:{interval}", "1", nx=True, ex=300):
            get_queue("default").enqueue(REFRESH_JOB, app_id, interval, [iso(s) for s in sorted(starts)],
                                         description=f"refresh report buckets of {app_id}", result_ttl=0)
    except redis.RedisError:
        log.warning("report cache refresh not scheduled")


@job
def refresh_report_buckets(app_id: str, interval: str, starts: list[str]) -> int:
    """RQ job: recompute the given (settled) buckets from the table and cache them again."""
    step = INTERVALS[interval]
    begins = [parse_iso(s) for s in starts]
    fresh = gather_buckets(app_id, interval, _merge_ranges([(b, b + step) for b in begins]))
    _store(app_id, interval, {b: fresh.get(b, BucketData()) for b in begins})
    with contextlib.suppress(redis.RedisError):
        redis_client.conn.delete(f"{CACHE_PREFIX}:refreshing:{app_id}:{interval}")
    return len(begins)


def forget_reports(app_id: str) -> int:
    """Drop every cached bucket of `app_id` (the next report recomputes them); returns how many."""
    conn = redis_client.conn
    keys = list(conn.scan_iter(match=f"{CACHE_PREFIX}:{app_id}:*", count=1000))
    return conn.delete(*keys) if keys else 0


def _merge_ranges(ranges: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for s, e in sorted(ranges):
        if merged and merged[-1][1] >= s:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


# --- the report ------------------------------------------------------------------------------------

def _kth(arrays: list[array], k: int) -> int:
    """The k-th smallest (0-based) value over several sorted arrays of ints, without merging them."""
    lo = min(a[0] for a in arrays if len(a))
    hi = max(a[-1] for a in arrays if len(a))
    while lo < hi:
        mid = (lo + hi) // 2
        if sum(bisect_right(a, mid) for a in arrays) > k:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _median_seconds(arrays: list[array]) -> float | None:
    n = sum(len(a) for a in arrays)
    if n == 0:
        return None
    low, high = _kth(arrays, (n - 1) // 2), _kth(arrays, n // 2)
    return round((low + high) / 2000, 3)


def _zero_statuses() -> dict[str, int]:
    return dict.fromkeys(STATUSES, 0)


@dataclass
class _Tally:
    """Running sums over a report's OTPs (all of them, or one channel's)."""

    total: int = 0
    by_status: dict[str, int] = field(default_factory=_zero_statuses)
    sent: int = 0
    delivered: int = 0
    failed_unsent: int = 0  # FAILED before a provider took them
    durations: list[array] = field(default_factory=list)

    def count(self, status: str, n: int, sent: int, delivered: int) -> None:
        self.total += n
        if status in self.by_status:
            self.by_status[status] += n
        self.sent += sent
        self.delivered += delivered
        if status == OtpStatus.FAILED:
            self.failed_unsent += n - sent

    def delivery(self) -> dict:
        """What the console's delivery rate is made of: the OTPs a provider took or that failed
        before one did (tried), and of those the delivered ones."""
        tried = self.sent + self.failed_unsent
        return {"sent": self.sent, "delivered": self.delivered, "failed_unsent": self.failed_unsent,
                "tried": tried, "rate": round(self.delivered / tried, 4) if tried else None}

    def figures(self) -> dict:
        verified = self.by_status[OtpStatus.VERIFIED]
        return {"total": self.total, "byStatus": self.by_status,
                "deliveryRate": round(self.delivered / self.sent, 4) if self.sent else None,
                "verificationRate": round(verified / self.total, 4) if self.total else None,
                "medianSecondsToVerify": _median_seconds(self.durations)}


def _bucket_slot(start: datetime, data: BucketData, totals: _Tally, channels: dict[str, _Tally],
                 countries: dict[str, int]) -> dict:
    """One bucket of the answer, adding its OTPs to the report's running sums."""
    slot = {"start": iso(start), "total": 0, "byStatus": _zero_statuses(),
            "byChannel": {c: {"total": 0, "byStatus": _zero_statuses()} for c in CHANNELS}}
    for channel, status, country, n, sent, delivered in data.rows:
        slot["total"] += n
        if status in slot["byStatus"]:
            slot["byStatus"][status] += n
        part = slot["byChannel"].get(channel)
        if part is not None:
            part["total"] += n
            if status in part["byStatus"]:
                part["byStatus"][status] += n
            channels[channel].count(status, n, sent, delivered)
        totals.count(status, n, sent, delivered)
        if country:
            countries[country] = countries.get(country, 0) + n
    for channel, runs in data.durations.items():
        runs = [r for r in runs if len(r)]
        totals.durations.extend(runs)
        if channel in channels:
            channels[channel].durations.extend(runs)
    return slot


def usage_report(app_id: str, start: datetime, end: datetime, interval: str = "day", *,
                 delivery: bool = False) -> dict:
    """OTPs of `app_id` created in [start, end) (naive UTC), counted per UTC day or hour.

    Returns::

        {"from", "to", "interval",
         "buckets": [{"start", "total", "byStatus": {status: n for all 8 statuses},
                      "byChannel": {"whatsapp": {"total", "byStatus"}, "sms": {...}}}, ...],
         "totals": {"total", "byStatus"},
         "deliveryRate", "verificationRate", "medianSecondsToVerify",
         "topCountries": [{"country", "count"}, ...],
         "byChannel": {"whatsapp": {"total", "byStatus", "deliveryRate", "verificationRate",
                                    "medianSecondsToVerify"}, "sms": {...}}}

    Every bucket from the one holding `start` to the one holding the last instant before `end`
    is present, zeros included; the first and last may be partial. Each OTP counts once, under
    its current status, in the bucket of its `created_at`, and under the channel of its last
    send (its `channel`: an `auto` OTP that fell back to SMS counts as SMS).

    Definitions (all over the OTPs counted in the report, or in `byChannel` one channel's):

    - *sent*: `sent_at` is set, or the OTP got further (it counts as delivered).
    - *delivered*: `delivered_at` or `read_at` is set, or it was verified (status VERIFIED or
      `verified_at` set): WhatsApp may send `read` without `delivered`, and a verified code
      must have arrived.
    - `deliveryRate` = delivered / sent, rounded to 4 places; None when nothing was sent.
      A resent OTP counts once, by its latest generation's timestamps.
    - `verificationRate` = OTPs with status VERIFIED / all OTPs, rounded to 4 places; None
      when there are none.
    - `medianSecondsToVerify`: the median of `verified_at - created_at` over the VERIFIED OTPs
      (each taken to the millisecond; the mean of the two middle values for an even count), in
      seconds with 3 decimals; None when none was verified.
    - `topCountries`: the 10 recipient countries (ISO 3166 region) with the most OTPs, most
      first, ties by code; OTPs without a country are left out.

    Whole UTC hours the rollup has reached come from the rollup tables, the rest from the `otps`
    table (so a report is exact up to now); settled whole buckets may come from the cache (see
    the module's docstring): a receipt that lands on an OTP after its bucket settled shows up
    once the rollup rechecks its hour and the cached bucket is refreshed.

    With `delivery` (the console's), also "delivery": {"sent", "delivered", "failed_unsent",
    "tried", "rate"}, from the same counts (so from the rollups too).

    Raises ValueError for an unknown interval, `end <= start`, or a range longer than 90 days
    by day or 7 days by hour.
    """
    check_range(start, end, interval)
    step = INTERVALS[interval]
    starts = []
    at = floor_to(start, interval)
    while at < end:
        starts.append(at)
        at += step

    settled_by = utcnow() - settle_delay()
    cacheable = [b for b in starts if b >= start and b + step <= end and b + step <= settled_by]
    cached = _load(app_id, interval, cacheable)
    wanted = _merge_ranges([(max(b, start), min(b + step, end)) for b in starts if b not in cached])
    computed = gather_buckets(app_id, interval, wanted)
    _store(app_id, interval, {b: computed.get(b, BucketData()) for b in cacheable if b not in cached})
    stale = [b for b, data in cached.items() if data.computed_at < time.time() - FRESH_SECONDS]
    if stale:
        _schedule_refresh(app_id, interval, stale)

    totals = _Tally()
    channels = {c: _Tally() for c in CHANNELS}
    countries: dict[str, int] = {}
    buckets = [_bucket_slot(b, cached.get(b) or computed.get(b) or BucketData(), totals, channels, countries)
               for b in starts]
    top = sorted(countries.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_COUNTRIES]
    overall = totals.figures()
    answer = {
        "from": iso(start),
        "to": iso(end),
        "interval": interval,
        "buckets": buckets,
        "totals": {"total": overall["total"], "byStatus": overall["byStatus"]},
        "deliveryRate": overall["deliveryRate"],
        "verificationRate": overall["verificationRate"],
        "medianSecondsToVerify": overall["medianSecondsToVerify"],
        "topCountries": [{"country": c, "count": n} for c, n in top],
        "byChannel": {c: tally.figures() for c, tally in channels.items()},
    }
    if delivery:
        answer["delivery"] = totals.delivery()
    return answer


CSV_HEADER = ("start", "total", *STATUSES)


def usage_csv(report: dict) -> str:
    """The report's buckets as CSV: a header, then start,total,QUEUED,...,CANCELED per bucket."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for b in report["buckets"]:
        writer.writerow([b["start"], b["total"], *(b["byStatus"].get(s, 0) for s in STATUSES)])
    return out.getvalue()
