"""SPEC §7: the gateways' ack webhooks (WAHA `message.ack`, Evolution `messages.update`) move the
status like Meta's receipts, only for the right URL token (and WAHA's HMAC when configured)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest

from tests.otp.support import event_types, send
from tests.providers.cloud_api.test_receipts import HeldSends
from wpotp.util import iso

from .gateways import HMAC_KEY, TOKEN, Evolution, Waha, post_ack, waha_signature
from .support import RECIPIENT, send_and_work, status_of


@pytest.fixture
def sent(gateway, gateway_app, live_key, run_worker):
    """An OTP the gateway took: (app, key, otp id, the gateway's message id). Overrides go to the app."""

    def make(**overrides):
        app = gateway_app(gateway, **overrides)
        key = live_key(app)
        otp_id = send_and_work(app, key, run_worker)
        assert status_of(app, key, otp_id)["status"] == "SENT"
        return app, key, otp_id, gateway.message_ids[-1]

    return make


def ack(app, gateway, message_id: str, status: str, **kwargs):
    r = post_ack(app, gateway.ack(message_id, status, **kwargs))
    assert (r.status_code, r.json) == (200, {"status": "ok"})
    return r


@pytest.mark.parametrize("last", ["read", "played"])
def test_acks_move_a_sent_otp_to_delivered_then_read(gateway, sent, last):
    app, key, otp_id, message_id = sent()

    ack(app, gateway, message_id, "sent")
    assert status_of(app, key, otp_id)["status"] == "SENT"
    ack(app, gateway, message_id, "delivered")
    detail = status_of(app, key, otp_id)
    assert detail["status"] == "DELIVERED" and detail["deliveredAt"] is not None and detail["readAt"] is None
    ack(app, gateway, message_id, last)
    detail = status_of(app, key, otp_id)
    assert detail["status"] == "READ" and detail["readAt"] is not None
    types = event_types(app, otp_id)
    assert (types.count("otp.delivered"), types.count("otp.read")) == (1, 1)


def test_out_of_order_and_repeated_acks_never_move_the_status_back(gateway, sent):
    app, key, otp_id, message_id = sent()

    ack(app, gateway, message_id, "read")
    ack(app, gateway, message_id, "delivered")  # late: kept in the timeline, status stays
    ack(app, gateway, message_id, "read")  # repeated
    ack(app, gateway, message_id, "sent")

    detail = status_of(app, key, otp_id)
    assert detail["status"] == "READ"
    assert detail["deliveredAt"] is not None and detail["readAt"] is not None
    types = event_types(app, otp_id)
    assert (types.count("otp.read"), types.count("otp.delivered"), types.count("otp.sent")) == (1, 1, 1)


def test_an_error_ack_fails_the_otp_with_the_gateways_reason(gateway, sent):
    app, key, otp_id, message_id = sent()

    ack(app, gateway, message_id, "failed")

    detail = status_of(app, key, otp_id)
    assert detail["status"] == "FAILED" and detail["failedAt"] is not None
    assert "gateway_error" in detail["error"]
    assert event_types(app, otp_id).count("otp.failed") == 1


def test_a_pending_ack_and_other_events_change_nothing(gateway, sent):
    app, key, otp_id, message_id = sent()
    before = event_types(app, otp_id)

    ack(app, gateway, message_id, "pending")
    for event in ("message.any", "message", "session.status", "messages.upsert", "send.message", "message.ack.group"):
        body = {**gateway.ack(message_id, "delivered"), "event": event}
        assert post_ack(app, body).status_code == 200

    assert status_of(app, key, otp_id)["status"] == "SENT"
    assert event_types(app, otp_id) == before


def test_acks_for_unknown_message_ids_answer_200_and_change_nothing(gateway, sent):
    app, key, otp_id, message_id = sent()
    before = event_types(app, otp_id)

    for unknown in ("true_905551112233@c.us_3EB0UNKNOWN", "BAE5UNKNOWN", message_id + "X", message_id[:-1]):
        ack(app, gateway, unknown, "delivered")

    assert status_of(app, key, otp_id)["status"] == "SENT"
    assert event_types(app, otp_id) == before


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[]", b"null", b"42", b"[" * 5000 + b"]" * 5000,
    b'{"event": "message.ack", "payload": "x"}',
    b'{"event": "message.ack", "payload": {"id": ["x"], "ack": "2"}}',
    b'{"event": "message.ack", "payload": {"id": "a\\u0000b", "ack": 2}}',
    b'{"event": "message.ack", "payload": {"id": null, "ack": 99}}',
    b'{"event": ["message.ack"], "payload": {}}',
    b'{"event": "messages.update", "data": {"keyId": {"a": 1}, "status": ["READ"]}}',
    b'{"event": "messages.update", "data": [1, "x", null, {"status": {}}]}',
    b'{"event": "messages.update", "data": {"keyId": "k", "status": true}}',
])
def test_unreadable_bodies_answer_200_and_change_nothing(gateway, sent, body):
    app, key, otp_id, _message_id = sent()

    r = post_ack(app, body)

    assert (r.status_code, r.json) == (200, {"status": "ok"})
    assert status_of(app, key, otp_id)["status"] == "SENT"


def test_a_wrong_token_is_404_and_changes_nothing(gateway, sent):
    app, key, otp_id, message_id = sent()
    body = gateway.ack(message_id, "delivered")

    for token in ("u" * 32, TOKEN[:-1], TOKEN + "t", TOKEN.upper()):
        assert post_ack(app, body, token=token).status_code == 404

    assert status_of(app, key, otp_id)["status"] == "SENT"


def test_an_unset_token_never_matches(make_app, app):
    sandbox = make_app(WPOTP_PROVIDER="sandbox", GATEWAY_WEBHOOK_TOKEN="")
    body = Waha().ack("true_905551112233@c.us_3EB0AA", "delivered")

    for token in ("", "x", "None", TOKEN):
        assert post_ack(sandbox, body, token=token).status_code == 404


def test_a_signed_waha_ack_is_applied_when_an_hmac_key_is_set(gateway, sent):
    app, key, otp_id, message_id = sent(GATEWAY_WEBHOOK_HMAC_KEY=HMAC_KEY)
    raw = json.dumps(gateway.ack(message_id, "delivered")).encode()

    r = post_ack(app, raw, headers={"X-Webhook-Hmac": waha_signature(raw), "X-Webhook-Hmac-Algorithm": "sha512"})

    assert r.status_code == 200
    assert status_of(app, key, otp_id)["status"] == "DELIVERED"


def test_a_bad_or_missing_hmac_is_401_and_changes_nothing(gateway, sent):
    app, key, otp_id, message_id = sent(GATEWAY_WEBHOOK_HMAC_KEY=HMAC_KEY)
    raw = json.dumps(gateway.ack(message_id, "delivered")).encode()
    other = json.dumps(gateway.ack(message_id, "read")).encode()
    before = event_types(app, otp_id)

    for headers in ({},
                    {"X-Webhook-Hmac": ""},
                    {"X-Webhook-Hmac": "0" * 128},
                    {"X-Webhook-Hmac": waha_signature(raw, key="another-key")},
                    {"X-Webhook-Hmac": waha_signature(other)},  # signature of another body
                    {"X-Webhook-Hmac": waha_signature(raw)[:-2]},
                    {"X-Webhook-Hmac": "é" + waha_signature(raw)[1:]},
                    {"X-Webhook-Hmac": waha_signature(raw), "X-Webhook-Hmac-Algorithm": "sha256"}):
        assert post_ack(app, raw, headers=headers).status_code == 401, headers

    assert status_of(app, key, otp_id)["status"] == "SENT"
    assert event_types(app, otp_id) == before


def test_the_hmac_is_checked_only_after_the_token(gateway, sent):
    app, _key, _otp_id, message_id = sent(GATEWAY_WEBHOOK_HMAC_KEY=HMAC_KEY)
    assert post_ack(app, gateway.ack(message_id, "read"), token="u" * 32).status_code == 404


def stamped(gateway, body: dict, ms: int) -> dict:
    """The body with the gateway's own event time: WAHA's envelope `timestamp` (ms), Evolution's `data.datetime`."""
    if gateway.kind == "waha":
        return {**body, "timestamp": ms}
    return {**body, "data": {**body["data"], "datetime": ms}}


def test_the_ack_is_stamped_with_the_gateways_event_time(gateway, sent):
    app, key, otp_id, message_id = sent()
    ms = int((time.time() - 30) * 1000)

    assert post_ack(app, stamped(gateway, gateway.ack(message_id, "delivered"), ms)).status_code == 200

    expected = iso(datetime.fromtimestamp(ms / 1000, UTC).replace(tzinfo=None))
    assert status_of(app, key, otp_id)["deliveredAt"] == expected


@pytest.mark.parametrize("offset", [86400, -30 * 86400])
def test_an_implausible_event_time_is_replaced_by_the_arrival_time(gateway, sent, offset):
    app, key, otp_id, message_id = sent()
    body = stamped(gateway, gateway.ack(message_id, "read"), int((time.time() + offset) * 1000))

    started = iso(datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=1))
    assert post_ack(app, body).status_code == 200

    read_at = status_of(app, key, otp_id)["readAt"]
    assert started <= read_at <= iso(datetime.now(UTC).replace(tzinfo=None))


def test_evolution_v1_and_batched_updates_are_understood(gateway_app, live_key, run_worker):
    with Evolution() as evolution:
        app = gateway_app(evolution)
        key = live_key(app)
        otp_id = send_and_work(app, key, run_worker)
    [message_id] = evolution.message_ids
    v1 = evolution.ack(message_id, "delivered", version=1)
    read = evolution.ack(message_id, "read", version=1)["data"]
    batch = {**v1, "data": [read, {"id": "BAE5OTHER", "status": "READ"}]}

    assert post_ack(app, v1).status_code == 200
    assert status_of(app, key, otp_id)["status"] == "DELIVERED"
    assert post_ack(app, batch).status_code == 200
    assert status_of(app, key, otp_id)["status"] == "READ"


def test_evolution_acks_posted_to_its_by_event_url_are_understood(gateway_app, live_key, run_worker):
    with Evolution() as evolution:
        app = gateway_app(evolution)
        key = live_key(app)
        otp_id = send_and_work(app, key, run_worker)
    body = {**evolution.ack(evolution.message_ids[0], "read"), "event": "MESSAGES_UPDATE"}

    assert post_ack(app, body, path="/messages-update").status_code == 200
    assert status_of(app, key, otp_id)["status"] == "READ"


# --- acks that arrive before the worker has committed the message id (issue 14, defect 11) ---

def test_acks_that_arrive_before_the_sent_commit_are_applied_after_it(gateway, gateway_app, live_key, run_worker):
    app = gateway_app(gateway)
    key = live_key(app)
    answers = []

    def acks_first(_reply):  # the gateway's acks overtake its answer to the send
        message_id = gateway.message_ids[-1]
        for status in ("delivered", "read"):
            answers.append(post_ack(app, gateway.ack(message_id, status)).status_code)
        answers.append(status_of(app, key, otp_id[0])["status"])

    held = HeldSends(gateway.http, lambda seen: urlsplit(seen.path).path == gateway.send_path, acks_first)
    otp_id = [send(app.test_client(), key, RECIPIENT, code="482913").json["id"]]
    run_worker(app)

    assert not held.errors, held.errors
    assert answers == [200, 200, "QUEUED"]  # the acks really came first
    detail = status_of(app, key, otp_id[0])
    assert detail["status"] == "READ" and detail["deliveredAt"] is not None and detail["readAt"] is not None
    assert detail["sentAt"] <= detail["deliveredAt"] <= detail["readAt"]
    types = event_types(app, otp_id[0])
    assert types.index("otp.sent") < types.index("otp.delivered") < types.index("otp.read")
