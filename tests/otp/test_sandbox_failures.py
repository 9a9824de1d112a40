"""SPEC §7: the sandbox's magic recipients, retries with backoff, never past the OTP's expiry."""

from __future__ import annotations

from wpotp.extensions import get_queue

from .support import error_code, event_types, otp_row, send, send_attempts, show, verify

PERMANENT = "+15005550001"
RETRYABLE = "+15005550002"


def test_permanent_failure_fails_at_once_with_provider_reason(app, client, api_key, run_worker, outbox):
    r = send(client, api_key, PERMANENT, code="5821")
    assert r.status_code == 201
    otp_id = r.json["id"]
    run_worker()

    detail = show(client, api_key, otp_id)
    assert detail["status"] == "FAILED"
    assert detail["failedAt"] is not None
    assert "not on WhatsApp" in detail["error"]
    assert event_types(app, otp_id).count("otp.failed") == 1
    failed_events = [e for e in detail["timeline"] if e["type"] == "otp.failed"]
    assert "not on WhatsApp" in failed_events[0]["error"]
    attempts = send_attempts(app, otp_id)
    assert len(attempts) == 1
    assert attempts[0]["ok"] is False and attempts[0]["permanent"] is True
    assert outbox(PERMANENT) == []

    v = verify(client, api_key, otp_id, "5821")
    assert (v.status_code, error_code(v)) == (409, "OTP_FAILED")


def test_retryable_failure_retries_then_fails(app, make_app, api_key, run_worker):
    quick = make_app(SEND_RETRY_DELAYS=[0, 0])
    c = quick.test_client()
    r = send(c, api_key, RETRYABLE, code="5821")
    assert r.status_code == 201
    otp_id = r.json["id"]
    run_worker(quick)

    attempts = send_attempts(quick, otp_id)
    assert len(attempts) == 3
    assert all(a["ok"] is False and a["permanent"] is False for a in attempts)
    detail = show(c, api_key, otp_id)
    assert detail["status"] == "FAILED"
    assert "temporary failure" in detail["error"]
    assert event_types(quick, otp_id).count("otp.failed") == 1

    v = verify(c, api_key, otp_id, "5821")
    assert (v.status_code, error_code(v)) == (409, "OTP_FAILED")


def test_retry_that_would_outlive_the_otp_fails_instead(app, make_app, api_key, run_worker):
    slow = make_app(SEND_RETRY_DELAYS=[600])
    c = slow.test_client()
    r = send(c, api_key, RETRYABLE)
    assert r.status_code == 201
    otp_id = r.json["id"]
    row = otp_row(slow, otp_id)
    assert row["ttl_seconds"] == 300
    run_worker(slow)

    assert len(send_attempts(slow, otp_id)) == 1
    row = otp_row(slow, otp_id)
    assert row["status"] == "FAILED"
    assert "temporary failure" in row["error"]
    assert event_types(slow, otp_id).count("otp.failed") == 1
    with slow.app_context():
        queue = get_queue("otp")
        assert queue.count == 0
        assert queue.scheduled_job_registry.get_job_ids() == []  # no retry planned past expiry
