"""usage_report / usage_csv / top_recipients on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest

from tests.helpers import make_key
from wpotp.reports.limits import top_recipients
from wpotp.reports.usage import STATUSES, forget_reports, usage_csv, usage_report

from .support import DAY, add_otps, at


def report(app, app_id, start, end, interval="day"):
    with app.app_context():
        return usage_report(app_id, start, end, interval)


def test_buckets_count_by_status_and_missing_days_are_zero(app, api_key):
    add_otps(app, api_key.app_id,
             {"created_at": at(0, 9), "status": "QUEUED"},
             {"created_at": at(0, 23, 59, 59), "status": "FAILED"},
             {"created_at": at(0, 12), "status": "VERIFIED", "verify_after": 20, "sent_at": at(0, 12, 0, 1)},
             {"created_at": at(3), "status": "EXPIRED", "sent_at": at(3, 0, 0, 1)},
             {"created_at": at(3, 5), "status": "CANCELED"},
             {"created_at": at(-1, 23, 59, 59), "status": "SENT"},  # before the range
             {"created_at": at(5), "status": "SENT"})               # at `to`: excluded
    r = report(app, api_key.app_id, DAY, DAY + timedelta(days=5))

    assert r["from"] == "2026-03-01T00:00:00.000Z" and r["to"] == "2026-03-06T00:00:00.000Z"
    assert r["interval"] == "day"
    assert [b["start"] for b in r["buckets"]] == [f"2026-03-0{d}T00:00:00.000Z" for d in range(1, 6)]
    assert [b["total"] for b in r["buckets"]] == [3, 0, 0, 2, 0]
    for b in r["buckets"]:
        assert list(b["byStatus"]) == list(STATUSES)
        assert sum(b["byStatus"].values()) == b["total"]
    first = r["buckets"][0]["byStatus"]
    assert (first["QUEUED"], first["FAILED"], first["VERIFIED"], first["SENT"]) == (1, 1, 1, 0)
    assert r["buckets"][1]["byStatus"] == dict.fromkeys(STATUSES, 0)
    assert r["buckets"][3]["byStatus"]["EXPIRED"] == 1 and r["buckets"][3]["byStatus"]["CANCELED"] == 1
    assert r["totals"]["total"] == 5
    assert r["totals"]["byStatus"] == {**dict.fromkeys(STATUSES, 0), "QUEUED": 1, "FAILED": 1, "VERIFIED": 1,
                                       "EXPIRED": 1, "CANCELED": 1}


def test_a_range_not_on_midnight_has_partial_first_and_last_days(app, api_key):
    add_otps(app, api_key.app_id, {"created_at": at(0, 5)}, {"created_at": at(0, 7)}, {"created_at": at(2, 11)},
             {"created_at": at(2, 13)})
    r = report(app, api_key.app_id, at(0, 6), at(2, 12))
    assert [b["start"][:10] for b in r["buckets"]] == ["2026-03-01", "2026-03-02", "2026-03-03"]
    assert [b["total"] for b in r["buckets"]] == [1, 0, 1]


def test_hour_interval(app, api_key):
    add_otps(app, api_key.app_id,
             {"created_at": at(0, 10, 0, 0), "status": "READ", "sent_at": at(0, 10, 0, 1), "read_at": at(0, 10, 0, 5)},
             {"created_at": at(0, 10, 59, 59), "status": "SENT", "sent_at": at(0, 11)},
             {"created_at": at(0, 12, 30), "status": "FAILED", "failed_at": at(0, 12, 31)},
             {"created_at": at(0, 13), "status": "FAILED"})  # at `to`: excluded
    r = report(app, api_key.app_id, at(0, 10), at(0, 13), "hour")
    assert r["interval"] == "hour"
    assert [b["start"] for b in r["buckets"]] == ["2026-03-01T10:00:00.000Z", "2026-03-01T11:00:00.000Z",
                                                  "2026-03-01T12:00:00.000Z"]
    assert [b["total"] for b in r["buckets"]] == [2, 0, 1]
    assert r["buckets"][0]["byStatus"]["READ"] == 1 and r["buckets"][0]["byStatus"]["SENT"] == 1
    assert r["buckets"][2]["byStatus"]["FAILED"] == 1
    assert r["deliveryRate"] == 0.5  # sent 2 (READ, SENT), delivered 1 (READ without a delivered receipt)


def test_rates_and_median_on_a_known_data_set(app, api_key):
    c = at(1, 8)
    s = c + timedelta(seconds=1)
    add_otps(app, api_key.app_id,
             # verified after 10, 20, 30, 100 s: median 25; one typed in before any receipt came
             {"created_at": c, "verify_after": 10, "sent_at": s, "delivered_at": s},
             {"created_at": c, "verify_after": 20, "sent_at": s, "read_at": s},
             {"created_at": c, "verify_after": 30, "sent_at": s},
             {"created_at": c, "verify_after": 100},
             {"created_at": c, "status": "READ", "sent_at": s, "read_at": s},       # read, no delivered receipt
             {"created_at": c, "status": "DELIVERED", "sent_at": s, "delivered_at": s},
             {"created_at": c, "status": "EXPIRED", "sent_at": s, "delivered_at": s},  # delivered, never typed
             {"created_at": c, "status": "SENT", "sent_at": s},
             {"created_at": c, "status": "EXPIRED", "sent_at": s},                 # sent, never delivered
             {"created_at": c, "status": "FAILED", "failed_at": s},                # never sent
             {"created_at": c, "status": "QUEUED"},
             {"created_at": c, "status": "CANCELED"})
    r = report(app, api_key.app_id, DAY, DAY + timedelta(days=3))
    # sent: 4 verified + READ + DELIVERED + 2 EXPIRED + SENT = 9; delivered: 4 + READ + DELIVERED + 1 EXPIRED = 7
    assert r["deliveryRate"] == round(7 / 9, 4)
    assert r["verificationRate"] == round(4 / 12, 4)
    assert r["medianSecondsToVerify"] == 25.0
    assert r["totals"]["total"] == 12

    # An odd count: the middle value. (The day is settled and cached: forget it to see the new row.)
    add_otps(app, api_key.app_id, {"created_at": c, "verify_after": 0.5})
    with app.app_context():
        assert forget_reports(api_key.app_id) == 3
    r = report(app, api_key.app_id, DAY, DAY + timedelta(days=3))
    assert r["medianSecondsToVerify"] == 20.0
    assert r["verificationRate"] == round(5 / 13, 4)


def test_rates_are_none_when_there_is_nothing_to_divide_by(app, api_key):
    empty = report(app, api_key.app_id, DAY, DAY + timedelta(days=1))
    assert empty["totals"]["total"] == 0 and len(empty["buckets"]) == 1
    assert (empty["deliveryRate"], empty["verificationRate"], empty["medianSecondsToVerify"]) == (None, None, None)
    assert empty["topCountries"] == []

    add_otps(app, api_key.app_id, {"created_at": at(1, 1), "status": "QUEUED"},
             {"created_at": at(1, 2), "status": "FAILED"})
    r = report(app, api_key.app_id, DAY + timedelta(days=1), DAY + timedelta(days=2))
    assert r["deliveryRate"] is None  # nothing was sent
    assert r["verificationRate"] == 0.0
    assert r["medianSecondsToVerify"] is None


def test_top_countries_most_first_at_most_ten(app, api_key):
    rows = []
    counts = {"TR": 7, "DE": 5, "BR": 5, "US": 4, "GB": 3, "FR": 2, "IN": 2, "NG": 2, "ID": 1, "MX": 1, "EG": 1,
              "ES": 1}
    for country, n in counts.items():
        rows += [{"created_at": at(0, 3), "country": country}] * n
    rows.append({"created_at": at(0, 4), "country": None})
    add_otps(app, api_key.app_id, *rows)
    top = report(app, api_key.app_id, DAY, DAY + timedelta(days=1))["topCountries"]
    assert len(top) == 10
    assert top[:5] == [{"country": "TR", "count": 7}, {"country": "BR", "count": 5}, {"country": "DE", "count": 5},
                       {"country": "US", "count": 4}, {"country": "GB", "count": 3}]
    assert [t["country"] for t in top[8:]] == ["EG", "ES"]  # ties by code; ID and MX fall off
    assert None not in [t["country"] for t in top]


def test_one_apps_report_never_counts_another_apps_otps(app, api_key):
    other = make_key(app, "other")
    add_otps(app, api_key.app_id, {"created_at": at(0, 1), "status": "VERIFIED", "verify_after": 5,
                                   "country": "TR"})
    add_otps(app, other.app_id, *[{"created_at": at(0, 2), "status": "FAILED", "country": "DE"}] * 3)
    mine = report(app, api_key.app_id, DAY, DAY + timedelta(days=1))
    theirs = report(app, other.app_id, DAY, DAY + timedelta(days=1))
    assert mine["totals"]["total"] == 1 and mine["totals"]["byStatus"]["FAILED"] == 0
    assert mine["topCountries"] == [{"country": "TR", "count": 1}]
    assert mine["verificationRate"] == 1.0 and mine["medianSecondsToVerify"] == 5.0
    assert theirs["totals"]["total"] == 3 and theirs["totals"]["byStatus"]["VERIFIED"] == 0
    assert theirs["medianSecondsToVerify"] is None and theirs["topCountries"] == [{"country": "DE", "count": 3}]


def test_csv_has_a_header_and_one_row_per_bucket(app, api_key):
    add_otps(app, api_key.app_id, {"created_at": at(1, 1), "status": "SENT", "sent_at": at(1, 1)},
             {"created_at": at(1, 2), "status": "CANCELED"})
    r = report(app, api_key.app_id, DAY, DAY + timedelta(days=3))
    rows = list(csv.reader(io.StringIO(usage_csv(r))))
    assert rows[0] == ["start", "total", "QUEUED", "SENT", "DELIVERED", "READ", "VERIFIED", "FAILED", "EXPIRED",
                       "CANCELED"]
    assert len(rows) == 1 + 3
    assert rows[1] == ["2026-03-01T00:00:00.000Z", "0", "0", "0", "0", "0", "0", "0", "0", "0"]
    assert rows[2] == ["2026-03-02T00:00:00.000Z", "2", "0", "1", "0", "0", "0", "0", "0", "1"]


@pytest.mark.parametrize(("days", "interval", "ok"), [(90, "day", True), (91, "day", False), (7, "hour", True),
                                                      (8, "hour", False)])
def test_range_limits(app, api_key, days, interval, ok):
    end = DAY + timedelta(days=days)
    with app.app_context():
        if ok:
            r = usage_report(api_key.app_id, DAY, end, interval)
            assert len(r["buckets"]) == days * (24 if interval == "hour" else 1)
        else:
            with pytest.raises(ValueError):
                usage_report(api_key.app_id, DAY, end, interval)


@pytest.mark.parametrize(("start", "end", "interval"), [(DAY, DAY, "day"), (DAY + timedelta(days=1), DAY, "day"),
                                                        (DAY, DAY + timedelta(days=1), "week")])
def test_bad_ranges_are_refused(app, api_key, start, end, interval):
    with app.app_context(), pytest.raises(ValueError):
        usage_report(api_key.app_id, start, end, interval)


def test_real_sends_through_the_worker_show_up(app, client, api_key, run_worker, outbox):
    from wpotp.util import utcnow

    ids = []
    for i in range(3):
        r = client.post("/v1/otp/send", headers=api_key.headers, json={"recipient": f"+90555333{i:04d}"})
        assert r.status_code == 201
        ids.append(r.json["id"])
    failed = client.post("/v1/otp/send", headers=api_key.headers, json={"recipient": "+15005550001"})
    assert failed.status_code == 201
    run_worker()
    code = outbox("+905553330000")[0]["code"]
    assert client.post(f"/v1/otp/{ids[0]}/verify", headers=api_key.headers, json={"code": code}).json["verified"]

    now = utcnow()
    r = report(app, api_key.app_id, now - timedelta(hours=1), now + timedelta(minutes=1), "hour")
    by_status = r["totals"]["byStatus"]
    assert r["totals"]["total"] == 4
    assert by_status["VERIFIED"] == 1 and by_status["FAILED"] == 1
    assert by_status["READ"] == 2  # the sandbox simulates delivered, then read
    assert r["deliveryRate"] == 1.0  # 3 sent (the failure never was), all 3 delivered
    assert r["verificationRate"] == 0.25
    assert r["medianSecondsToVerify"] is not None and r["medianSecondsToVerify"] >= 0
    assert r["topCountries"][0] == {"country": "TR", "count": 3}


def test_top_recipients_counts_resends_as_sends(app, api_key):
    other = make_key(app, "other")
    add_otps(app, api_key.app_id,
             {"created_at": at(0, 1), "recipient": "+905551110001", "generation": 3},
             {"created_at": at(0, 2), "recipient": "+905551110001"},
             {"created_at": at(0, 3), "recipient": "+905551110002"},
             {"created_at": at(0, 4), "recipient": "+905551110002"},
             {"created_at": at(0, 5), "recipient": "+905551110003"},
             {"created_at": at(-1), "recipient": "+905551110003", "generation": 4})  # before `since`
    add_otps(app, other.app_id, *[{"created_at": at(0, 1), "recipient": "+905551110009"}] * 9)
    with app.app_context():
        top = top_recipients(api_key.app_id, DAY)
        assert top == [{"recipient": "+905551110001", "sends": 4, "otps": 2},
                       {"recipient": "+905551110002", "sends": 2, "otps": 2},
                       {"recipient": "+905551110003", "sends": 1, "otps": 1}]
        assert top_recipients(api_key.app_id, DAY, limit=1) == top[:1]
