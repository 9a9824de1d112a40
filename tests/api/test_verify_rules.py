"""Verify outcomes over HTTP (SPEC §4): attempt budget, single use, cancel, expiry, attempts log."""

from __future__ import annotations

from datetime import timedelta

from wpotp.util import utcnow

from .support import error_of, latest_code, sent, set_otp, show, ts, verify


def test_wrong_code_counts_down_attempts_then_too_many_attempts_even_with_right_code(client, api_key):
    otp = sent(client, api_key, code="1234")
    remaining = [error_of(verify(client, api_key, otp["id"], "0000"), 400, "INVALID_CODE")["details"]
                 ["attemptsRemaining"] for _ in range(5)]
    assert remaining == [4, 3, 2, 1, 0]
    error_of(verify(client, api_key, otp["id"], "1234"), 429, "TOO_MANY_ATTEMPTS")
    error_of(verify(client, api_key, otp["id"], "0000"), 429, "TOO_MANY_ATTEMPTS")
    detail = show(client, api_key, otp["id"])
    assert (detail["attempts"], detail["attemptsRemaining"]) == (5, 0)
    assert detail["status"] != "VERIFIED"


def test_second_verify_is_otp_already_verified(client, api_key):
    otp = sent(client, api_key, code="1234")
    assert verify(client, api_key, otp["id"], "1234").status_code == 200
    error_of(verify(client, api_key, otp["id"], "1234"), 409, "OTP_ALREADY_VERIFIED")
    error_of(verify(client, api_key, otp["id"], "9999"), 409, "OTP_ALREADY_VERIFIED")


def test_cancel_answers_canceled_and_verify_is_then_otp_canceled(client, api_key):
    otp = sent(client, api_key, code="1234")
    response = client.post(f"/v1/otp/{otp['id']}/cancel", headers=api_key.headers)
    assert response.status_code == 200
    assert response.get_json()["status"] == "CANCELED"
    error_of(verify(client, api_key, otp["id"], "1234"), 409, "OTP_CANCELED")
    assert show(client, api_key, otp["id"])["status"] == "CANCELED"


def test_cancel_twice_answers_the_canceled_otp_again(client, api_key):
    otp = sent(client, api_key, code="1234")
    client.post(f"/v1/otp/{otp['id']}/cancel", headers=api_key.headers)
    response = client.post(f"/v1/otp/{otp['id']}/cancel", headers=api_key.headers)
    assert response.status_code == 200
    assert response.get_json()["status"] == "CANCELED"


def test_cancel_of_a_verified_otp_is_otp_already_verified(client, api_key):
    otp = sent(client, api_key, code="1234")
    verify(client, api_key, otp["id"], "1234")
    error_of(client.post(f"/v1/otp/{otp['id']}/cancel", headers=api_key.headers), 409, "OTP_ALREADY_VERIFIED")
    assert show(client, api_key, otp["id"])["status"] == "VERIFIED"


def test_code_with_leading_zeros_verifies_only_as_typed(client, api_key):
    otp = sent(client, api_key, code="0012")
    error_of(verify(client, api_key, otp["id"], "12"), 400, "INVALID_CODE")
    assert verify(client, api_key, otp["id"], "0012").status_code == 200


def test_canceled_otp_is_never_sent(client, api_key, run_worker, outbox):
    otp = sent(client, api_key, code="1234")
    client.post(f"/v1/otp/{otp['id']}/cancel", headers=api_key.headers)
    run_worker()
    assert outbox(otp["recipient"]) == []


def test_verify_after_expiry_is_otp_expired_even_with_the_right_code(app, client, api_key):
    otp = sent(client, api_key, code="1234")
    set_otp(app, otp["id"], expires_at=utcnow() - timedelta(seconds=1))
    error_of(verify(client, api_key, otp["id"], "1234"), 400, "OTP_EXPIRED")
    error_of(verify(client, api_key, otp["id"], "0000"), 400, "OTP_EXPIRED")
    assert show(client, api_key, otp["id"])["status"] != "VERIFIED"


def test_expired_wrong_guess_spends_no_attempt(app, client, api_key):
    otp = sent(client, api_key, code="1234")
    set_otp(app, otp["id"], expires_at=utcnow() - timedelta(seconds=1))
    verify(client, api_key, otp["id"], "0000")
    assert show(client, api_key, otp["id"])["attempts"] == 0


def test_attempts_lists_each_verify_call_with_time_result_and_ip(client, api_key):
    otp = sent(client, api_key, code="1234")
    verify(client, api_key, otp["id"], "0000")
    verify(client, api_key, otp["id"], "1234")
    verify(client, api_key, otp["id"], "1234")
    response = client.get(f"/v1/otp/{otp['id']}/attempts", headers=api_key.headers)
    assert response.status_code == 200
    rows = response.get_json()["data"]
    assert len(rows) == 3
    assert [r["result"] for r in rows][:2] == ["invalid_code", "verified"]
    assert rows[2]["result"] not in ("verified", "invalid_code")
    for row in rows:
        ts(row["createdAt"])
        assert row["ip"] == "127.0.0.1"


def test_attempts_of_an_otp_never_verified_is_empty(client, api_key):
    otp = sent(client, api_key, code="1234")
    response = client.get(f"/v1/otp/{otp['id']}/attempts", headers=api_key.headers)
    assert response.status_code == 200
    assert response.get_json()["data"] == []


def test_resend_kills_the_old_code_and_the_new_one_verifies(make_app, app, api_key, run_worker, outbox):
    fast = make_app(RESEND_INTERVAL=0)
    client = fast.test_client()
    otp = sent(client, api_key)
    run_worker(fast)
    old = latest_code(outbox, otp["recipient"])
    response = client.post(f"/v1/otp/{otp['id']}/resend", headers=api_key.headers)
    assert response.status_code == 200
    assert response.get_json()["id"] == otp["id"]
    run_worker(fast)
    new = latest_code(outbox, otp["recipient"])
    assert len(outbox(otp["recipient"])) == 2
    if new != old:  # a 1-in-a-million chance that the new code equals the old one
        error_of(verify(client, api_key, otp["id"], old), 409, "OTP_CANCELED")
    assert verify(client, api_key, otp["id"], new).status_code == 200


def test_undeliverable_sandbox_recipient_ends_failed_with_a_reason(client, api_key, run_worker, outbox):
    otp = sent(client, api_key, recipient="+15005550001", code="1234")
    run_worker()
    detail = show(client, api_key, otp["id"])
    assert detail["status"] == "FAILED"
    ts(detail["failedAt"])
    assert detail["error"]
    assert [e["type"] for e in detail["timeline"]] == ["otp.queued", "otp.failed"]
    assert outbox("+15005550001") == []
