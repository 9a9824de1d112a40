"""The happy path of /v1: templates, send, worker delivery, read, verify (SPEC §4, §5)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from wpotp.otp.templates import DEFAULT_TEMPLATES

from .support import RECIPIENT, SUMMARY_FIELDS, latest_code, send, sent, show, ts, verify


def templates_by_language(client, key) -> dict[str, dict]:
    response = client.get("/v1/templates", headers=key.headers)
    assert response.status_code == 200
    return {t["language"]: t for t in response.get_json()["data"]}


def test_templates_lists_the_seeded_english_and_turkish_templates(client, api_key):
    by_lang = templates_by_language(client, api_key)
    assert {"en", "tr"} <= set(by_lang)
    for tpl in (by_lang["en"], by_lang["tr"]):
        assert tpl["id"].startswith("tpl_")
        assert tpl["name"] == "wpotp_verification"
        assert "{{1}}" in tpl["body"]
        assert tpl["category"] == "AUTHENTICATION"
    assert by_lang["tr"]["body"] == next(t["body"] for t in DEFAULT_TEMPLATES if t["language"] == "tr")


def test_send_with_own_code_answers_201_with_exactly_the_summary_fields(client, api_key):
    response = send(client, api_key, code="1234", reference="order-1")
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == SUMMARY_FIELDS
    assert body["id"].startswith("otp_")
    assert body["status"] == "QUEUED"
    assert body["recipient"] == RECIPIENT
    assert body["reference"] == "order-1"
    assert body["templateId"] == templates_by_language(client, api_key)["en"]["id"]


def test_worker_moves_otp_to_read_with_an_ordered_timeline(client, api_key, run_worker):
    otp = sent(client, api_key, code="1234")
    run_worker()
    detail = show(client, api_key, otp["id"])
    assert detail["status"] == "READ"
    for field in ("sentAt", "deliveredAt", "readAt"):
        ts(detail[field])
    assert detail["verifiedAt"] is None
    assert [e["type"] for e in detail["timeline"]] == ["otp.queued", "otp.sent", "otp.delivered", "otp.read"]


def test_verify_with_the_right_code_answers_verified(client, api_key, run_worker):
    otp = sent(client, api_key, code="1234")
    run_worker()
    response = verify(client, api_key, otp["id"], "1234")
    assert response.status_code == 200
    body = response.get_json()
    assert body["verified"] is True
    assert body["status"] == "VERIFIED"
    assert body["id"] == otp["id"]
    detail = show(client, api_key, otp["id"])
    assert detail["status"] == "VERIFIED"
    ts(detail["verifiedAt"])
    assert detail["timeline"][-1]["type"] == "otp.verified"


def test_verify_before_the_worker_ran_is_accepted_and_stays_verified(client, api_key, run_worker):
    otp = sent(client, api_key, code="5678")
    assert verify(client, api_key, otp["id"], "5678").status_code == 200
    run_worker()
    assert show(client, api_key, otp["id"])["status"] == "VERIFIED"


def test_generated_code_from_outbox_has_six_digits_and_verifies(client, api_key, run_worker, outbox):
    otp = sent(client, api_key)
    run_worker()
    code = latest_code(outbox, RECIPIENT)
    assert len(code) == 6 and code.isdigit()
    assert verify(client, api_key, otp["id"], code).get_json()["verified"] is True


def test_length_8_generates_an_eight_digit_code_that_verifies(client, api_key, run_worker, outbox):
    otp = sent(client, api_key, length=8)
    run_worker()
    code = latest_code(outbox, RECIPIENT)
    assert len(code) == 8 and code.isdigit()
    assert verify(client, api_key, otp["id"], code).status_code == 200


def test_otp_detail_never_shows_the_code(client, api_key, run_worker):
    otp = sent(client, api_key, code="90817263")
    run_worker()
    response = client.get(f"/v1/otp/{otp['id']}", headers=api_key.headers)
    assert "code" not in response.get_json()
    assert "90817263" not in response.get_data(as_text=True)
    assert "90817263" not in client.get("/v1/otp", headers=api_key.headers).get_data(as_text=True)


def test_timestamps_are_iso_utc_with_milliseconds_and_z(client, api_key, run_worker):
    otp = sent(client, api_key, code="1234")
    run_worker()
    verify(client, api_key, otp["id"], "1234")
    detail = show(client, api_key, otp["id"])
    stamps = [detail[f] for f in ("createdAt", "expiresAt", "sentAt", "deliveredAt", "readAt", "verifiedAt")]
    stamps += [e["createdAt"] for e in detail["timeline"]]
    for value in stamps:
        ts(value)


@pytest.mark.parametrize(("extra", "ttl"), [({}, 300), ({"ttl": 60}, 60), ({"ttl": 900}, 900)])
def test_expires_at_is_created_at_plus_ttl(client, api_key, extra, ttl):
    otp = sent(client, api_key, **extra)
    assert ts(otp["expiresAt"]) - ts(otp["createdAt"]) == timedelta(seconds=ttl)


def test_language_tr_uses_the_turkish_template(client, api_key, run_worker, outbox):
    otp = sent(client, api_key, code="4321", language="tr")
    tr = templates_by_language(client, api_key)["tr"]
    assert otp["templateId"] == tr["id"]
    run_worker()
    assert outbox(RECIPIENT)[0]["text"] == tr["body"].replace("{{1}}", "4321")


def test_test_key_sends_through_the_sandbox_outbox_with_the_code_in_the_text(client, api_key, run_worker, outbox):
    otp = sent(client, api_key, code="246810")
    run_worker()
    entries = outbox(RECIPIENT)
    assert len(entries) == 1
    entry = entries[0]
    assert entry["otpId"] == otp["id"]
    assert entry["code"] == "246810"
    en = templates_by_language(client, api_key)["en"]
    assert entry["text"] == en["body"].replace("{{1}}", "246810")
    assert entry["language"] == "en"


def test_x_api_key_header_works_like_bearer(client, api_key):
    response = client.post("/v1/otp/send", headers={"X-API-Key": api_key.secret},
                           json={"recipient": RECIPIENT, "code": "1234"})
    assert response.status_code == 201
    assert client.get(f"/v1/otp/{response.get_json()['id']}", headers={"X-API-Key": api_key.secret}).status_code == 200
