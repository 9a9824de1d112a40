"""A key sees only its own app's OTPs (SPEC §2): another app's id is 404 OTP_NOT_FOUND."""

from __future__ import annotations

import pytest

from tests.helpers import make_key

from .support import error_of, sent, show


@pytest.fixture
def foreign(app, client, api_key):
    """(OTP of the default app, a key of another app)."""
    return sent(client, api_key, code="1234"), make_key(app, "other")


@pytest.mark.parametrize(("method", "suffix", "body"), [
    ("get", "", None),
    ("post", "/verify", {"code": "1234"}),
    ("post", "/resend", None),
    ("post", "/cancel", None),
    ("get", "/attempts", None),
])
def test_other_apps_key_gets_otp_not_found(client, foreign, method, suffix, body):
    otp, other = foreign
    response = getattr(client, method)(f"/v1/otp/{otp['id']}{suffix}", headers=other.headers, json=body)
    error_of(response, 404, "OTP_NOT_FOUND")


def test_other_apps_calls_change_nothing(client, api_key, foreign):
    otp, other = foreign
    client.post(f"/v1/otp/{otp['id']}/verify", headers=other.headers, json={"code": "0000"})
    client.post(f"/v1/otp/{otp['id']}/cancel", headers=other.headers)
    detail = show(client, api_key, otp["id"])
    assert detail["status"] == "QUEUED"
    assert detail["attempts"] == 0
    assert client.get(f"/v1/otp/{otp['id']}/attempts", headers=api_key.headers).get_json()["data"] == []


def test_other_apps_list_does_not_show_the_otp(client, api_key, foreign):
    otp, other = foreign
    theirs = client.get("/v1/otp", headers=other.headers)
    assert theirs.status_code == 200
    assert theirs.get_json()["data"] == []
    assert [o["id"] for o in client.get("/v1/otp", headers=api_key.headers).get_json()["data"]] == [otp["id"]]


def test_other_apps_list_filtered_by_reference_does_not_show_the_otp(client, api_key, app):
    sent(client, api_key, reference="order-9")
    other = make_key(app, "other")
    response = client.get("/v1/otp", headers=other.headers, query_string={"reference": "order-9"})
    assert response.get_json()["data"] == []
