"""Report rollups (wpotp/reports/rollups.py): every report figure read from the rollups matches the
same report counted from the raw rows, over several days, apps, countries, channels and statuses;
the rollup is kept by the sweep job; late receipts are taken in by the recheck."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest
from sqlalchemy import delete, func, select, update

from tests.helpers import make_key
from wpotp.extensions import db
from wpotp.models import Otp, ReportRollup, ReportRollupDurations
from wpotp.reports.rollups import HOUR, roll_up, rolled_until
from wpotp.reports.usage import forget_reports, settle_delay, usage_report
from wpotp.util import utcnow

from .support import add_otps

COUNTRIES = ("TR", "DE", "BR", "NG", None)
OUTCOMES = ("VERIFIED", "VERIFIED", "READ", "DELIVERED", "SENT", "EXPIRED", "FAILED", "CANCELED", "QUEUED")


def _varied_otps(rng: random.Random, start: datetime, seconds: int, count: int) -> list[dict]:
    """`count` OTPs spread over `seconds` from `start`, of every status, channel and country."""
    rows = []
    for _ in range(count):
        created = start + timedelta(seconds=rng.randrange(seconds))
        status = rng.choice(OUTCOMES)
        row = {"created_at": created, "status": status, "country": rng.choice(COUNTRIES),
               "channel": rng.choice(("whatsapp", "whatsapp", "sms"))}
        step = timedelta(seconds=rng.randrange(1, 30))
        if status in ("VERIFIED", "READ", "DELIVERED", "SENT", "EXPIRED"):
            row["sent_at"] = created + step
        if status in ("READ", "DELIVERED") or (status in ("VERIFIED", "EXPIRED") and rng.random() < 0.5):
            row["delivered_at" if status != "READ" else "read_at"] = created + 2 * step
        if status == "VERIFIED":
            row["verify_after"] = rng.randrange(2000, 240000) / 1000  # to the millisecond
        if status == "FAILED":
            row["failed_at"] = created + step
        rows.append(row)
    return rows


def _report(app, app_id, start, end, interval):
    with app.app_context():
        forget_reports(app_id)  # from rollups and tables, not from the report cache
        return usage_report(app_id, start, end, interval, delivery=True)


def _roll(app, now=None) -> dict:
    """Roll up until caught up (a long history takes several passes); the passes' sums."""
    total = {"rollup_hours": 0, "rollup_rechecked": 0, "passes": 0}
    with app.app_context():
        for _ in range(50):
            result = roll_up(now)
            total = {k: total[k] + result.get(k, 1) for k in total}
            if not result["rollup_hours"]:
                return total
        raise AssertionError("the rollup never caught up")


@pytest.fixture
def history(app, api_key):
    """Two apps, six days of OTPs up to now (today's included), with an app of no OTPs."""
    other = make_key(app, "other")
    make_key(app, "quiet")
    now = utcnow()
    start = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=5)
    rng = random.Random(17)
    seconds = int((now - start).total_seconds())
    add_otps(app, api_key.app_id, *_varied_otps(rng, start, seconds, 700))
    add_otps(app, other.app_id, *_varied_otps(rng, start, seconds, 300))
    # the last half hour: never rolled up yet, so it comes from the table
    add_otps(app, api_key.app_id, *_varied_otps(rng, now - timedelta(minutes=30), 1800, 20))
    return api_key.app_id, other.app_id, start, now


def _ranges(start: datetime, now: datetime) -> list[tuple[datetime, datetime, str]]:
    end = now + timedelta(minutes=1)
    return [
        (start, end, "day"),  # whole days, up to now: rolled days, then today from the table
        (start, end, "hour"),
        (start + timedelta(hours=7, minutes=13), now - timedelta(hours=30, minutes=5), "day"),  # odd ends
        (start + timedelta(hours=7, minutes=13), now - timedelta(hours=30, minutes=5), "hour"),
        (start + timedelta(days=1), start + timedelta(days=3), "day"),  # all rolled
        (now - timedelta(hours=3), end, "hour"),  # straddles the rollup's horizon
    ]


def test_reports_from_rollups_match_the_raw_rows(app, make_app, history):
    mine, theirs, start, now = history
    raw = make_app(REPORT_ROLLUPS=False)  # the same database and Redis, reports from the table only
    expected = {(a, *r): _report(raw, a, *r) for a in (mine, theirs) for r in _ranges(start, now)}

    result = _roll(app)
    with app.app_context():
        horizon, settled = rolled_until(), utcnow() - settle_delay()
        assert settled - 2 * HOUR < horizon <= settled  # caught up to the last settled hour
        assert db.session.scalar(select(func.count()).select_from(ReportRollup)) > 0
        assert db.session.scalar(select(func.count()).select_from(ReportRollupDurations)) > 0
    assert result["rollup_hours"] >= 5 * 24 - 2

    for key, want in expected.items():
        got = _report(app, *key)
        assert got == want, key  # every bucket, status, channel, rate, median and country
    report = expected[(mine, start, now + timedelta(minutes=1), "day")]
    assert report["byChannel"]["sms"]["total"] > 0 and report["byChannel"]["whatsapp"]["total"] > 0
    assert report["byChannel"]["sms"]["total"] + report["byChannel"]["whatsapp"]["total"] == \
        report["totals"]["total"] == 720
    assert report["medianSecondsToVerify"] is not None


def test_rolled_hours_are_read_from_the_rollup(app, make_app, history):
    """A row deleted under a rolled hour still counts there until the hour is rolled again: proof
    that the report read the rollup, not the table."""
    mine, _theirs, start, now = history
    _roll(app)
    day = (start + timedelta(days=1), start + timedelta(days=2))
    before = _report(app, mine, *day, "day")["totals"]["total"]
    with app.app_context():
        gone = db.session.execute(delete(Otp).where(Otp.app_id == mine, Otp.created_at >= day[0],
                                                    Otp.created_at < day[0] + timedelta(hours=2))).rowcount
        db.session.commit()
    assert gone > 0
    assert _report(app, mine, *day, "day")["totals"]["total"] == before
    assert _report(make_app(REPORT_ROLLUPS=False), mine, *day, "day")["totals"]["total"] == before - gone


def test_a_late_receipt_is_taken_in_by_the_recheck(app, make_app, history):
    mine, _theirs, start, now = history
    _roll(app)
    raw = make_app(REPORT_ROLLUPS=False)
    with app.app_context():  # a sent, undelivered OTP of an hour that is rolled and within the recheck
        late, created = db.session.execute(
            select(Otp.id, Otp.created_at).where(Otp.app_id == mine, Otp.created_at >= now - timedelta(hours=40),
                                                 Otp.created_at < now - timedelta(hours=3), Otp.sent_at.is_not(None),
                                                 Otp.delivered_at.is_(None), Otp.read_at.is_(None),
                                                 Otp.status.in_(("SENT", "EXPIRED")))
            .order_by(Otp.created_at.desc())).first()
        db.session.execute(update(Otp).where(Otp.id == late).values(delivered_at=utcnow()))  # its receipt, late
        db.session.commit()
    hour = created.replace(minute=0, second=0, microsecond=0)
    span = (hour - timedelta(days=1), hour + HOUR)
    assert _report(app, mine, *span, "hour") != _report(raw, mine, *span, "hour")  # the rollup is behind
    result = _roll(app, utcnow() + timedelta(minutes=61))  # the next hourly recheck
    assert result["rollup_rechecked"] >= 47  # the last 48 hours but the one this pass rolled first
    assert _report(app, mine, *span, "hour") == _report(raw, mine, *span, "hour")


def test_the_sweep_job_keeps_the_rollup_and_queues_retention(make_app, app, api_key, run_worker):
    from wpotp.extensions import redis_client
    from wpotp.jobs.schedule import enqueue_due

    short = make_app(RETENTION_DAYS=1)  # the same database: its retention job anonymises these OTPs
    old = utcnow() - timedelta(days=2)
    ids = add_otps(app, api_key.app_id, *[{"created_at": old + timedelta(minutes=i), "status": "EXPIRED"}
                                          for i in range(5)])
    with short.app_context():
        assert rolled_until() is None
        assert enqueue_due(short) == ["sweep"]
    run_worker(short)  # the sweep job, then the retention job it queues
    with short.app_context():
        assert rolled_until() is not None and rolled_until() > old
        assert all(db.session.get(Otp, i).anonymised_at is not None for i in ids)  # the retention job ran
        assert redis_client.conn.ttl("wpotp:periodic:retention") > 0  # and is not due again for an hour
        counted = dict(db.session.execute(select(ReportRollup.span, func.sum(ReportRollup.n))
                                          .where(ReportRollup.app_id == api_key.app_id)
                                          .group_by(ReportRollup.span)).all())
    # anonymised, still counted; and once more in the day rows: two days ago is a whole day the rollup passed
    assert counted == {"hour": 5, "day": 5}


def test_a_rollup_under_way_is_not_waited_for(app, api_key):
    """PostgreSQL: while one rollup holds the state row, a second sweep's rollup skips (it would only
    redo the same hours), instead of waiting for it. SQLite runs one writer at a time anyway."""
    from wpotp.models import ReportRollupState

    add_otps(app, api_key.app_id, {"created_at": utcnow() - timedelta(days=2), "status": "EXPIRED"})
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("row locks are PostgreSQL's")
        db.session.add(ReportRollupState(id=1))
        db.session.commit()
        with db.engine.connect() as other:  # another worker's rollup, in the middle of its pass
            other.execute(select(ReportRollupState).where(ReportRollupState.id == 1).with_for_update())
            assert roll_up() == {"rollup_hours": 0, "rollup_rechecked": 0}
            assert rolled_until() is None
            other.rollback()
        assert roll_up()["rollup_hours"] > 0
        assert rolled_until() is not None
