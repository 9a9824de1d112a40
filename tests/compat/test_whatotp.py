"""/compat/whatotp speaks WhatOTP's API (SPEC §9) over the same service as /v1.

Calls are made as WhatOTP documents them: `Authorization: Bearer`, `POST /v1/otp/send {to,
channel, length}` -> 200 `session_id`, `POST /v1/otp/verify {code, session_id}`,
`POST /v1/messages/send {phone_number, template_id, variables, expires_in_seconds}` -> 202.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import pytest
from sqlalchemy import select

from tests.api.support import error_of, set_key, set_otp, ts
from tests.helpers import in_threads, make_key
from wpotp.extensions import db
from wpotp.models import Template
from wpotp.util import utcnow

BASE = "/compat/whatotp"
TO = "+905551112233"
ORDER = {"1": "A-1001", "2": "on its way"}


def send(client, key, **body):
    body = {"to": TO, "channel": "whatsapp", **body}
    return client.post(f"{BASE}/v1/otp/send", headers=key.headers, json=body)


def sent(client, key, **body) -> str:
    """Send, insist on WhatOTP's 200, and return the session_id."""
    r = send(client, key, **body)
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.json["session_id"]


def verify(client, key, session_id: str, code: str):
    return client.post(f"{BASE}/v1/otp/verify", headers=key.headers, json={"code": code, "session_id": session_id})


def code_of(outbox, session_id: str) -> str:
    [entry] = [e for e in outbox() if e.get("otpId") == session_id]
    return entry["code"]


def wrong(code: str) -> str:
    return "0" * len(code) if code != "0" * len(code) else "1" * len(code)


def native(client, key, session_id: str) -> dict:
    r = client.get(f"/v1/otp/{session_id}", headers=key.headers)
    assert r.status_code == 200
    return r.json


def order_template(app) -> str:
    with app.app_context():
        return db.session.scalars(select(Template.id).where(Template.name == "wpotp_order_update",
                                                           Template.language == "en")).one()


def send_message(client, key, app, **body):
    body = {"phone_number": TO, "template_id": order_template(app), "variables": ORDER, **body}
    return client.post(f"{BASE}/v1/messages/send", headers=key.headers, json=body)


# --- send and verify ------------------------------------------------------------------------------

def test_send_answers_200_with_a_session_id_and_the_code_verifies(client, api_key, run_worker, outbox):
    r = send(client, api_key)
    assert r.status_code == 200
    session_id = r.json["session_id"]
    assert session_id.startswith("otp_")
    assert r.json["status"] == "queued" and r.json["to"] == TO and r.json["channel"] == "whatsapp"
    assert ts(r.json["expires_at"])
    run_worker()
    code = code_of(outbox, session_id)
    assert len(code) == 6 and code.isdigit()  # the app's default length

    r = verify(client, api_key, session_id, code)
    assert r.status_code == 200
    assert r.json["verified"] is True and r.json["session_id"] == session_id and r.json["status"] == "verified"
    assert native(client, api_key, session_id)["status"] == "VERIFIED"


@pytest.mark.parametrize("length", [4, 8])
def test_length_sets_the_number_of_digits(client, api_key, run_worker, outbox, length):
    session_id = sent(client, api_key, length=length)
    run_worker()
    code = code_of(outbox, session_id)
    assert len(code) == length and code.isdigit()
    assert verify(client, api_key, session_id, code).status_code == 200


def test_length_defaults_to_the_apps_length(app, client, run_worker, outbox):
    key = make_key(app, "seven", otp_length=7)
    session_id = sent(client, key)
    run_worker()
    assert len(code_of(outbox, session_id)) == 7


@pytest.mark.parametrize("channel", ["sms", "WhatsApp", "email", "", None, 1])
def test_a_channel_other_than_whatsapp_is_a_400_naming_channel(client, api_key, channel):
    err = error_of(send(client, api_key, channel=channel), 400, "VALIDATION_ERROR")
    assert set(err["details"]["fields"]) == {"channel"}
    assert "whatsapp" in err["details"]["fields"]["channel"]
    assert client.get("/v1/otp", headers=api_key.headers).json["data"] == []


def test_a_missing_channel_is_a_400(client, api_key):
    r = client.post(f"{BASE}/v1/otp/send", headers=api_key.headers, json={"to": TO})
    assert "channel" in error_of(r, 400, "VALIDATION_ERROR")["details"]["fields"]


@pytest.mark.parametrize("length", [3, 9, 0, "6", True, 6.5])
def test_a_length_outside_4_to_8_is_a_400(client, api_key, length):
    err = error_of(send(client, api_key, length=length), 400, "VALIDATION_ERROR")
    assert set(err["details"]["fields"]) == {"length"}


@pytest.mark.parametrize("to", ["905551112233", "+90555", "+999999999999", "05551112233", "+90 555 111 22 33"])
def test_a_recipient_that_is_not_e164_is_invalid_phone(client, api_key, to):
    error_of(send(client, api_key, to=to), 400, "INVALID_PHONE")


def test_unknown_fields_and_non_json_bodies_are_400(client, api_key):
    err = error_of(send(client, api_key, template="x"), 400, "VALIDATION_ERROR")
    assert set(err["details"]["fields"]) == {"template"}
    r = client.post(f"{BASE}/v1/otp/send", headers=api_key.headers, data="to=+905551112233",
                    content_type="application/x-www-form-urlencoded")
    error_of(r, 400, "VALIDATION_ERROR")


# --- auth and isolation ---------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wpotp_test_unknownunknownunknownunknown12"},
                                     {"Authorization": "Bearer"}, {"Authorization": "Basic Zm9vOmJhcg=="}])
def test_a_missing_or_unknown_bearer_key_is_401(client, headers):
    r = client.post(f"{BASE}/v1/otp/send", headers=headers, json={"to": TO, "channel": "whatsapp"})
    error_of(r, 401, "unauthorized")


def test_a_revoked_key_is_401(app, client, api_key):
    set_key(app, api_key.key_id, revoked_at=utcnow())
    error_of(send(client, api_key), 401, "unauthorized")


def test_another_apps_key_cannot_verify_the_session(app, client, api_key, run_worker, outbox):
    session_id = sent(client, api_key)
    run_worker()
    code = code_of(outbox, session_id)
    other = make_key(app, "other")
    error_of(verify(client, other, session_id, code), 404, "OTP_NOT_FOUND")
    assert native(client, api_key, session_id)["attempts"] == 0
    assert verify(client, api_key, session_id, code).status_code == 200


# --- the native guarantees hold through the dialect -----------------------------------------------

def test_wrong_codes_spend_the_budget_then_too_many_attempts_even_with_the_right_code(client, api_key, run_worker,
                                                                                      outbox):
    session_id = sent(client, api_key)
    run_worker()
    code = code_of(outbox, session_id)
    remaining = [error_of(verify(client, api_key, session_id, wrong(code)), 400, "INVALID_CODE")["details"]
                 ["attemptsRemaining"] for _ in range(5)]
    assert remaining == [4, 3, 2, 1, 0]
    error_of(verify(client, api_key, session_id, code), 429, "TOO_MANY_ATTEMPTS")
    assert native(client, api_key, session_id)["status"] != "VERIFIED"


def test_a_code_verifies_once(client, api_key, run_worker, outbox):
    session_id = sent(client, api_key)
    run_worker()
    code = code_of(outbox, session_id)
    assert verify(client, api_key, session_id, code).status_code == 200
    error_of(verify(client, api_key, session_id, code), 409, "OTP_ALREADY_VERIFIED")


def test_parallel_right_codes_verify_exactly_once(app, client, api_key, run_worker, outbox):
    session_id = sent(client, api_key)
    run_worker()
    code = code_of(outbox, session_id)
    answers = in_threads(20, lambda _i: verify(app.test_client(), api_key, session_id, code))
    outcomes = Counter(a.status_code for a in answers)
    assert outcomes == {200: 1, 409: 19}, outcomes


def test_an_expired_session_is_otp_expired(app, client, api_key, run_worker, outbox):
    session_id = sent(client, api_key)
    run_worker()
    set_otp(app, session_id, expires_at=datetime(2000, 1, 1))
    error_of(verify(client, api_key, session_id, code_of(outbox, session_id)), 400, "OTP_EXPIRED")


def test_an_unknown_session_is_otp_not_found(client, api_key):
    error_of(verify(client, api_key, "otp_doesnotexist", "123456"), 404, "OTP_NOT_FOUND")
    error_of(verify(client, api_key, "x' OR 1=1 --", "123456"), 404, "OTP_NOT_FOUND")


def test_neither_the_code_nor_the_key_appears_in_any_answer(client, api_key, run_worker, outbox):
    r = send(client, api_key)
    answers = [r]
    session_id = r.json["session_id"]
    run_worker()
    code = code_of(outbox, session_id)
    answers += [verify(client, api_key, session_id, wrong(code)), verify(client, api_key, session_id, code),
                verify(client, api_key, session_id, code)]
    for answer in answers:
        text = answer.get_data(as_text=True) + str(answer.headers)
        assert code not in text and api_key.secret not in text


# --- limits ---------------------------------------------------------------------------------------

def test_the_recipient_limit_answers_429_with_retry_after(make_app, app):
    tight = make_app(RECIPIENT_RATE_LIMIT="2/hour")
    key = make_key(tight)
    client = tight.test_client()
    sent(client, key)
    sent(client, key)
    r = send(client, key)
    err = error_of(r, 429, "RATE_LIMITED")
    assert err["details"]["limit"] == "2 per 1 hour"
    assert 1 <= int(r.headers["Retry-After"]) <= 3601


def test_120_requests_a_minute_per_key_then_429_with_retry_after(make_app, app):
    documented = make_app(API_RATE_LIMIT="120/minute")
    key = make_key(documented)
    client = documented.test_client()
    answers = [verify(client, key, "otp_doesnotexist", "123456") for _ in range(120)]
    assert {a.status_code for a in answers} == {404}
    assert answers[-1].headers["RateLimit-Limit"] == "120" and answers[-1].headers["RateLimit-Remaining"] == "0"
    r = verify(client, key, "otp_doesnotexist", "123456")
    err = error_of(r, 429, "RATE_LIMITED")
    assert 1 <= int(r.headers["Retry-After"]) <= 61  # the rest of the window, rounded up
    assert err["details"]["limit"] == "120 per 1 minute"


def test_the_request_budget_is_shared_with_v1(app, client):
    key = make_key(app, "chatty", api_rate_limit="3/minute")
    assert client.get("/v1/templates", headers=key.headers).status_code == 200
    assert client.get("/v1/templates", headers=key.headers).status_code == 200
    assert send(client, key).status_code == 200
    r = send(client, key)
    error_of(r, 429, "RATE_LIMITED")
    assert int(r.headers["Retry-After"]) >= 1


# --- template messages ----------------------------------------------------------------------------

def test_messages_send_answers_202_queued_and_the_worker_sends_it(app, client, api_key, run_worker, outbox):
    r = send_message(client, api_key, app)
    assert r.status_code == 202
    assert r.json["message_id"].startswith("msg_") and r.json["status"] == "queued"
    run_worker()
    [entry] = outbox(TO)
    assert entry["messageId"] == r.json["message_id"] and entry["text"] == "Your order A-1001 is on its way."
    shown = client.get(f"/v1/messages/{r.json['message_id']}", headers=api_key.headers).json
    assert shown["status"] == "READ"


@pytest.mark.parametrize(("extra", "seconds"), [({}, 300), ({"expires_in_seconds": 600}, 600)])
def test_messages_expire_after_expires_in_seconds_default_300(app, client, api_key, extra, seconds):
    r = send_message(client, api_key, app, **extra)
    shown = client.get(f"/v1/messages/{r.json['message_id']}", headers=api_key.headers).json
    assert (ts(shown["expiresAt"]) - ts(shown["createdAt"])).total_seconds() == seconds


def test_messages_send_errors(app, client, api_key):
    error_of(send_message(client, api_key, app, template_id="tpl_unknown"), 404, "TEMPLATE_NOT_FOUND")
    error_of(send_message(client, api_key, app, phone_number="905551112233"), 400, "INVALID_PHONE")
    err = error_of(send_message(client, api_key, app, variables={"1": "A-1001"}), 400, "VALIDATION_ERROR")
    assert err["details"]["fields"] == {"variables.2": "missing"}
    err = error_of(send_message(client, api_key, app, expires_in_seconds=10), 400, "VALIDATION_ERROR")
    assert set(err["details"]["fields"]) == {"expires_in_seconds"}
    r = client.post(f"{BASE}/v1/messages/send", json={"phone_number": TO, "template_id": order_template(app)})
    error_of(r, 401, "unauthorized")
