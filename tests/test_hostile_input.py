"""Rule 3: nothing a client can send gets a 500; every /v1 error is the JSON envelope."""

from __future__ import annotations

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
