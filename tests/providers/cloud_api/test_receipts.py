"""SPEC §7: Meta's signed status webhooks move an OTP forward; nothing else changes it."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from tests.otp.support import event_types, otp_row, show

from .graph import SETTINGS, VERIFY_TOKEN, signed, status_item, status_webhook
from .support import post_receipts, sent_otp


def _now() -> int:
    return int(time.time())


def test_signed_receipts_move_sent_to_delivered_to_read(cloud_app, cloud_client, live_key, graph, run_worker):
    otp_id, wamid = sent_otp(cloud_client, live_key, run_worker, cloud_app, graph)
    t = _now()

    r = post_receipts(cloud_client, status_item(wamid, "sent", t), status_item(wamid, "delivered", t + 1))
    assert r.status_code == 200
    assert show(cloud_client, live_key, otp_id)["status"] == "DELIVERED"
    assert post_receipts(cloud_client, status_item(wamid, "read", t + 2)).status_code == 200

    detail = show(cloud_client, live_key, otp_id)
    assert detail["status"] == "READ"
    row = otp_row(cloud_app, otp_id)
    assert row["delivered_at"] == datetime.fromtimestamp(t + 1, UTC).replace(tzinfo=None)
    assert row["read_at"] == datetime.fromtimestamp(t + 2, UTC).replace(tzinfo=None)
    assert event_types(cloud_app, otp_id)[-2:] == ["otp.delivered", "otp.read"]


def test_read_before_delivered_stays_read_and_keeps_both(cloud_app, cloud_client, live_key, graph, run_worker):
    otp_id, wamid = sent_otp(cloud_client, live_key, run_worker, cloud_app, graph)
    t = _now()

    post_receipts(cloud_client, status_item(wamid, "read", t + 2))
    post_receipts(cloud_client, status_item(wamid, "delivered", t + 1))

    detail = show(cloud_client, live_key, otp_id)
    assert detail["status"] == "READ"
    assert detail["deliveredAt"] is not None and detail["readAt"] is not None
    types = event_types(cloud_app, otp_id)
    assert types.count("otp.read") == 1 and types.count("otp.delivered") == 1


def test_read_without_delivered_moves_to_read(cloud_app, cloud_client, live_key, graph, run_worker):
    otp_id, wamid = sent_otp(cloud_client, live_key, run_worker, cloud_app, graph)

    post_receipts(cloud_client, status_item(wamid, "read", _now()))

    detail = show(cloud_client, live_key, otp_id)
    assert detail["status"] == "READ"
    assert detail["deliveredAt"] is None


def test_repeated_receipt_changes_nothing(cloud_app, cloud_client, live_key, graph, run_worker):
    otp_id, wamid = sent_otp(cloud_client, live_key, run_worker, cloud_app, graph)
    receipt = status_item(wamid, "delivered", _now())
    post_receipts(cloud_client, receipt)
    before = (otp_row(cloud_app, otp_id), event_types(cloud_app, otp_id))

    r = post_receipts(cloud_client, receipt)

    assert r.status_code == 200
    assert (otp_row(cloud_app, otp_id), event_types(cloud_app, otp_id)) == before


def test_failed_receipt_fails_the_otp_with_metas_error(cloud_app, cloud_client, live_key, graph, run_worker):
    otp_id, wamid = sent_otp(cloud_client, live_key, run_worker, cloud_app, graph)
    errors = [{"code": 131026, "title": "Message undeliverable.", "message": "Message undeliverable.",
               "error_data": {"details": "Message Undeliverable."}}]

    post_receipts(cloud_client, status_item(wamid, "failed", _now(), errors=errors))

    detail = show(cloud_client, live_key, otp_id)
    assert detail["status"] == "FAILED"
    assert detail["error"] == "131026: Message undeliverable"
    assert event_types(cloud_app, otp_id).count("otp.failed") == 1


def test_bad_or_missing_signature_is_refused_and_changes_nothing(cloud_app, cloud_client, live_key, graph,
                                                                 run_worker):
    otp_id, wamid = sent_otp(cloud_client, live_key, run_worker, cloud_app, graph)
    before = (otp_row(cloud_app, otp_id), event_types(cloud_app, otp_id))
    raw, headers = signed(status_webhook(status_item(wamid, "read", _now())))
    tampered = raw.replace(b'"read"', b'"failed"')

    answers = [
        post_receipts(cloud_client, status_item(wamid, "read", _now()), secret="not-the-app-secret"),
        cloud_client.post("/webhooks/whatsapp", data=raw, headers={"Content-Type": "application/json"}),
        cloud_client.post("/webhooks/whatsapp", data=tampered, headers=headers),
        cloud_client.post("/webhooks/whatsapp", data=raw, headers={**headers, "X-Hub-Signature-256": "sha256="}),
    ]

    assert [a.status_code for a in answers] == [401, 401, 401, 401]
    assert (otp_row(cloud_app, otp_id), event_types(cloud_app, otp_id)) == before


def test_unset_app_secret_refuses_every_receipt(make_app, app, graph):
    # The start-up check refuses a cloud_api app without a secret; a sandbox app never verifies one.
    unconfigured = make_app(**{**SETTINGS, "WPOTP_PROVIDER": "sandbox", "WHATSAPP_APP_SECRET": ""})
    raw, headers = signed(status_webhook(status_item("wamid.x", "read")), secret="")

    r = unconfigured.test_client().post("/webhooks/whatsapp", data=raw, headers=headers)

    assert r.status_code == 401


def test_unknown_wamid_is_acknowledged_and_changes_nothing(cloud_app, cloud_client, live_key, graph, run_worker):
    otp_id, _wamid = sent_otp(cloud_client, live_key, run_worker, cloud_app, graph)
    before = (otp_row(cloud_app, otp_id), event_types(cloud_app, otp_id))

    r = post_receipts(cloud_client, status_item("wamid.SOMEONE-ELSES==", "read", _now()))

    assert r.status_code == 200
    assert (otp_row(cloud_app, otp_id), event_types(cloud_app, otp_id)) == before


def test_signed_bodies_we_cannot_use_are_acknowledged(cloud_app, cloud_client, live_key, graph, run_worker):
    otp_id, wamid = sent_otp(cloud_client, live_key, run_worker, cloud_app, graph)
    before = (otp_row(cloud_app, otp_id), event_types(cloud_app, otp_id))
    inbound_message = {"object": "whatsapp_business_account", "entry": [{"id": "998877", "changes": [{
        "field": "messages", "value": {"messaging_product": "whatsapp", "messages": [
            {"from": "905551112233", "id": "wamid.IN", "timestamp": "1779012300", "type": "text",
             "text": {"body": "hi"}}]}}]}]}
    bodies = [
        json.dumps(inbound_message).encode(),
        json.dumps(status_webhook(status_item(wamid, "deleted", _now()))).encode(),
        json.dumps(status_webhook({"id": wamid, "status": "read", "timestamp": "not-a-time"},
                                  {"status": "read"}, "junk", {"id": 5, "status": "read"})).encode(),
        json.dumps({"entry": "nope"}).encode(),
        json.dumps([1, 2, 3]).encode(),
        b"{not json",
        b"",
    ]

    for body in bodies:
        raw, headers = signed(body)
        assert cloud_client.post("/webhooks/whatsapp", data=raw, headers=headers).status_code == 200, body

    # The one usable item (a read with a nonsense timestamp) was applied, at "now"; nothing else moved.
    after = otp_row(cloud_app, otp_id)
    assert after["status"] == "READ" and after["read_at"] is not None
    assert {k: v for k, v in after.items() if k not in ("status", "read_at")} == \
        {k: v for k, v in before[0].items() if k not in ("status", "read_at")}
    assert event_types(cloud_app, otp_id) == [*before[1], "otp.read"]


def test_a_large_batch_of_receipts_is_accepted(cloud_app, cloud_client, live_key, graph, run_worker):
    otp_id, wamid = sent_otp(cloud_client, live_key, run_worker, cloud_app, graph)
    others = [status_item(f"wamid.OTHER{i:05d}", "delivered", _now()) for i in range(200)]

    r = post_receipts(cloud_client, *others, status_item(wamid, "delivered", _now()))

    assert r.status_code == 200
    assert show(cloud_client, live_key, otp_id)["status"] == "DELIVERED"


def test_handshake_answers_the_challenge_to_the_right_token(cloud_client):
    r = cloud_client.get("/webhooks/whatsapp", query_string={
        "hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"})

    assert r.status_code == 200
    assert r.get_data(as_text=True) == "1158201444"
    assert r.mimetype == "text/plain"


def test_handshake_refuses_a_wrong_token_or_mode(cloud_client):
    asks = [
        {"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.challenge": "1"},
        {},
    ]
    for query in asks:
        r = cloud_client.get("/webhooks/whatsapp", query_string=query)
        assert r.status_code == 403, query
        assert "1" not in r.get_data(as_text=True)


def test_handshake_with_no_verify_token_configured_never_matches(make_app, app):
    unconfigured = make_app(**{**SETTINGS, "WPOTP_PROVIDER": "sandbox", "WHATSAPP_VERIFY_TOKEN": ""})

    r = unconfigured.test_client().get("/webhooks/whatsapp", query_string={
        "hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"})

    assert r.status_code == 403
