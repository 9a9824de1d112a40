"""GET /v1/rate-limits and rate_limit_status: the counters the limits are enforced with, read
without being consumed."""

from __future__ import annotations

from datetime import timedelta

from tests.api.support import error_of, ts
from tests.helpers import make_key
from wpotp.extensions import db
from wpotp.models import App
from wpotp.otp.codes import hash_api_key
from wpotp.reports.limits import rate_limit_status
from wpotp.util import utcnow

URL = "/v1/rate-limits"
NUMBER = "+905554440001"


def limits_of(client, key, **query) -> dict[tuple[str, str], dict]:
    r = client.get(URL, headers=key.headers, query_string=query)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert set(r.json) == {"data"}
    out = {}
    for item in r.json["data"]:
        assert set(item) == {"name", "limit", "window", "remaining", "resetAt"}, item
        ts(item["resetAt"])
        out[(item["name"], item["limit"])] = item
    return out


def send(client, key, recipient=NUMBER):
    return client.post("/v1/otp/send", headers=key.headers, json={"recipient": recipient})


def test_without_a_recipient_the_api_limit_and_the_daily_cap(app, client):
    key = make_key(app, "limited", api_rate_limit="30/minute", daily_send_cap=500)
    got = limits_of(client, key)
    assert set(got) == {("api", "30 per 1 minute"), ("app_daily", "500 per 1 day")}
    api = got[("api", "30 per 1 minute")]
    assert api["window"] == 60 and api["remaining"] == 29  # this very request counted
    daily = got[("app_daily", "500 per 1 day")]
    assert daily["window"] == 86400 and daily["remaining"] == 500


def test_api_remaining_drops_by_the_requests_made(app, client):
    key = make_key(app, "limited", api_rate_limit="30/minute")
    before = limits_of(client, key)[("api", "30 per 1 minute")]["remaining"]
    for _ in range(5):
        assert client.get("/v1/templates", headers=key.headers).status_code == 200
    r = client.get(URL, headers=key.headers)
    after = next(i for i in r.json["data"] if i["name"] == "api")
    assert before - after["remaining"] == 5 + 1  # five calls, and this one
    # The same counter Flask-Limiter answers with in its headers.
    assert after["remaining"] == int(r.headers["RateLimit-Remaining"])
    assert ts(after["resetAt"]) > utcnow() and ts(after["resetAt"]) <= utcnow() + timedelta(seconds=61)


def test_api_counter_is_per_key_and_ip(app, client):
    key = make_key(app, "limited", api_rate_limit="30/minute")
    other = make_key(app, "limited")
    for _ in range(3):
        client.get("/v1/templates", headers=key.headers)
    assert limits_of(client, key)[("api", "30 per 1 minute")]["remaining"] == 30 - 4
    assert limits_of(client, other)[("api", "30 per 1 minute")]["remaining"] == 29
    elsewhere = client.get(URL, headers=key.headers, environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert next(i for i in elsewhere.json["data"] if i["name"] == "api")["remaining"] == 29


def test_the_api_limit_follows_the_setting(make_app, app):
    tight = make_app(API_RATE_LIMIT="7/minute;100/hour")
    key = make_key(tight)
    got = limits_of(tight.test_client(), key)
    assert got[("api", "7 per 1 minute")]["remaining"] == 6
    assert got[("api", "100 per 1 hour")]["remaining"] == 99
    assert [i["name"] for i in tight.test_client().get(URL, headers=key.headers).json["data"]] == \
        ["api", "api", "app_daily"]


def test_recipient_remaining_drops_after_sends(app, client, api_key):
    got = limits_of(client, api_key, recipient=NUMBER)
    assert got[("recipient", "5 per 15 minute")]["remaining"] == 5
    assert got[("recipient", "10 per 1 day")]["remaining"] == 10
    daily_before = got[("app_daily", "10000 per 1 day")]["remaining"]
    for _ in range(2):
        assert send(client, api_key).status_code == 201
    assert send(client, api_key, "+905554440002").status_code == 201

    got = limits_of(client, api_key, recipient=NUMBER)
    short, day = got[("recipient", "5 per 15 minute")], got[("recipient", "10 per 1 day")]
    assert (short["remaining"], short["window"]) == (3, 900)
    assert (day["remaining"], day["window"]) == (8, 86400)
    assert got[("app_daily", "10000 per 1 day")]["remaining"] == daily_before - 3
    now = utcnow()
    assert now < ts(short["resetAt"]) <= now + timedelta(seconds=901)
    assert now < ts(day["resetAt"]) <= now + timedelta(days=1, seconds=1)
    # Reading does not consume: asking again changes nothing.
    again = limits_of(client, api_key, recipient=NUMBER)
    assert again[("recipient", "5 per 15 minute")]["remaining"] == 3


def test_the_sixth_send_to_one_number_leaves_nothing(app, client, api_key):
    for _ in range(5):
        assert send(client, api_key).status_code == 201
    assert send(client, api_key).status_code == 429
    got = limits_of(client, api_key, recipient=NUMBER)
    short = got[("recipient", "5 per 15 minute")]
    assert short["remaining"] == 0
    assert utcnow() < ts(short["resetAt"]) <= utcnow() + timedelta(minutes=15)
    assert got[("recipient", "10 per 1 day")]["remaining"] == 5  # the refused send was not counted
    assert limits_of(client, api_key, recipient="+905554440009")[("recipient", "5 per 15 minute")]["remaining"] == 5


def test_recipient_counters_are_per_app(app, client, api_key):
    other = make_key(app, "other")
    send(client, api_key)
    assert limits_of(client, other, recipient=NUMBER)[("recipient", "5 per 15 minute")]["remaining"] == 5


def test_the_recipient_is_normalised_and_validated(app, client, api_key):
    send(client, api_key)
    assert limits_of(client, api_key, recipient=f" {NUMBER}")[("recipient", "5 per 15 minute")]["remaining"] == 4
    for bad in ("12345", "+90555", "not a number", "+99999999999"):
        err = error_of(client.get(URL, headers=api_key.headers, query_string={"recipient": bad}), 400,
                       "INVALID_PHONE")
        assert "recipient" in err["details"]["fields"]
    error_of(client.get(URL, headers=api_key.headers, query_string={"who": "x"}), 400, "VALIDATION_ERROR")


def test_called_directly_as_the_console_does(app, client, api_key):
    send(client, api_key)
    with app.app_context():
        owner = db.session.get(App, api_key.app_id)
        status = rate_limit_status(owner, NUMBER)
        assert [s["name"] for s in status] == ["recipient", "recipient", "app_daily"]
        assert status[0]["remaining"] == 4
        assert [s["name"] for s in rate_limit_status(owner)] == ["app_daily"]
        with_api = rate_limit_status(owner, None, hash_api_key(api_key.secret), "127.0.0.1")
        assert with_api[0]["name"] == "api" and with_api[0]["remaining"] == 100000 - 1  # the send above
