"""GET /v1/reports: the usage report over HTTP, its defaults and its parameter errors."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.api.support import error_of, fields_of
from tests.helpers import make_key
from wpotp.util import iso, utcnow

from .support import add_otps, at

URL = "/v1/reports"


def test_defaults_are_the_last_seven_days_by_day(app, client, api_key):
    now = utcnow()
    add_otps(app, api_key.app_id, {"created_at": now - timedelta(minutes=5), "status": "SENT", "sent_at": now},
             {"created_at": now - timedelta(days=10)})
    r = client.get(URL, headers=api_key.headers)
    assert r.status_code == 200, r.json
    body = r.json
    assert set(body) == {"from", "to", "interval", "buckets", "totals", "deliveryRate", "verificationRate",
                         "medianSecondsToVerify", "topCountries", "byChannel"}
    assert body["interval"] == "day" and len(body["buckets"]) == 7
    today = {iso(t.replace(hour=0, minute=0, second=0, microsecond=0)) for t in (now, utcnow())}
    assert body["buckets"][-1]["start"] in today  # the current day is the last bucket
    assert body["totals"]["total"] == 1 and body["deliveryRate"] == 0.0  # sent, not delivered
    assert body["topCountries"] == [{"country": "TR", "count": 1}]


def test_hour_interval_defaults_to_the_last_24_hours(client, api_key):
    body = client.get(URL, headers=api_key.headers, query_string={"interval": "hour"}).json
    assert body["interval"] == "hour" and len(body["buckets"]) == 24


def test_explicit_range_and_interval(app, client, api_key):
    add_otps(app, api_key.app_id, {"created_at": at(0, 10, 5), "status": "VERIFIED", "verify_after": 12},
             {"created_at": at(0, 11, 5), "status": "FAILED"})
    r = client.get(URL, headers=api_key.headers,
                   query_string={"from": "2026-03-01T10:00:00Z", "to": "2026-03-01T12:00:00.000Z",
                                 "interval": "hour"})
    assert r.status_code == 200, r.json
    assert r.json["from"] == "2026-03-01T10:00:00.000Z" and r.json["to"] == "2026-03-01T12:00:00.000Z"
    assert [b["total"] for b in r.json["buckets"]] == [1, 1]
    assert r.json["medianSecondsToVerify"] == 12.0 and r.json["verificationRate"] == 0.5


def test_offsets_are_converted_to_utc(app, client, api_key):
    add_otps(app, api_key.app_id, {"created_at": at(0, 22)})  # 01:00 on 2 March in Istanbul (+03:00)
    r = client.get(URL, headers=api_key.headers, query_string={"from": "2026-03-02T00:00:00+03:00",
                                                               "to": "2026-03-02T03:00:00+03:00"})
    assert r.status_code == 200 and r.json["from"] == "2026-03-01T21:00:00.000Z"
    assert r.json["totals"]["total"] == 1


def test_only_the_callers_app_is_counted(app, client, api_key):
    other = make_key(app, "other")
    add_otps(app, other.app_id, {"created_at": at(0, 1)})
    q = {"from": "2026-03-01", "to": "2026-03-02"}
    assert client.get(URL, headers=api_key.headers, query_string=q).json["totals"]["total"] == 0
    assert client.get(URL, headers=other.headers, query_string=q).json["totals"]["total"] == 1


@pytest.mark.parametrize(("query", "field"), [
    ({"from": "yesterday"}, "from"),
    ({"to": "2026-13-01"}, "to"),
    ({"interval": "week"}, "interval"),
    ({"interval": ["day", "hour"]}, "interval"),
    ({"from": "2026-03-02", "to": "2026-03-01"}, "to"),
    ({"from": "2026-03-01", "to": "2026-03-01"}, "to"),
    ({"from": "2025-01-01", "to": "2026-03-01"}, "from"),
    ({"from": "2026-03-01", "to": "2026-03-09", "interval": "hour"}, "from"),
    ({"from": "2999-01-01"}, "from"),
    ({"from": "2026-03-01\x00"}, "from"),
    ({"from": "2" * 100}, "from"),
    ({"bucket": "day"}, "bucket"),
])
def test_bad_parameters_are_named(client, api_key, query, field):
    err = error_of(client.get(URL, headers=api_key.headers, query_string=query), 400, "VALIDATION_ERROR")
    assert field in fields_of(err), err


def test_ninety_days_by_day_is_accepted(client, api_key):
    r = client.get(URL, headers=api_key.headers, query_string={"from": "2026-01-01", "to": "2026-04-01"})
    assert r.status_code == 200 and len(r.json["buckets"]) == 90


def test_needs_a_key(client):
    error_of(client.get(URL), 401, "unauthorized")
    error_of(client.get("/v1/rate-limits"), 401, "unauthorized")
