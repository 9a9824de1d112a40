"""Settled buckets are cached in Redis; live and partial buckets never are; stale entries are
recomputed by a worker; without Redis the report is computed from the table."""

from __future__ import annotations

import socket
import statistics
import time
from datetime import timedelta

import redis

from tests.conftest import TEST_REDIS_URL
from wpotp.reports.usage import FRESH_SECONDS, BucketData, forget_reports, usage_report
from wpotp.util import utcnow

from .support import DAY, add_otps, at


def report(app, app_id, start, end, interval="day"):
    with app.app_context():
        return usage_report(app_id, start, end, interval)


def cache_keys(app_id: str) -> list[str]:
    conn = redis.Redis.from_url(TEST_REDIS_URL)
    return sorted(k.decode() for k in conn.scan_iter(match=f"wpotp:report:v1:{app_id}:*"))


def test_settled_days_are_cached_until_forgotten(app, api_key):
    add_otps(app, api_key.app_id, {"created_at": at(0, 1)})
    assert report(app, api_key.app_id, DAY, DAY + timedelta(days=2))["totals"]["total"] == 1
    assert cache_keys(api_key.app_id) == [f"wpotp:report:v1:{api_key.app_id}:day:20260301T00",
                                          f"wpotp:report:v1:{api_key.app_id}:day:20260302T00"]
    add_otps(app, api_key.app_id, {"created_at": at(0, 2)})  # a row no live table would get: a settled past
    assert report(app, api_key.app_id, DAY, DAY + timedelta(days=2))["totals"]["total"] == 1
    with app.app_context():
        forget_reports(api_key.app_id)
    assert report(app, api_key.app_id, DAY, DAY + timedelta(days=2))["totals"]["total"] == 2


def test_the_live_bucket_is_always_counted_afresh(app, api_key):
    now = utcnow()
    start, end = now - timedelta(minutes=61), now + timedelta(minutes=1)
    add_otps(app, api_key.app_id, {"created_at": now - timedelta(minutes=2)})
    assert report(app, api_key.app_id, start, end, "hour")["totals"]["total"] == 1
    add_otps(app, api_key.app_id, {"created_at": now - timedelta(minutes=1)})
    assert report(app, api_key.app_id, start, end, "hour")["totals"]["total"] == 2
    # Hours that ended less than an OTP's longest life ago are not settled either.
    assert cache_keys(api_key.app_id) == []


def test_partial_buckets_are_counted_afresh(app, api_key):
    add_otps(app, api_key.app_id, {"created_at": at(0, 7)})
    assert report(app, api_key.app_id, at(0, 6), at(2))["totals"]["total"] == 1
    add_otps(app, api_key.app_id, {"created_at": at(0, 8)})
    r = report(app, api_key.app_id, at(0, 6), at(2))
    assert r["totals"]["total"] == 2 and r["buckets"][0]["total"] == 2
    assert [k[-11:] for k in cache_keys(api_key.app_id)] == ["20260302T00"]  # only the whole day


def test_a_stale_bucket_is_served_then_refreshed_by_a_worker(app, api_key, run_worker):
    add_otps(app, api_key.app_id, {"created_at": at(0, 1), "status": "EXPIRED", "sent_at": at(0, 1)})
    assert report(app, api_key.app_id, DAY, DAY + timedelta(days=1))["deliveryRate"] == 0.0
    # A late delivery receipt lands on the expired OTP, and the cached day grows old.
    with app.app_context():
        from sqlalchemy import update

        from wpotp.extensions import db
        from wpotp.models import Otp

        db.session.execute(update(Otp).where(Otp.app_id == api_key.app_id).values(delivered_at=at(0, 2)))
        db.session.commit()
    conn = redis.Redis.from_url(TEST_REDIS_URL)
    key = cache_keys(api_key.app_id)[0]
    entry = BucketData.decode(conn.get(key))
    entry.computed_at = time.time() - FRESH_SECONDS - 1
    conn.set(key, entry.encode())

    assert report(app, api_key.app_id, DAY, DAY + timedelta(days=1))["deliveryRate"] == 0.0  # served stale
    run_worker()
    assert report(app, api_key.app_id, DAY, DAY + timedelta(days=1))["deliveryRate"] == 1.0
    assert BucketData.decode(conn.get(key)).computed_at > time.time() - 60


def _mixed(app, app_id):
    rows = []
    for day in range(4):
        for i in range(6):
            rows.append({"created_at": at(day, i, 10 * i), "status": "VERIFIED", "verify_after": 3 * day + i * 7.25,
                         "sent_at": at(day, i, 10 * i, 1), "country": ("TR", "DE", "BR")[i % 3]})
        rows += [{"created_at": at(day, 9), "status": "EXPIRED", "sent_at": at(day, 9, 0, 1),
                  "delivered_at": at(day, 9, 0, 3)},
                 {"created_at": at(day, 10), "status": "FAILED", "country": "US"},
                 {"created_at": at(day, 23, 59, 59), "status": "CANCELED", "country": None}]
    add_otps(app, app_id, *rows)
    return [r["verify_after"] for r in rows if "verify_after" in r]


def test_cached_and_computed_reports_agree(app, api_key):
    durations = _mixed(app, api_key.app_id)
    for interval, end in (("day", DAY + timedelta(days=5)), ("hour", DAY + timedelta(days=4))):
        cold = report(app, api_key.app_id, DAY, end, interval)
        assert cache_keys(api_key.app_id)
        warm = report(app, api_key.app_id, DAY, end, interval)
        assert warm == cold
        assert cold["totals"]["total"] == 36 and cold["totals"]["byStatus"]["VERIFIED"] == 24
        assert cold["medianSecondsToVerify"] == round(statistics.median(durations), 3)
        assert cold["deliveryRate"] == round(28 / 28, 4) and cold["verificationRate"] == round(24 / 36, 4)
        assert cold["topCountries"] == [{"country": "TR", "count": 12}, {"country": "BR", "count": 8},
                                        {"country": "DE", "count": 8}, {"country": "US", "count": 4}]
        with app.app_context():
            forget_reports(api_key.app_id)


def test_the_median_spans_buckets(app, api_key):
    # Sorted: 1, 2, 3, 4, 5.5, 10, 20, 100: the middle two are in different days.
    add_otps(app, api_key.app_id, *[{"created_at": at(0, 1), "verify_after": v} for v in (1, 2, 3)],
             *[{"created_at": at(1, 1), "verify_after": v} for v in (10, 20)],
             *[{"created_at": at(2, 1), "verify_after": v} for v in (4, 100, 5.5)])
    for _ in range(2):  # computed, then from the cache
        assert report(app, api_key.app_id, DAY, DAY + timedelta(days=3))["medianSecondsToVerify"] == 4.75
    assert report(app, api_key.app_id, DAY + timedelta(days=1), DAY + timedelta(days=2))[
        "medianSecondsToVerify"] == 15.0


def test_without_redis_the_report_is_computed_from_the_table(make_app, app, api_key):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    broken = make_app(REDIS_URL=f"redis://127.0.0.1:{port}/0")
    add_otps(app, api_key.app_id, {"created_at": at(0, 1), "verify_after": 4})
    r = report(broken, api_key.app_id, DAY, DAY + timedelta(days=2))
    assert r["totals"]["total"] == 1 and r["medianSecondsToVerify"] == 4.0
