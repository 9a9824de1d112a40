"""SPEC §6 per-app endpoint: the secret is shown once, stored encrypted and rotatable (the old one
stops at once); the operator can redeliver any delivered event."""

from __future__ import annotations

from sqlalchemy import select

from tests.doubles import Reply
from tests.helpers import make_key
from tests.otp.support import run_queue
from wpotp.extensions import db
from wpotp.models import WebhookEndpoint

from .support import (
    attempts,
    canceled_otp,
    deliveries,
    event_id,
    header,
    invoke,
    only_delivery,
    scripted,
    send_otp,
    set_webhook,
    signed_with,
)


def _endpoint(app) -> WebhookEndpoint:
    with app.app_context():
        endpoint = db.session.scalars(select(WebhookEndpoint)).one()
        db.session.expunge(endpoint)
        return endpoint


def test_the_secret_is_shown_once_and_stored_encrypted(app, api_key, receiver):
    result = invoke(app, "set-webhook", "--app", "default", "--url", receiver.url + "/hook")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    secret = lines[-1]
    assert secret.startswith("whsec_") and len(secret) >= 40
    assert all(secret not in line for line in lines[:-1])
    endpoint = _endpoint(app)
    assert secret not in endpoint.secret_sealed
    assert endpoint.secret_prefix == secret[:10]
    assert endpoint.events == ["otp.sent", "otp.delivered", "otp.read", "otp.verified", "otp.failed", "otp.expired",
                               "otp.canceled", "message.sent", "message.delivered", "message.read", "message.failed"]


def test_setting_the_webhook_again_rotates_the_secret(app, client, api_key, receiver, run_worker):
    old = set_webhook(app, receiver.url + "/hook")
    new = set_webhook(app, receiver.url + "/hook")
    assert new != old
    canceled_otp(client, api_key, "+905551121001")
    run_worker()

    (seen,) = receiver.seen
    assert signed_with(new, seen)
    assert not signed_with(old, seen)


def test_a_retry_after_rotation_is_signed_with_the_new_secret(make_app, app, api_key, receiver):
    quick = make_app(WEBHOOK_RETRY_DELAYS=[0])
    receiver.handler = scripted(Reply(500))
    old = set_webhook(quick, receiver.url + "/hook", events=["otp.canceled"])
    canceled_otp(quick.test_client(), api_key, "+905551121002")
    run_queue(quick, "webhooks", max_jobs=1)  # attempt 1 fails; its retry waits
    new = set_webhook(quick, receiver.url + "/hook", events=["otp.canceled"])
    run_queue(quick, "webhooks")

    first, second = receiver.seen
    assert signed_with(old, first) and not signed_with(new, first)
    assert signed_with(new, second) and not signed_with(old, second)  # the old secret stopped at once
    assert only_delivery(quick)["status"] == "succeeded"


def test_a_new_otp_hash_key_needs_set_webhook_again(make_app, app, api_key, receiver):
    set_webhook(app, receiver.url + "/hook", events=["otp.canceled"])
    rekeyed = make_app(OTP_HASH_KEY="a-different-data-key-" + "k" * 40, WEBHOOK_RETRY_DELAYS=[0])
    canceled_otp(app.test_client(), api_key, "+905551121003")
    run_queue(rekeyed, "webhooks", max_jobs=1)

    assert receiver.seen == []  # the stored secret cannot be read with the new key
    delivery = only_delivery(app)
    (attempt,) = attempts(app, delivery["id"])
    assert "OTP_HASH_KEY" in attempt["error"] and attempt["status_code"] is None
    assert delivery["status"] == "pending"

    secret = set_webhook(rekeyed, receiver.url + "/hook", events=["otp.canceled"])
    run_queue(rekeyed, "webhooks")
    assert len(receiver.seen) == 1 and signed_with(secret, receiver.seen[0])
    assert only_delivery(app)["status"] == "succeeded"


def test_redeliver_posts_a_delivered_event_again(app, client, api_key, receiver, run_worker):
    secret = set_webhook(app, receiver.url + "/hook")
    otp_id = canceled_otp(client, api_key, "+905551121004")
    run_worker()
    evt = event_id(app, otp_id, "otp.canceled")
    assert only_delivery(app)["status"] == "succeeded"

    result = invoke(app, "redeliver", evt)
    assert result.exit_code == 0, result.output
    new_delivery = result.output.strip().splitlines()[-1]
    run_worker()

    first, again = receiver.seen
    assert header(again, "X-Wpotp-Delivery") == header(first, "X-Wpotp-Delivery") == evt
    assert again.body == first.body
    assert signed_with(secret, again)
    rows = deliveries(app, event_id=evt)
    assert len(rows) == 2 and {r["status"] for r in rows} == {"succeeded"}
    assert new_delivery in {r["id"] for r in rows}


def test_redeliver_goes_to_the_current_endpoint_with_the_current_secret(app, client, api_key, receiver,
                                                                       second_receiver, run_worker):
    set_webhook(app, receiver.url + "/hook")
    otp_id = canceled_otp(client, api_key, "+905551121005")
    run_worker()
    secret = set_webhook(app, second_receiver.url + "/moved")

    assert invoke(app, "redeliver", event_id(app, otp_id, "otp.canceled")).exit_code == 0
    run_worker()
    assert len(receiver.seen) == 1
    (seen,) = second_receiver.seen
    assert seen.path == "/moved" and signed_with(secret, seen)
    assert seen.body == receiver.seen[0].body


def test_redeliver_of_an_unknown_event_fails(app, api_key, receiver):
    set_webhook(app, receiver.url + "/hook")
    for bad in ("evt_doesnotexist", "evt_" + "x" * 60):
        result = invoke(app, "redeliver", bad)
        assert result.exit_code != 0
        assert "no event" in result.output
    assert deliveries(app) == []


def test_redeliver_without_an_endpoint_fails(app, client, api_key):
    lonely = make_key(app, "lonely")
    otp_id = canceled_otp(client, lonely, "+905551121006")
    result = invoke(app, "redeliver", event_id(app, otp_id, "otp.canceled"))
    assert result.exit_code != 0
    assert "no webhook endpoint" in result.output
    assert deliveries(app) == []


def test_redeliver_refuses_an_internal_event(app, client, api_key, receiver, run_worker):
    set_webhook(app, receiver.url + "/hook")
    otp = send_otp(client, api_key, "+905551121007")
    result = invoke(app, "redeliver", event_id(app, otp["id"], "otp.queued"))
    run_worker()

    assert "otp.queued" not in [seen.json["event"] for seen in receiver.seen]
    assert result.exit_code != 0
