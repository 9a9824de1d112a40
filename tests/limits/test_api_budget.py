"""SPEC §8, the shared API budget as the request gate enforces it (wpotp/api/ratelimit.py): exact
under concurrency, RateLimit-* from the window it counted, and one Redis round trip per request."""

from __future__ import annotations

import threading

import pytest
import redis
from redis.connection import Connection
from sqlalchemy import update

from tests.api.support import error_of, number, send, sent
from tests.conftest import TEST_REDIS_URL
from tests.helpers import in_threads, make_key
from wpotp.extensions import db
from wpotp.models import App
from wpotp.otp.codes import hash_api_key
from wpotp.reports.limits import rate_limit_status

LIST = "/v1/templates"


def test_parallel_requests_spend_the_budget_exactly(app):
    key = make_key(app, "chatty", api_rate_limit="5/minute")
    statuses = in_threads(12, lambda _i: app.test_client().get(LIST, headers=key.headers).status_code)
    assert sorted(statuses) == [200] * 5 + [429] * 7


def test_headers_count_down_in_the_window_the_request_was_counted_in(app, client):
    key = make_key(app, "chatty", api_rate_limit="3/minute")
    for left in (2, 1, 0):
        r = client.get(LIST, headers=key.headers)
        assert r.status_code == 200
        assert (r.headers["RateLimit-Limit"], r.headers["RateLimit-Remaining"]) == ("3", str(left))
        assert 0 <= int(r.headers["RateLimit-Reset"]) <= 61
    r = client.get(LIST, headers=key.headers)
    error_of(r, 429, "RATE_LIMITED")
    assert (r.headers["RateLimit-Limit"], r.headers["RateLimit-Remaining"]) == ("3", "0")
    assert 1 <= int(r.headers["Retry-After"]) <= 62
    assert r.json["error"]["details"] == {"limit": "3 per 1 minute", "retryAfter": int(r.headers["Retry-After"])}


def test_a_request_refused_by_the_smaller_window_is_not_counted_in_the_larger(app, client):
    key = make_key(app, "chatty", api_rate_limit="2/minute;10/hour")
    assert [client.get(LIST, headers=key.headers).status_code for _ in range(3)] == [200, 200, 429]
    with app.app_context():
        owner = db.session.get(App, key.app_id)
        api = {s["limit"]: s["remaining"] for s in rate_limit_status(owner, None, hash_api_key(key.secret), "127.0.0.1")
               if s["name"] == "api"}
    assert api == {"2 per 1 minute": 0, "10 per 1 hour": 8}


def test_requests_without_a_key_share_one_budget_per_ip(make_app, app):
    tight = make_app(API_RATE_LIMIT="2/minute")
    c = tight.test_client()
    garbage = {"X-API-Key": "not-a-key"}
    assert [c.get(LIST, headers=h).status_code for h in ({}, garbage, {})] == [401, 401, 429]
    assert c.get(LIST, environ_base={"REMOTE_ADDR": "198.51.100.9"}).status_code == 401
    unknown = {"Authorization": "Bearer wpotp_live_nosuchkey"}  # a key of its own, even unknown
    assert c.get(LIST, headers=unknown).status_code == 401


def test_an_app_limit_changed_elsewhere_applies_on_the_next_request(app, make_app):
    key = make_key(app, "chatty")
    client = app.test_client()
    assert client.get(LIST, headers=key.headers).headers["RateLimit-Limit"] == "100000"
    with make_app().app_context():  # plain Core: no ORM event, no new epoch; the key's SELECT reads it
        db.session.execute(update(App.__table__).where(App.__table__.c.id == key.app_id)
                           .values(api_rate_limit="50/minute"))
        db.session.commit()
    assert client.get(LIST, headers=key.headers).headers["RateLimit-Limit"] == "50"


# --- Redis round trips ---------------------------------------------------------------------------

@pytest.fixture
def round_trips(monkeypatch):
    """Counts what this thread (the test client's request) sends to Redis, one per packet (a
    pipeline or a script is one); threads a previous test left behind are not counted."""
    counted = []
    real = Connection.send_packed_command
    me = threading.get_ident()

    def counting(self, command, check_health=True):
        if threading.get_ident() == me:
            counted.append(command)
        return real(self, command, check_health)

    monkeypatch.setattr(Connection, "send_packed_command", counting)
    return counted


def _trips_of(round_trips, request) -> int:
    request()  # warm: scripts loaded, connections open
    round_trips.clear()
    request()
    return len(round_trips)


def test_show_verify_and_list_ask_redis_once(app, client, api_key, round_trips):
    created = [sent(client, api_key, recipient=number(i), code="424242")["id"] for i in range(2)]
    assert _trips_of(round_trips, lambda: client.get(f"/v1/otp/{created[0]}", headers=api_key.headers)) == 1
    assert _trips_of(round_trips, lambda: client.get(LIST, headers=api_key.headers)) == 1
    codes = iter(["000000", "424242"])  # a wrong code, then the right one: both asked Redis once
    assert _trips_of(round_trips, lambda: client.post(f"/v1/otp/{created[1]}/verify", headers=api_key.headers,
                                                       json={"code": next(codes)})) == 1


def test_with_its_own_redis_the_limiter_leaves_the_epoch_to_the_cache(make_app, app, round_trips):
    own = TEST_REDIS_URL.replace("127.0.0.1", "localhost")  # the same database, but not known to be
    separate = make_app(RATELIMIT_STORAGE_URI=own)
    key = make_key(separate)
    client = separate.test_client()
    assert send(client, key, recipient=number(1)).status_code == 201
    assert _trips_of(round_trips, lambda: client.get(LIST, headers=key.headers)) == 2  # the budget, the epoch

    with make_app().app_context():  # a bulk change elsewhere: a new epoch, seen on the next request
        db.session.execute(update(App).where(App.id == key.app_id).values(allowed_countries="DE"))
        db.session.commit()
    error_of(send(client, key, recipient=number(2)), 400, "COUNTRY_NOT_ALLOWED")


def test_with_a_storage_other_than_redis_the_budget_holds(make_app):
    in_memory = make_app(RATELIMIT_STORAGE_URI="memory://", API_RATE_LIMIT="2/minute")
    redis.Redis.from_url(TEST_REDIS_URL).flushdb()
    key = make_key(in_memory)
    c = in_memory.test_client()
    answers = [c.get(LIST, headers=key.headers) for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 429]
    assert [r.headers["RateLimit-Remaining"] for r in answers] == ["1", "0", "0"]
