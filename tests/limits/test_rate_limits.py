"""SPEC §8: limits live in Redis, answer 429 RATE_LIMITED with Retry-After and RateLimit-* headers."""

from __future__ import annotations

from tests.helpers import make_key

SEND = "/v1/otp/send"


def test_sixth_send_to_one_number_within_15_minutes_is_rate_limited(client, api_key):
    for i in range(5):
        r = client.post(SEND, headers=api_key.headers, json={"recipient": "+905551112233", "code": f"12{i}456"})
        assert r.status_code == 201, r.json
    r = client.post(SEND, headers=api_key.headers, json={"recipient": "+905551112233"})
    assert r.status_code == 429
    assert r.json["error"]["code"] == "RATE_LIMITED"
    assert r.json["error"]["details"]["limit"] == "5 per 15 minute"
    assert 1 <= int(r.headers["Retry-After"]) <= 15 * 60


def test_refused_send_creates_no_otp(client, api_key):
    for _ in range(5):
        client.post(SEND, headers=api_key.headers, json={"recipient": "+905551112244"})
    client.post(SEND, headers=api_key.headers, json={"recipient": "+905551112244"})
    r = client.get("/v1/otp", headers=api_key.headers, query_string={"recipient": "+905551112244", "limit": 100})
    assert len(r.json["data"]) == 5


def test_recipient_limit_is_per_app(app, client, api_key):
    other = make_key(app, "other")
    for _ in range(5):
        assert client.post(SEND, headers=api_key.headers, json={"recipient": "+905551112255"}).status_code == 201
    r = client.post(SEND, headers=other.headers, json={"recipient": "+905551112255"})
    assert r.status_code == 201


def test_recipient_limit_comes_from_settings(make_app, app):
    tight = make_app(RECIPIENT_RATE_LIMIT="2/hour")
    key = make_key(tight)
    c = tight.test_client()
    assert c.post(SEND, headers=key.headers, json={"recipient": "+905551112266"}).status_code == 201
    assert c.post(SEND, headers=key.headers, json={"recipient": "+905551112266"}).status_code == 201
    r = c.post(SEND, headers=key.headers, json={"recipient": "+905551112266"})
    assert r.status_code == 429 and r.json["error"]["details"]["limit"] == "2 per 1 hour"


def test_app_daily_send_cap_can_be_set_per_app(app, client):
    key = make_key(app, "capped", daily_send_cap=3)
    for i in range(3):
        r = client.post(SEND, headers=key.headers, json={"recipient": f"+90555111300{i}"})
        assert r.status_code == 201
    r = client.post(SEND, headers=key.headers, json={"recipient": "+905551113009"})
    assert r.status_code == 429
    assert r.json["error"]["details"]["limit"] == "3 per 1 day"


def test_api_request_limit_per_key_answers_with_headers(app, client):
    key = make_key(app, "chatty", api_rate_limit="3/minute")
    for _ in range(3):
        r = client.get("/v1/templates", headers=key.headers)
        assert r.status_code == 200
        assert "RateLimit-Limit" in r.headers and "RateLimit-Remaining" in r.headers
    r = client.get("/v1/templates", headers=key.headers)
    assert r.status_code == 429
    assert r.json["error"]["code"] == "RATE_LIMITED"
    assert r.json["error"]["details"]["limit"] == "3 per 1 minute"
    assert int(r.headers["Retry-After"]) >= 1
    assert r.headers["RateLimit-Remaining"] == "0"


def test_api_request_limit_is_per_key(app, client):
    chatty = make_key(app, "chatty", api_rate_limit="2/minute")
    quiet = make_key(app, "quiet", api_rate_limit="2/minute")
    for _ in range(2):
        client.get("/v1/templates", headers=chatty.headers)
    assert client.get("/v1/templates", headers=chatty.headers).status_code == 429
    assert client.get("/v1/templates", headers=quiet.headers).status_code == 200


def test_global_api_limit_comes_from_settings(make_app, app):
    limited = make_app(API_RATE_LIMIT="2/minute")
    key = make_key(limited)
    c = limited.test_client()
    assert [c.get("/v1/templates", headers=key.headers).status_code for _ in range(3)] == [200, 200, 429]
