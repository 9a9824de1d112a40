"""Rule 3: nothing a client can send gets a 500; every /v1 error is the JSON envelope."""

from __future__ import annotations

import base64
import json

import pytest

BODIES = [
    b"", b"null", b"[]", b"42", b'"str"', b"{", b"\xff\xfe", b"[" * 5000 + b"]" * 5000,
    json.dumps({"recipient": "+905551112233", "reference": "a\u0000b"}).encode(),
    json.dumps({"recipient": "+905551112233", "templateId": "\u0000"}).encode(),
    json.dumps({"recipient": "+90555\u0000"}).encode(),
    json.dumps({"recipient": ["+905551112233"]}).encode(),
    json.dumps({"recipient": {"$ne": 1}}).encode(),
    json.dumps({"recipient": "+905551112233", "ttl": 1e400}).encode().replace(b"Infinity", b"1e400"),
    json.dumps({"recipient": "+905551112233", "ttl": True}).encode(),
    json.dumps({"recipient": "+905551112233", "length": -1}).encode(),
    json.dumps({"recipient": "+905551112233", "code": "１２３４"}).encode(),  # full-width digits
    json.dumps({"recipient": "+905551112233", "language": "en'; DROP TABLE otps;--"}).encode(),
    json.dumps({"recipient": "x" * 10000}).encode(),
    b'{"recipient": "+905551112233", "ttl": ' + b"9" * 5000 + b"}",
]


@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
def test_hostile_send_bodies_get_a_4xx_envelope(client, api_key, body):
    r = client.post("/v1/otp/send", headers=api_key.headers, data=body, content_type="application/json")
    assert 400 <= r.status_code < 500, (r.status_code, r.data[:200])
    assert set(r.json) == {"error"} and r.json["error"]["code"]


@pytest.mark.parametrize("path", [
    "/v1/otp/%00", "/v1/otp/%00/verify", "/v1/otp/" + "a" * 5000, "/v1/otp/otp_' OR 1=1 --",
    "/v1/otp/../templates", "/v1/otp/otp_%F0%9F%92%A5/attempts",
])
def test_hostile_paths_get_a_4xx_envelope(client, api_key, path):
    for method in ("get", "post"):
        r = getattr(client, method)(path, headers=api_key.headers, json={"code": "1234"})
        assert 400 <= r.status_code < 500, (method, path, r.status_code)
        assert "error" in r.json


@pytest.mark.parametrize("query", [
    {"reference": "x\x00"}, {"limit": "1e9"}, {"limit": ["1", "2"]}, {"from": "\x00"}, {"to": "2026-99-99"},
    {"cursor": "%%%"}, {"cursor": "YQ"}, {"recipient": "+9\x00"}, {"status": "queued"}, {"nope": "1"},
])
def test_hostile_list_queries_get_a_400_envelope(client, api_key, query):
    r = client.get("/v1/otp", headers=api_key.headers, query_string=query)
    assert r.status_code == 400, (query, r.status_code, r.data[:200])
    assert r.json["error"]["code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize("header", [
    {"Authorization": "Bearer"}, {"Authorization": "Bearer \x01"}, {"Authorization": "Basic Zm9vOmJhcg=="},
    {"Authorization": "Bearer wpotp_test_" + "a" * 5000}, {"X-API-Key": "wpotp_live_\u00e9"},
])
def test_hostile_credentials_get_401(client, header):
    r = client.get("/v1/templates", headers=header)
    assert r.status_code == 401 and r.json["error"]["code"] == "unauthorized"


# --- timestamps whose UTC conversion leaves the calendar (issue 14, defect 5) ------------------------

def _cursor(stamp: str) -> str:
    """A cursor as the API encodes one (wpotp.otp.queries.encode_cursor), around `stamp`."""
    return base64.urlsafe_b64encode(f"{stamp}|otp_abc".encode()).decode().rstrip("=")


OVERFLOWING = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]
TIMES = [{name: value} for name in ("from", "to") for value in OVERFLOWING]
PAGED = TIMES + [{"cursor": _cursor(value)} for value in OVERFLOWING]
# Valid timestamps whose report range (7 buckets back by default, whole buckets) leaves the calendar.
REPORT_RANGES = [{"to": "0001-01-02T00:00:00Z"}, {"to": "0001-01-01T05:00:00", "interval": "hour"},
                 {"from": "9999-12-31T20:00:00", "to": "9999-12-31T23:59:59.999999", "interval": "hour"}]
TIMED = ([("/v1/otp", q) for q in PAGED] + [("/v1/logs", q) for q in PAGED]
         + [("/v1/reports", q) for q in TIMES + REPORT_RANGES])
OTPAPI = "/compat/otpapi/otp"
TIMED_OTPAPI = ([(f"{OTPAPI}/list", q) for q in PAGED] + [(f"{OTPAPI}/logs", q) for q in PAGED]
                + [(f"{OTPAPI}/reports", q) for q in TIMES + REPORT_RANGES])


def _named_field(response, query: dict) -> None:
    assert response.status_code == 400, (query, response.status_code, response.data[:300])
    assert set(response.json) == {"error"}
    error = response.json["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert set(error["details"]["fields"]) & (set(query) - {"interval"}), error


@pytest.mark.parametrize(("path", "query"), TIMED, ids=[f"{p}?{q}" for p, q in TIMED])
def test_timestamps_out_of_the_calendar_are_a_400_naming_the_field(client, api_key, path, query):
    _named_field(client.get(path, headers=api_key.headers, query_string=query), query)


@pytest.mark.parametrize(("path", "query"), TIMED_OTPAPI, ids=[f"{p}?{q}" for p, q in TIMED_OTPAPI])
def test_timestamps_out_of_the_calendar_are_a_400_on_the_generic_api(client, api_key, path, query):
    headers = {"X-API-Key": api_key.key_id, "X-API-Secret": api_key.secret}
    _named_field(client.get(path, headers=headers, query_string={"appid": api_key.app_id, **query}), query)


def test_first_and_last_days_of_the_calendar_still_answer_in_the_api_format(client, api_key):
    r = client.get("/v1/reports", headers=api_key.headers, query_string={"from": "0001-01-01", "to": "0001-01-03"})
    assert r.status_code == 200, r.data[:300]
    assert [b["start"] for b in r.json["buckets"]] == ["0001-01-01T00:00:00.000Z", "0001-01-02T00:00:00.000Z"]
