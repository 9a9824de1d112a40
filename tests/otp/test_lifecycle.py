"""SPEC §4 status transitions through a real worker, and receipts (§7) applied by the service."""

from __future__ import annotations

from wpotp.otp.receipts import apply_receipt

from .support import code_for, event_types, otp_row, run_queue, send, show, verify


def _sent_otp(app, client, key, recipient: str, **fields) -> str:
    """Send and run only the send job: the OTP is SENT, its receipts still queued."""
    r = send(client, key, recipient, **fields)
    assert r.status_code == 201, r.json
    run_queue(app, "otp")
    assert otp_row(app, r.json["id"])["status"] == "SENT"
    return r.json["id"]


def test_status_moves_queued_sent_delivered_read_verified(app, client, api_key, outbox):
    r = send(client, api_key, "+905551110101")
    assert r.status_code == 201
    assert r.json["status"] == "QUEUED"
    otp_id = r.json["id"]
    assert show(client, api_key, otp_id)["status"] == "QUEUED"

    run_queue(app, "otp")
    detail = show(client, api_key, otp_id)
    assert detail["status"] == "SENT"
    assert detail["sentAt"] is not None and detail["deliveredAt"] is None

    run_queue(app, "default", max_jobs=1)
    detail = show(client, api_key, otp_id)
    assert detail["status"] == "DELIVERED"
    assert detail["deliveredAt"] is not None and detail["readAt"] is None

    run_queue(app, "default", max_jobs=1)
    detail = show(client, api_key, otp_id)
    assert detail["status"] == "READ"
    assert detail["readAt"] is not None

    v = verify(client, api_key, otp_id, code_for(outbox, otp_id))
    assert v.status_code == 200
    assert v.json["status"] == "VERIFIED"
    detail = show(client, api_key, otp_id)
    assert detail["status"] == "VERIFIED" and detail["verifiedAt"] is not None
    assert [e["type"] for e in detail["timeline"]] == [
        "otp.queued", "otp.sent", "otp.delivered", "otp.read", "otp.verified"]
    assert [e["status"] for e in detail["timeline"]] == ["QUEUED", "SENT", "DELIVERED", "READ", "VERIFIED"]


def test_verify_before_receipts_goes_straight_from_sent_and_stays_verified(app, client, api_key, outbox,
                                                                          run_worker):
    otp_id = _sent_otp(app, client, api_key, "+905551110102")
    v = verify(client, api_key, otp_id, code_for(outbox, otp_id))
    assert v.status_code == 200 and v.json["status"] == "VERIFIED"

    run_worker()  # the delivered and read receipts arrive after the user typed the code
    row = otp_row(app, otp_id)
    assert row["status"] == "VERIFIED"
    assert row["delivered_at"] is not None and row["read_at"] is not None
    assert event_types(app, otp_id) == ["otp.queued", "otp.sent", "otp.verified", "otp.delivered", "otp.read"]
    assert show(client, api_key, otp_id)["status"] == "VERIFIED"


def test_late_delivered_receipt_is_recorded_but_status_stays_read(app, client, api_key):
    otp_id = _sent_otp(app, client, api_key, "+905551110103")
    message_id = otp_row(app, otp_id)["provider_message_id"]
    assert message_id
    with app.app_context():
        assert apply_receipt("sandbox", message_id, "read") is True
    assert otp_row(app, otp_id)["status"] == "READ"

    with app.app_context():
        apply_receipt("sandbox", message_id, "delivered")
    row = otp_row(app, otp_id)
    assert row["status"] == "READ"
    assert row["delivered_at"] is not None
    timeline = show(client, api_key, otp_id)["timeline"]
    assert [e["type"] for e in timeline] == ["otp.queued", "otp.sent", "otp.read", "otp.delivered"]
    assert timeline[-1]["status"] == "READ"


def test_repeated_receipt_changes_nothing(app, client, api_key):
    otp_id = _sent_otp(app, client, api_key, "+905551110104")
    message_id = otp_row(app, otp_id)["provider_message_id"]
    with app.app_context():
        assert apply_receipt("sandbox", message_id, "delivered") is True
    before_row, before_events = otp_row(app, otp_id), event_types(app, otp_id)
    assert before_row["status"] == "DELIVERED"

    with app.app_context():
        assert apply_receipt("sandbox", message_id, "delivered") is False
    assert otp_row(app, otp_id) == before_row
    assert event_types(app, otp_id) == before_events


def test_receipt_for_unknown_message_changes_nothing(app, client, api_key):
    otp_id = _sent_otp(app, client, api_key, "+905551110105")
    before_row, before_events = otp_row(app, otp_id), event_types(app, otp_id)
    with app.app_context():
        assert apply_receipt("sandbox", "sbx_doesnotexist0000000", "read") is False
        assert apply_receipt("sandbox", "sbx_doesnotexist0000000", "delivered") is False
    assert otp_row(app, otp_id) == before_row
    assert event_types(app, otp_id) == before_events


def test_receipt_for_replaced_message_does_not_move_status(app, make_app, client, api_key, outbox):
    quick = make_app(RESEND_INTERVAL=0)
    quick_client = quick.test_client()
    otp_id = _sent_otp(quick, quick_client, api_key, "+905551110106")
    old_message = otp_row(quick, otp_id)["provider_message_id"]

    r = quick_client.post(f"/v1/otp/{otp_id}/resend", headers=api_key.headers)
    assert r.status_code == 200, r.json
    run_queue(quick, "otp")
    row = otp_row(quick, otp_id)
    assert row["status"] == "SENT" and row["generation"] == 2
    assert row["provider_message_id"] not in (None, old_message)

    with quick.app_context():
        assert apply_receipt("sandbox", old_message, "read") is False
        assert apply_receipt("sandbox", old_message, "delivered") is False
    row = otp_row(quick, otp_id)
    assert row["status"] == "SENT"
    assert row["delivered_at"] is None and row["read_at"] is None

    # The new message's receipts still count.
    with quick.app_context():
        assert apply_receipt("sandbox", row["provider_message_id"], "read") is True
    assert otp_row(quick, otp_id)["status"] == "READ"


def test_failed_receipt_fails_sent_otp_with_reason(app, client, api_key):
    otp_id = _sent_otp(app, client, api_key, "+905551110107", code="6543")
    message_id = otp_row(app, otp_id)["provider_message_id"]
    with app.app_context():
        assert apply_receipt("sandbox", message_id, "failed", error="131026: message undeliverable") is True
    detail = show(client, api_key, otp_id)
    assert detail["status"] == "FAILED" and detail["failedAt"] is not None
    assert "131026" in detail["error"]
    assert [e["type"] for e in detail["timeline"]].count("otp.failed") == 1
    v = verify(client, api_key, otp_id, "6543")
    assert v.status_code == 409 and v.json["error"]["code"] == "OTP_FAILED"


def test_failed_receipt_after_verification_keeps_it_verified(app, client, api_key):
    otp_id = _sent_otp(app, client, api_key, "+905551110108", code="6543")
    message_id = otp_row(app, otp_id)["provider_message_id"]
    assert verify(client, api_key, otp_id, "6543").status_code == 200
    with app.app_context():
        apply_receipt("sandbox", message_id, "failed", error="131026: message undeliverable")
    row = otp_row(app, otp_id)
    assert row["status"] == "VERIFIED"
