"""Request errors of /v1 (SPEC §2, §3): every one in the JSON envelope, never HTML or a 500."""

from __future__ import annotations

import base64

import pytest

from tests.helpers import make_key
from wpotp.util import utcnow

from .support import RECIPIENT, error_of, fields_of, send, sent, set_key


def post_raw(client, key, data, content_type="application/json"):
    return client.post("/v1/otp/send", headers=key.headers, data=data, content_type=content_type)


# --- VALIDATION_ERROR -------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"{not json", b"recipient=+905551112233", b"\xff\xfe"])
def test_body_that_is_not_json_is_a_validation_error(client, api_key, raw):
    err = error_of(post_raw(client, api_key, raw), 400, "VALIDATION_ERROR")
    assert "body" in fields_of(err)


@pytest.mark.parametrize("raw", [b"[]", b'"+905551112233"', b"42", b"null"])
def test_json_that_is_not_an_object_is_a_validation_error(client, api_key, raw):
    err = error_of(post_raw(client, api_key, raw), 400, "VALIDATION_ERROR")
    assert "body" in fields_of(err)


@pytest.mark.parametrize("content_type", ["application/json", None])
def test_empty_body_is_a_validation_error(client, api_key, content_type):
    err = error_of(post_raw(client, api_key, b"", content_type), 400, "VALIDATION_ERROR")
    assert fields_of(err)


@pytest.mark.parametrize(("body", "field"), [
    ({"recipient": RECIPIENT, "ttl": "300"}, "ttl"),
    ({"recipient": 123}, "recipient"),
    ({"recipient": 905551112233}, "recipient"),
    ({"recipient": RECIPIENT, "code": 123456}, "code"),
    ({"recipient": RECIPIENT, "length": "6"}, "length"),
    ({"recipient": RECIPIENT, "length": 6.0}, "length"),
    ({"recipient": RECIPIENT, "ttl": True}, "ttl"),
    ({"recipient": RECIPIENT, "reference": 7}, "reference"),
    ({"recipient": RECIPIENT, "templateId": ["tpl_x"]}, "templateId"),
    ({"recipient": None}, "recipient"),
])
def test_wrong_types_are_validation_errors_naming_the_field(client, api_key, body, field):
    err = error_of(client.post("/v1/otp/send", headers=api_key.headers, json=body), 400, "VALIDATION_ERROR")
    assert field in fields_of(err)


def test_unknown_field_is_a_validation_error_naming_it(client, api_key):
    err = error_of(send(client, api_key, priority="high"), 400, "VALIDATION_ERROR")  # `channel` is a field now
    assert "priority" in fields_of(err)


def test_missing_recipient_is_a_validation_error_naming_it(client, api_key):
    response = client.post("/v1/otp/send", headers=api_key.headers, json={"code": "1234"})
    assert "recipient" in fields_of(error_of(response, 400, "VALIDATION_ERROR"))


@pytest.mark.parametrize("ttl", [59, 901, 0, -1])
def test_ttl_outside_60_to_900_is_a_validation_error(client, api_key, ttl):
    assert "ttl" in fields_of(error_of(send(client, api_key, ttl=ttl), 400, "VALIDATION_ERROR"))


@pytest.mark.parametrize("length", [3, 9, 0])
def test_length_outside_4_to_8_is_a_validation_error(client, api_key, length):
    assert "length" in fields_of(error_of(send(client, api_key, length=length), 400, "VALIDATION_ERROR"))


@pytest.mark.parametrize("code", ["123", "123456789", "12a4", "", " 1234", "١٢٣٤"])
def test_code_that_is_not_4_to_8_ascii_digits_is_a_validation_error(client, api_key, code):
    assert "code" in fields_of(error_of(send(client, api_key, code=code), 400, "VALIDATION_ERROR"))


def test_code_and_length_that_disagree_is_a_validation_error_naming_them(client, api_key):
    err = error_of(send(client, api_key, code="1234", length=6), 400, "VALIDATION_ERROR")
    assert {"code", "length"} & set(fields_of(err)), err


def test_code_and_length_that_disagree_is_a_validation_error(client, api_key):
    error_of(send(client, api_key, code="1234", length=6), 400, "VALIDATION_ERROR")


def test_several_bad_fields_are_all_named(client, api_key):
    err = error_of(send(client, api_key, ttl="300", length=99, colour="red"), 400, "VALIDATION_ERROR")
    assert {"ttl", "length", "colour"} <= set(fields_of(err))


def test_verify_with_numeric_code_is_a_validation_error(client, api_key):
    otp = sent(client, api_key, code="123456")
    response = client.post(f"/v1/otp/{otp['id']}/verify", headers=api_key.headers, json={"code": 123456})
    assert "code" in fields_of(error_of(response, 400, "VALIDATION_ERROR"))


def test_verify_without_code_is_a_validation_error(client, api_key):
    otp = sent(client, api_key, code="123456")
    response = client.post(f"/v1/otp/{otp['id']}/verify", headers=api_key.headers, json={})
    assert "code" in fields_of(error_of(response, 400, "VALIDATION_ERROR"))


def test_a_one_megabyte_body_is_413_payload_too_large(client, api_key):
    big = b'{"recipient":"+905551112233","reference":"' + b"x" * 1_000_000 + b'"}'
    error_of(post_raw(client, api_key, big), 413, "PAYLOAD_TOO_LARGE")


NUL_CURSOR = base64.urlsafe_b64encode(b"2026-01-01T00:00:00|otp_\x00").decode().rstrip("=")


@pytest.mark.parametrize(("method", "url", "body"), [
    ("post", "/v1/otp/send", {"recipient": RECIPIENT, "reference": "a\u0000b"}),
    ("post", "/v1/otp/send", {"recipient": RECIPIENT, "templateId": "tpl_\u0000"}),
    ("get", "/v1/otp/otp_a%00b", None),
    ("post", "/v1/otp/otp_a%00b/verify", {"code": "1234"}),
    ("get", "/v1/otp?reference=a%00b", None),
])
def test_nul_characters_in_inputs_are_never_a_server_error(client, api_key, method, url, body):
    response = getattr(client, method)(url, headers=api_key.headers, json=body)
    assert response.status_code < 500, response.get_data(as_text=True)[:300]
    if response.status_code >= 400:
        error_of(response, response.status_code, response.get_json()["error"]["code"])


def test_cursor_hiding_a_nul_character_is_never_a_server_error(client, api_key):
    response = client.get("/v1/otp", headers=api_key.headers, query_string={"cursor": NUL_CURSOR})
    assert response.status_code < 500, response.get_data(as_text=True)[:300]
    if response.status_code >= 400:
        assert "cursor" in fields_of(error_of(response, 400, "VALIDATION_ERROR"))


# --- phones, countries, templates ----------------------------------------------------------------


@pytest.mark.parametrize("recipient", ["05551112233", "+90555", "+1234567890123456", "abc", "+10000000000",
                                       "+90 555 111 22 33", ""])
def test_recipient_that_is_not_e164_is_invalid_phone(client, api_key, recipient):
    response = send(client, api_key, recipient=recipient)
    if recipient == "":
        error_of(response, 400, "VALIDATION_ERROR")  # an empty required field is a shape error
    else:
        error_of(response, 400, "INVALID_PHONE")


def test_recipient_outside_the_allow_list_is_country_not_allowed(app, client):
    shop = make_key(app, "shop", allowed_countries="TR")
    error_of(send(client, shop, recipient="+14155552671"), 400, "COUNTRY_NOT_ALLOWED")
    assert send(client, shop, recipient="+905321234567").status_code == 201


def test_unknown_template_id_is_template_not_found(client, api_key):
    error_of(send(client, api_key, templateId="tpl_doesnotexist"), 404, "TEMPLATE_NOT_FOUND")


def test_language_without_a_template_is_template_not_found(client, api_key):
    error_of(send(client, api_key, language="de"), 404, "TEMPLATE_NOT_FOUND")


def test_failed_send_creates_no_otp(client, api_key):
    send(client, api_key, language="de")
    send(client, api_key, recipient="abc")
    assert client.get("/v1/otp", headers=api_key.headers).get_json()["data"] == []


def test_sixth_send_to_one_recipient_in_15_minutes_is_rate_limited(client, api_key):
    for _ in range(5):
        sent(client, api_key)
    response = send(client, api_key)
    err = error_of(response, 429, "RATE_LIMITED")
    assert int(response.headers["Retry-After"]) > 0
    assert err["details"]["limit"]


# --- OTP_NOT_FOUND, routes, methods --------------------------------------------------------------


@pytest.mark.parametrize("otp_id", ["otp_doesnotexist", "x" * 500, "otp_" + "A" * 36])
@pytest.mark.parametrize("action", ["get", "verify", "resend", "cancel", "attempts"])
def test_unknown_otp_id_is_otp_not_found(client, api_key, otp_id, action):
    url = f"/v1/otp/{otp_id}"
    if action == "get":
        response = client.get(url, headers=api_key.headers)
    elif action == "attempts":
        response = client.get(f"{url}/attempts", headers=api_key.headers)
    elif action == "verify":
        response = client.post(f"{url}/verify", headers=api_key.headers, json={"code": "1234"})
    else:
        response = client.post(f"{url}/{action}", headers=api_key.headers)
    error_of(response, 404, "OTP_NOT_FOUND")


@pytest.mark.parametrize("path", ["/v1/nope", "/v1/otp/x/y/z", "/v1"])
def test_unknown_route_under_v1_is_a_404_envelope(client, api_key, path):
    response = client.get(path, headers=api_key.headers)
    assert response.status_code == 404
    error_of(response, 404, response.get_json()["error"]["code"])


@pytest.mark.parametrize(("method", "path"), [("put", "/v1/otp/send"), ("delete", "/v1/otp/otp_x"),
                                              ("get", "/v1/otp/otp_x/verify"), ("post", "/v1/templates")])
def test_wrong_method_is_a_405_envelope(client, api_key, method, path):
    response = getattr(client, method)(path, headers=api_key.headers)
    assert response.status_code == 405
    error_of(response, 405, response.get_json()["error"]["code"])
    assert response.headers.get("Allow")


def test_get_on_the_send_route_is_405(client, api_key):
    response = client.get("/v1/otp/send", headers=api_key.headers)
    assert response.status_code == 405
    error_of(response, 405, response.get_json()["error"]["code"])


# --- 401 unauthorized ----------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wpotp_test_" + "A" * 32},
    {"Authorization": "Bearer wpotp_live_nope"},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer "},
    {"Authorization": "Basic d3BvdHA6c2VjcmV0"},
    {"Authorization": "wpotp_test_" + "A" * 32},
    {"X-API-Key": "garbage"},
    {"X-API-Key": "wpotp_test_" + "x" * 500},
])
def test_missing_unknown_or_malformed_key_is_401(client, headers):
    error_of(client.post("/v1/otp/send", headers=headers, json={"recipient": RECIPIENT}), 401, "unauthorized")
    error_of(client.get("/v1/templates", headers=headers), 401, "unauthorized")


def test_malformed_bearer_with_a_valid_key_is_not_authorized(client, api_key):
    error_of(client.get("/v1/otp", headers={"Authorization": f"Token {api_key.secret}"}), 401, "unauthorized")


def test_revoked_key_is_401(app, client, api_key):
    assert client.get("/v1/otp", headers=api_key.headers).status_code == 200
    set_key(app, api_key.key_id, revoked_at=utcnow())
    error_of(client.get("/v1/otp", headers=api_key.headers), 401, "unauthorized")
    error_of(send(client, api_key), 401, "unauthorized")
    error_of(client.get("/v1/otp", headers={"X-API-Key": api_key.secret}), 401, "unauthorized")


def test_unauthorized_send_creates_nothing(client, api_key):
    client.post("/v1/otp/send", headers={"Authorization": "Bearer wpotp_test_nope"}, json={"recipient": RECIPIENT})
    assert client.get("/v1/otp", headers=api_key.headers).get_json()["data"] == []
