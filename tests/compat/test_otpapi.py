"""/compat/otpapi, the generic OTP API (SPEC §9), called as docs/migrating-otpapi.md shows it:
its three credential styles, its snake_case fields, and the native guarantees (SPEC §4, §8)
holding through it: attempt budget, single use, limits, isolation, no code or key in answers."""

from __future__ import annotations

import base64
import re
from collections import Counter
from datetime import timedelta

import pytest

from tests.api.support import error_of, fields_of, set_key, set_otp, ts
from tests.helpers import Key, in_threads, make_key
from wpotp.providers.sms_sandbox import read_sms_outbox
from wpotp.util import utcnow

BASE = "/compat/otpapi"
RECIPIENT = "+905551112233"
CAMEL = re.compile(r"[a-z][A-Z]")
SUMMARY = {"verification_id", "channel", "status", "recipient", "reference", "template_id", "expires_at",
           "created_at"}


# --- the three credential styles ------------------------------------------------------------------

def pair(key: Key) -> dict:
    return {"X-API-Key": key.key_id, "X-API-Secret": key.secret}


def basic(key: Key) -> dict:
    return {"Authorization": "Basic " + b64(f"{key.key_id}:{key.secret}")}


def bearer_encoded(key: Key) -> dict:
    return {"Authorization": "Bearer " + b64(f"{key.key_id}:{key.secret}")}


def bearer_key(key: Key) -> dict:
    return {"Authorization": f"Bearer {key.secret}"}


def secret_only(key: Key) -> dict:
    return {"X-API-Secret": key.secret}


STYLES = [pair, basic, bearer_encoded, bearer_key, secret_only]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --- calls ------------------------------------------------------------------------------------------

def send(client, key: Key, auth=pair, **body):
    body = {"appid": key.app_id, "recipient": RECIPIENT, "channel": "whatsapp", "from": "YourApp", **body}
    return client.post(f"{BASE}/otp/send", headers=auth(key), json=body)


def sent(client, key: Key, **body) -> dict:
    response = send(client, key, **body)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.json


def verify(client, key: Key, verification_id: str, otp_code, auth=pair, **extra):
    body = {"appid": key.app_id, "otp_code": otp_code, "verification_id": verification_id, **extra}
    return client.post(f"{BASE}/otp/verify", headers=auth(key), json=body)


def get(client, key: Key, route: str, **query):
    query.setdefault("appid", key.app_id)
    return client.get(f"{BASE}/otp/{route}", headers=pair(key), query_string=query)


def ok(response) -> dict:
    assert response.status_code == 200, response.get_data(as_text=True)
    assert_snake(response.json)
    return response.json


def status(client, key: Key, verification_id: str) -> dict:
    return ok(get(client, key, "status", verification_id=verification_id))


def assert_snake(value) -> None:
    """No camelCase key anywhere in an answer."""
    if isinstance(value, dict):
        for name, item in value.items():
            assert not CAMEL.search(name), name
            assert_snake(item)
    elif isinstance(value, list):
        for item in value:
            assert_snake(item)


def code_for(outbox, recipient: str = RECIPIENT) -> str:
    entries = outbox(recipient)
    assert entries, f"no sandbox message to {recipient}"
    return entries[0]["code"]


def otp_count(client, key: Key) -> int:
    return len(ok(get(client, key, "list", limit=100))["data"])


# --- send and verify --------------------------------------------------------------------------------

@pytest.mark.parametrize("auth", STYLES, ids=lambda f: f.__name__)
def test_send_then_verify_through_a_real_worker_in_every_credential_style(client, api_key, run_worker, outbox,
                                                                          auth):
    response = send(client, api_key, auth=auth)
    assert response.status_code == 201, response.json
    body = response.json
    assert set(body) == SUMMARY
    assert body["verification_id"].startswith("otp_")
    assert (body["status"], body["channel"], body["recipient"]) == ("QUEUED", "whatsapp", RECIPIENT)
    assert ts(body["expires_at"]) - ts(body["created_at"]) == timedelta(seconds=300)
    run_worker()
    assert status(client, api_key, body["verification_id"])["status"] == "READ"
    response = verify(client, api_key, body["verification_id"], code_for(outbox), auth=auth)
    assert response.status_code == 200, response.json
    assert response.json["verified"] is True and response.json["status"] == "VERIFIED"
    assert response.json["verification_id"] == body["verification_id"]
    ts(response.json["verified_at"])
    detail = status(client, api_key, body["verification_id"])
    assert detail["status"] == "VERIFIED" and detail["attempts_remaining"] == 5
    assert [e["type"] for e in detail["timeline"]][-1] == "otp.verified"


def test_url_safe_base64_without_padding_is_accepted(client, app):
    key = make_key(app)
    token = base64.urlsafe_b64encode(f"{key.key_id}:{key.secret}".encode()).decode().rstrip("=")
    response = client.post(f"{BASE}/otp/send", headers={"Authorization": f"Bearer {token}"},
                           json={"appid": key.app_id, "recipient": RECIPIENT, "channel": "whatsapp"})
    assert response.status_code == 201, response.json


def test_optional_native_fields_in_snake_case(client, api_key, run_worker, outbox):
    tr = sent(client, api_key, language="tr", length=8, ttl=60, reference="order-1")
    assert ts(tr["expires_at"]) - ts(tr["created_at"]) == timedelta(seconds=60)
    assert tr["reference"] == "order-1"
    run_worker()
    code = code_for(outbox)
    assert len(code) == 8 and code.isdigit()
    entry = outbox(RECIPIENT)[0]
    assert entry["language"] == "tr" and entry["otpId"] == tr["verification_id"]
    again = send(client, api_key, reference="order-1")
    assert again.status_code == 200 and again.json["verification_id"] == tr["verification_id"]
    other = sent(client, api_key, recipient="+905551112234", template_id=tr["template_id"])
    assert other["template_id"] == tr["template_id"]


def test_from_is_accepted_and_changes_nothing_in_the_message(client, api_key, run_worker, outbox):
    sent(client, api_key, **{"from": "Acme Shop"})
    run_worker()
    entry = outbox(RECIPIENT)[0]
    assert "Acme" not in entry["text"] and entry["code"] in entry["text"]


def test_channel_may_be_left_out_and_is_case_insensitive(client, api_key):
    assert send(client, api_key, channel="WhatsApp").status_code == 201
    body = {"appid": api_key.app_id, "recipient": "+905551112234"}
    assert client.post(f"{BASE}/otp/send", headers=pair(api_key), json=body).status_code == 201


@pytest.mark.parametrize("channel", ["voice", "email", "auto"])
def test_other_channels_are_refused_and_nothing_is_created(client, api_key, channel):
    err = error_of(send(client, api_key, channel=channel), 400, "CHANNEL_NOT_SUPPORTED")
    assert "SMS" in err["message"] and err["details"]["supported"] == ["whatsapp", "sms"]
    assert otp_count(client, api_key) == 0


@pytest.mark.parametrize("channel", ["sms", "SMS"])
def test_channel_sms_sends_a_text_over_the_sms_sandbox(app, client, api_key, run_worker, channel):
    answer = send(client, api_key, channel=channel)
    assert answer.status_code == 201, answer.get_json()
    body = answer.get_json()
    assert body["channel"] == "sms"
    run_worker()
    shown = status(client, api_key, body["verification_id"])
    assert (shown["status"], shown["channel"]) == ("DELIVERED", "sms")
    assert {e["channel"] for e in shown["timeline"]} == {"sms"}
    with app.app_context():
        assert [m["otpId"] for m in read_sms_outbox(recipient=RECIPIENT)] == [body["verification_id"]]


@pytest.mark.parametrize("recipient", ["5511999888777", "+1", "+90 555 111 22 33", "+999123456789"])
def test_a_bad_phone_is_invalid_phone(client, api_key, recipient):
    error_of(send(client, api_key, recipient=recipient), 400, "INVALID_PHONE")
    assert otp_count(client, api_key) == 0


@pytest.mark.parametrize(("body", "fields"), [
    ({"templateId": "tpl_x"}, {"templateId"}),  # the native name is not this dialect's
    ({"code": "1234", "nope": 1}, {"code", "nope"}),
    ({"ttl": 30}, {"ttl"}),
    ({"length": "6"}, {"length"}),
    ({"from": 7}, {"from"}),
    ({"appid": None}, {"appid"}),
    ({"recipient": ["+905551112233"]}, {"recipient"}),
])
def test_unknown_and_invalid_send_fields_are_named(client, api_key, body, fields):
    err = error_of(send(client, api_key, **body), 400, "VALIDATION_ERROR")
    assert set(fields_of(err)) == fields
    assert otp_count(client, api_key) == 0


def test_missing_appid_is_a_validation_error(client, api_key):
    response = client.post(f"{BASE}/otp/send", headers=pair(api_key), json={"recipient": RECIPIENT})
    assert set(fields_of(error_of(response, 400, "VALIDATION_ERROR"))) == {"appid"}


def test_verify_fields_are_named(client, api_key):
    otp = sent(client, api_key)
    err = error_of(verify(client, api_key, otp["verification_id"], 123456), 400, "VALIDATION_ERROR")
    assert set(fields_of(err)) == {"otp_code"}
    err = error_of(verify(client, api_key, otp["verification_id"], "123456", code="1"), 400, "VALIDATION_ERROR")
    assert set(fields_of(err)) == {"code"}
    assert status(client, api_key, otp["verification_id"])["attempts"] == 0


# --- credentials and appid --------------------------------------------------------------------------

@pytest.fixture
def keys(app) -> tuple[Key, Key]:
    """Two keys of the default app."""
    return make_key(app), make_key(app)


BAD_CREDENTIALS = {
    "none": lambda a, b: {},
    "key id alone": lambda a, b: {"X-API-Key": a.key_id},
    "secret in the key id header": lambda a, b: {"X-API-Key": a.secret},
    "unknown secret": lambda a, b: {"X-API-Key": a.key_id, "X-API-Secret": "wpotp_test_" + "x" * 32},
    "key id of another key": lambda a, b: {"X-API-Key": b.key_id, "X-API-Secret": a.secret},
    "basic, another key's id": lambda a, b: {"Authorization": "Basic " + b64(f"{b.key_id}:{a.secret}")},
    "basic, wrong secret": lambda a, b: {"Authorization": "Basic " + b64(f"{a.key_id}:wpotp_test_nope")},
    "basic, no colon": lambda a, b: {"Authorization": "Basic " + b64(a.secret)},
    "basic, not base64": lambda a, b: {"Authorization": f"Basic {a.key_id}:{a.secret}"},
    "bearer, another key's id": lambda a, b: {"Authorization": "Bearer " + b64(f"{b.key_id}:{a.secret}")},
    "bearer, garbage": lambda a, b: {"Authorization": "Bearer %%%"},
    "bearer, non-ascii": lambda a, b: {"Authorization": "Bearer wpotp_test_\u00e9"},
    "bearer key, another key's id header": lambda a, b: {"Authorization": f"Bearer {a.secret}", "X-API-Key": b.key_id},
    "huge secret": lambda a, b: {"X-API-Secret": "wpotp_test_" + "a" * 5000},
}


@pytest.mark.parametrize("name", list(BAD_CREDENTIALS))
def test_bad_credentials_are_401_and_create_nothing(client, keys, name):
    a, b = keys
    headers = BAD_CREDENTIALS[name](a, b)
    response = client.post(f"{BASE}/otp/send", headers=headers,
                           json={"appid": a.app_id, "recipient": RECIPIENT, "channel": "whatsapp"})
    error_of(response, 401, "unauthorized")
    error_of(client.get(f"{BASE}/otp/list", headers=headers), 401, "unauthorized")
    assert otp_count(client, a) == 0
    assert a.secret not in response.get_data(as_text=True)


def test_a_jwt_is_refused_with_a_message_saying_so(client, api_key):
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJrZXkifQ.c2lnbmF0dXJl"
    response = client.get(f"{BASE}/otp/list", headers={"Authorization": f"Bearer {jwt}"})
    assert "JWT" in error_of(response, 401, "unauthorized")["message"]


def test_a_revoked_key_is_401(app, client, api_key):
    set_key(app, api_key.key_id, revoked_at=utcnow())
    for auth in STYLES:
        error_of(send(client, api_key, auth=auth), 401, "unauthorized")


def test_appid_of_another_app_is_401_and_changes_nothing(app, client, api_key):
    other = make_key(app, "other")
    otp = sent(client, api_key)
    err = error_of(send(client, api_key, appid=other.app_id), 401, "unauthorized")
    assert set(fields_of(err)) == {"appid"}
    error_of(verify(client, api_key, otp["verification_id"], "000000", appid=other.app_id), 401, "unauthorized")
    error_of(get(client, api_key, "status", appid=other.app_id, verification_id=otp["verification_id"]),
             401, "unauthorized")
    error_of(get(client, api_key, "list", appid="app_unknown"), 401, "unauthorized")
    assert status(client, api_key, otp["verification_id"])["attempts"] == 0
    assert otp_count(client, api_key) == 1


def test_get_routes_take_appid_as_optional(client, api_key):
    otp = sent(client, api_key)
    response = client.get(f"{BASE}/otp/status", headers=pair(api_key),
                          query_string={"verification_id": otp["verification_id"]})
    assert ok(response)["verification_id"] == otp["verification_id"]


# --- SPEC §4 through the dialect ---------------------------------------------------------------------

def test_wrong_codes_spend_the_budget_then_too_many_attempts_even_with_the_right_code(client, api_key,
                                                                                     run_worker, outbox):
    otp = sent(client, api_key)
    run_worker()
    code = code_for(outbox)
    remaining = [error_of(verify(client, api_key, otp["verification_id"], "0" * 7), 400, "INVALID_CODE")
                 ["details"]["attempts_remaining"] for _ in range(5)]
    assert remaining == [4, 3, 2, 1, 0]
    err = error_of(verify(client, api_key, otp["verification_id"], code), 429, "TOO_MANY_ATTEMPTS")
    assert err["details"] == {"attempts_remaining": 0}
    detail = status(client, api_key, otp["verification_id"])
    assert (detail["attempts"], detail["attempts_remaining"], detail["status"]) == (5, 0, "READ")


def test_a_code_verifies_once(client, api_key, run_worker, outbox):
    otp = sent(client, api_key)
    run_worker()
    code = code_for(outbox)
    assert verify(client, api_key, otp["verification_id"], code).status_code == 200
    error_of(verify(client, api_key, otp["verification_id"], code), 409, "OTP_ALREADY_VERIFIED")


def test_parallel_right_codes_verify_exactly_once(app, client, api_key, run_worker, outbox):
    otp = sent(client, api_key)
    run_worker()
    code = code_for(outbox)
    answers = in_threads(20, lambda i: verify(app.test_client(), api_key, otp["verification_id"], code,
                                              auth=STYLES[i % len(STYLES)]))
    outcomes = Counter((a.status_code, (a.json.get("error") or {}).get("code")) for a in answers)
    assert outcomes == {(200, None): 1, (409, "OTP_ALREADY_VERIFIED"): 19}, outcomes
    attempts = ok(get(client, api_key, "attempts", verification_id=otp["verification_id"]))["data"]
    assert [a["result"] for a in attempts].count("verified") == 1


def test_an_expired_otp_is_otp_expired(app, client, api_key, run_worker, outbox):
    otp = sent(client, api_key)
    run_worker()
    set_otp(app, otp["verification_id"], expires_at=utcnow() - timedelta(seconds=1))
    error_of(verify(client, api_key, otp["verification_id"], code_for(outbox)), 400, "OTP_EXPIRED")


def test_a_recipient_that_is_not_the_otps_answers_not_found_and_spends_nothing(client, api_key, run_worker,
                                                                                outbox):
    otp = sent(client, api_key)
    run_worker()
    code = code_for(outbox)
    err = error_of(verify(client, api_key, otp["verification_id"], code, recipient="+905551112299"),
                   404, "OTP_NOT_FOUND")
    assert err["details"] == {"verification_id": otp["verification_id"]}
    assert status(client, api_key, otp["verification_id"])["attempts"] == 0
    error_of(verify(client, api_key, otp["verification_id"], code, recipient="not a phone"), 400, "INVALID_PHONE")
    response = verify(client, api_key, otp["verification_id"], code, recipient=f" {RECIPIENT} ")
    assert response.status_code == 200, response.json


def test_resend_sends_a_new_code_and_kills_the_old_one(app, client, api_key, run_worker, outbox):
    otp = sent(client, api_key)
    run_worker()
    old = code_for(outbox)
    body = {"appid": api_key.app_id, "verification_id": otp["verification_id"]}
    err = error_of(client.post(f"{BASE}/otp/resend", headers=pair(api_key), json=body), 429, "RATE_LIMITED")
    assert err["details"]["retry_after"] >= 1
    set_otp(app, otp["verification_id"], last_sent_at=utcnow() - timedelta(seconds=31))
    response = client.post(f"{BASE}/otp/resend", headers=basic(api_key), json=body)
    detail = ok(response)
    assert (detail["verification_id"], detail["status"], detail["resends"]) == (otp["verification_id"], "QUEUED", 1)
    run_worker()
    new = code_for(outbox)
    assert len(outbox(RECIPIENT)) == 2
    if new != old:
        err = error_of(verify(client, api_key, otp["verification_id"], old), 409, "OTP_CANCELED")
        assert err["details"] == {"reason": "replaced_by_resend"}
    assert verify(client, api_key, otp["verification_id"], new).status_code == 200
    assert set(fields_of(error_of(client.post(f"{BASE}/otp/resend", headers=pair(api_key), json={**body, "x": 1}),
                                  400, "VALIDATION_ERROR"))) == {"x"}


# --- SPEC §8 through the dialect ---------------------------------------------------------------------

def test_the_sixth_send_to_one_number_is_rate_limited_with_retry_after(client, api_key):
    for _ in range(5):
        sent(client, api_key)
    response = send(client, api_key)
    err = error_of(response, 429, "RATE_LIMITED")
    assert err["details"]["limit"] == "5 per 15 minute"
    assert 1 <= int(response.headers["Retry-After"]) <= 15 * 60 and err["details"]["retry_after"] >= 1
    assert "retryAfter" not in err["details"]
    assert otp_count(client, api_key) == 5


def test_the_request_budget_is_shared_with_v1(app, client):
    key = make_key(app, "chatty", api_rate_limit="3/minute")
    assert client.get("/v1/otp", headers=key.headers).status_code == 200
    assert client.get("/v1/otp", headers=key.headers).status_code == 200
    response = get(client, key, "list")
    assert response.status_code == 200 and response.headers["RateLimit-Remaining"] == "0"
    response = get(client, key, "list")
    err = error_of(response, 429, "RATE_LIMITED")
    assert err["details"]["limit"] == "3 per 1 minute" and int(response.headers["Retry-After"]) >= 1
    error_of(client.get("/v1/otp", headers=key.headers), 429, "RATE_LIMITED")


def test_rate_limits_show_what_sends_have_spent(client, api_key):
    before = {i["name"]: i for i in ok(get(client, api_key, "rate-limits", recipient=RECIPIENT))["data"]}
    assert set(before) == {"api", "recipient", "app_daily"}
    sent(client, api_key)
    sent(client, api_key)
    after = ok(get(client, api_key, "rate-limits", recipient=RECIPIENT))["data"]
    for item in after:
        assert set(item) == {"name", "limit", "window", "remaining", "reset_at"}
        ts(item["reset_at"])
    short = next(i for i in after if i["limit"] == "5 per 15 minute")
    assert short["remaining"] == 3
    assert {i["name"] for i in ok(get(client, api_key, "rate-limits"))["data"]} == {"api", "app_daily"}
    error_of(get(client, api_key, "rate-limits", recipient="12"), 400, "INVALID_PHONE")


# --- isolation ------------------------------------------------------------------------------------

@pytest.fixture
def foreign(app, client, api_key) -> tuple[dict, Key]:
    """(an OTP of the default app, a key of another app)."""
    return sent(client, api_key), make_key(app, "other")


def test_another_apps_credentials_get_not_found_and_change_nothing(client, api_key, foreign, run_worker, outbox):
    otp, other = foreign
    run_worker()
    vid = otp["verification_id"]
    for auth in STYLES:
        err = error_of(verify(client, other, vid, code_for(outbox), auth=auth), 404, "OTP_NOT_FOUND")
        assert err["details"] == {"verification_id": vid}
    body = {"appid": other.app_id, "verification_id": vid}
    error_of(client.post(f"{BASE}/otp/resend", headers=pair(other), json=body), 404, "OTP_NOT_FOUND")
    error_of(get(client, other, "status", verification_id=vid), 404, "OTP_NOT_FOUND")
    error_of(get(client, other, "attempts", verification_id=vid), 404, "OTP_NOT_FOUND")
    assert ok(get(client, other, "list"))["data"] == []
    assert ok(get(client, other, "logs"))["data"] == []
    assert ok(get(client, other, "logs", verification_id=vid))["data"] == []
    assert ok(get(client, other, "reports"))["totals"]["total"] == 0
    detail = status(client, api_key, vid)
    assert (detail["status"], detail["attempts"], detail["resends"]) == ("READ", 0, 0)
    assert ok(get(client, api_key, "attempts", verification_id=vid))["data"] == []


# --- the read routes with real data --------------------------------------------------------------------

@pytest.fixture
def history(client, api_key, run_worker, outbox) -> dict:
    """Three OTPs of the default app: one verified after a wrong guess, one read, one queued."""
    verified = sent(client, api_key, reference="order-1")["verification_id"]
    read = sent(client, api_key, recipient="+905551112234")["verification_id"]
    run_worker()
    verify(client, api_key, verified, "00000000")
    assert verify(client, api_key, verified, code_for(outbox)).status_code == 200
    queued = sent(client, api_key, recipient="+905551112235")["verification_id"]
    return {"verified": verified, "read": read, "queued": queued}


def test_list_filters_and_pages(client, api_key, history):
    page = ok(get(client, api_key, "list"))
    assert [o["verification_id"] for o in page["data"]] == [history["queued"], history["read"], history["verified"]]
    assert page["next_cursor"] is None and "timeline" not in page["data"][0]
    assert {o["channel"] for o in page["data"]} == {"whatsapp"}
    by = {"status": "VERIFIED", "recipient": RECIPIENT, "reference": "order-1"}
    for name, value in by.items():
        assert [o["verification_id"] for o in ok(get(client, api_key, "list", **{name: value}))["data"]] \
            == [history["verified"]], name
    seen, cursor = [], None
    while True:
        page = ok(get(client, api_key, "list", limit=2, **({"cursor": cursor} if cursor else {})))
        seen += [o["verification_id"] for o in page["data"]]
        if not (cursor := page["next_cursor"]):
            break
    assert seen == [history["queued"], history["read"], history["verified"]]
    assert ok(get(client, api_key, "list", to="2020-01-01T00:00:00Z"))["data"] == []
    assert len(ok(get(client, api_key, "list", **{"from": "2020-01-01T00:00:00Z"}))["data"]) == 3


@pytest.mark.parametrize(("query", "field"), [
    ({"status": "queued"}, "status"), ({"limit": "0"}, "limit"), ({"from": "yesterday"}, "from"),
    ({"recipient": "12"}, "recipient"), ({"cursor": "%%%"}, "cursor"), ({"otpId": "otp_x"}, "otpId"),
])
def test_list_names_bad_parameters(client, api_key, query, field):
    assert field in fields_of(error_of(get(client, api_key, "list", **query), 400, "VALIDATION_ERROR"))


def test_status_shows_the_timeline_in_snake_case(client, api_key, history):
    detail = status(client, api_key, history["verified"])
    assert (detail["status"], detail["attempts"], detail["attempts_remaining"]) == ("VERIFIED", 1, 4)
    for name in ("created_at", "sent_at", "delivered_at", "read_at", "verified_at"):
        ts(detail[name])
    assert [e["type"] for e in detail["timeline"]] == ["otp.queued", "otp.sent", "otp.delivered", "otp.read",
                                                       "otp.verified"]
    error_of(get(client, api_key, "status", verification_id="otp_unknown"), 404, "OTP_NOT_FOUND")
    assert "verification_id" in fields_of(error_of(get(client, api_key, "status"), 400, "VALIDATION_ERROR"))


def test_attempts_lists_each_verify(client, api_key, history):
    body = ok(get(client, api_key, "attempts", verification_id=history["verified"]))
    assert body["verification_id"] == history["verified"]
    assert [a["result"] for a in body["data"]] == ["invalid_code", "verified"]
    for item in body["data"]:
        assert set(item) == {"created_at", "result", "ip"}
        ts(item["created_at"])
    assert ok(get(client, api_key, "attempts", verification_id=history["read"]))["data"] == []


def test_logs_filter_by_verification_and_type_and_page(client, api_key, history):
    events = ok(get(client, api_key, "logs", verification_id=history["verified"]))["data"]
    assert [e["type"] for e in events] == ["otp.verified", "otp.read", "otp.delivered", "otp.sent", "otp.queued"]
    for event in events:
        assert set(event) == {"id", "type", "created_at", "verification_id", "message_id", "data"}
        assert event["verification_id"] == history["verified"]
    verified = ok(get(client, api_key, "logs", type="otp.verified"))["data"]
    assert [e["verification_id"] for e in verified] == [history["verified"]]
    everything = [e["id"] for e in ok(get(client, api_key, "logs", limit=100))["data"]]
    assert len(everything) == 5 + 4 + 1
    seen, cursor = [], None
    while True:
        page = ok(get(client, api_key, "logs", limit=3, **({"cursor": cursor} if cursor else {})))
        seen += [e["id"] for e in page["data"]]
        if not (cursor := page["next_cursor"]):
            break
    assert seen == everything
    for query, field in (({"verification_id": "nope"}, "verification_id"), ({"to": "x"}, "to"),
                         ({"otpId": history["read"]}, "otpId")):
        assert field in fields_of(error_of(get(client, api_key, "logs", **query), 400, "VALIDATION_ERROR"))


def test_reports_count_the_apps_otps(client, api_key, history):
    report = ok(get(client, api_key, "reports"))
    assert {"from", "to", "interval", "buckets", "totals", "delivery_rate", "verification_rate",
            "median_seconds_to_verify", "top_countries", "by_channel"} == set(report)
    assert report["interval"] == "day" and len(report["buckets"]) == 7
    assert report["totals"]["total"] == 3
    assert (report["totals"]["by_status"]["VERIFIED"], report["totals"]["by_status"]["READ"]) == (1, 1)
    assert report["top_countries"] == [{"country": "TR", "count": 3}]
    hourly = ok(get(client, api_key, "reports", interval="hour"))
    assert len(hourly["buckets"]) == 24 and hourly["totals"]["total"] == 3
    for query, field in (({"interval": "week"}, "interval"), ({"from": "2026-01-02", "to": "2026-01-01"}, "to"),
                         ({"from": "soon"}, "from")):
        assert field in fields_of(error_of(get(client, api_key, "reports", **query), 400, "VALIDATION_ERROR"))


# --- secrets and hostile input ---------------------------------------------------------------------

def test_neither_the_code_nor_the_key_appears_in_any_answer(app, client, api_key, run_worker, outbox):
    answers = [send(client, api_key, length=8, reference="order-7")]
    vid = answers[0].json["verification_id"]
    run_worker()
    code = code_for(outbox)
    wrong = "12345678" if code != "12345678" else "87654321"
    answers += [verify(client, api_key, vid, wrong, auth=auth) for auth in (basic, bearer_encoded)]
    answers += [get(client, api_key, route, verification_id=vid) for route in ("status", "attempts")]
    answers += [get(client, api_key, route) for route in ("list", "logs", "rate-limits", "reports")]
    answers += [verify(client, api_key, vid, code, auth=bearer_key), verify(client, api_key, vid, code),
                send(client, api_key, channel="sms"), send(client, api_key, appid="app_x"),
                send(client, make_key(app, "other"), reference="order-7")]
    texts = [a.get_data(as_text=True) for a in answers]
    assert all(code not in t for t in texts)
    assert all(api_key.secret not in t and api_key.secret[11:] not in t for t in texts)
    assert {a.status_code for a in answers} >= {200, 201, 400, 401, 409}


HOSTILE = [b"", b"null", b"[]", b"{", b"\xff\xfe", b"[" * 5000 + b"]" * 5000,
           b'{"appid": "\\u0000", "recipient": "+905551112233"}',
           b'{"recipient": "+905551112233", "ttl": 1e400}',
           b'{"recipient": "+905551112233", "channel": {"$ne": 1}}',
           b'{"recipient": "+905551112233", "' + b"k" * 5000 + b'": 1}']


@pytest.mark.parametrize("body", HOSTILE, ids=range(len(HOSTILE)))
@pytest.mark.parametrize("route", ["send", "verify", "resend"])
def test_hostile_bodies_get_a_4xx_envelope(client, api_key, body, route):
    response = client.post(f"{BASE}/otp/{route}", headers=pair(api_key), data=body, content_type="application/json")
    assert 400 <= response.status_code < 500, (response.status_code, response.data[:200])
    assert set(response.json) == {"error"} and response.json["error"]["code"]


@pytest.mark.parametrize(("method", "path", "status_code"), [
    ("get", "/otp/send", 405), ("post", "/otp/status", 405), ("get", "/otp/nope", 404), ("get", "/v1/otp", 404),
])
def test_wrong_routes_answer_in_the_envelope(client, api_key, method, path, status_code):
    response = getattr(client, method)(f"{BASE}{path}", headers=pair(api_key))
    assert response.status_code == status_code and response.is_json and "error" in response.json
