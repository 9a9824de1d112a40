"""POST /v1/messages and GET /v1/messages/{id}: non-OTP template messages (SPEC §5)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from tests.helpers import make_key
from wpotp.extensions import db
from wpotp.models import Message, SendAttempt, Template
from wpotp.otp.maintenance import sweep

NOTICE = {"1": "A-1001", "2": "on its way"}


def _template_id(app, name="wpotp_order_update") -> str:
    with app.app_context():
        return db.session.scalars(select(Template.id).where(Template.name == name, Template.language == "en")).one()


def _send(client, key, app, **fields):
    body = {"recipient": "+905551112233", "templateId": _template_id(app), "variables": NOTICE, **fields}
    return client.post("/v1/messages", headers=key.headers, json=body)


def test_message_is_accepted_queued_then_sent_delivered_read(app, client, api_key, run_worker, outbox):
    r = _send(client, api_key, app)
    assert r.status_code == 202
    assert r.json["id"].startswith("msg_") and r.json["status"] == "QUEUED"
    run_worker()
    shown = client.get(f"/v1/messages/{r.json['id']}", headers=api_key.headers).json
    assert shown["status"] == "READ"
    assert [e["type"] for e in shown["timeline"]] == ["message.queued", "message.sent", "message.delivered",
                                                      "message.read"]
    assert outbox("+905551112233")[0]["text"] == "Your order A-1001 is on its way."


def test_variables_must_match_the_templates_placeholders(app, client, api_key):
    r = _send(client, api_key, app, variables={"1": "A-1001"})
    assert r.status_code == 400 and r.json["error"]["code"] == "VALIDATION_ERROR"
    assert r.json["error"]["details"]["fields"] == {"variables.2": "missing"}
    r = _send(client, api_key, app, variables={**NOTICE, "3": "extra"})
    assert r.json["error"]["details"]["fields"] == {"variables.3": "not in the template"}
    r = _send(client, api_key, app, variables={"1": "A-1001", "2": ""})
    assert r.status_code == 400 and "variables.2" in r.json["error"]["details"]["fields"]
    r = _send(client, api_key, app, variables={"1": "A-1001", "2": 7})
    assert r.status_code == 400 and "variables.2" in r.json["error"]["details"]["fields"]


def test_authentication_templates_are_refused(app, client, api_key):
    r = _send(client, api_key, app, templateId=_template_id(app, "wpotp_verification"), variables={"1": "1234"})
    assert r.status_code == 400 and r.json["error"]["details"]["fields"] == {"templateId": "an AUTHENTICATION template"}


def test_unknown_template_and_bad_recipient(app, client, api_key):
    assert _send(client, api_key, app, templateId="tpl_nope").json["error"]["code"] == "TEMPLATE_NOT_FOUND"
    assert _send(client, api_key, app, recipient="+90555").json["error"]["code"] == "INVALID_PHONE"
    r = _send(client, api_key, app, expiresInSeconds=10)
    assert r.status_code == 400 and "expiresInSeconds" in r.json["error"]["details"]["fields"]


def test_messages_of_another_app_are_not_found(app, client, api_key):
    msg_id = _send(client, api_key, app).json["id"]
    other = make_key(app, "other")
    r = client.get(f"/v1/messages/{msg_id}", headers=other.headers)
    assert r.status_code == 404 and r.json["error"]["code"] == "NOT_FOUND"
    assert client.get("/v1/messages/msg_missing", headers=api_key.headers).status_code == 404


def test_undeliverable_recipient_fails_the_message(app, client, api_key, run_worker):
    msg_id = _send(client, api_key, app, recipient="+15005550001").json["id"]
    run_worker()
    shown = client.get(f"/v1/messages/{msg_id}", headers=api_key.headers).json
    assert shown["status"] == "FAILED" and "not on WhatsApp" in shown["error"]
    assert shown["timeline"][-1]["type"] == "message.failed"


def test_retryable_failure_retries_then_fails(make_app, app, run_worker):
    retrying = make_app(SEND_RETRY_DELAYS=[0, 0])
    key = make_key(retrying)
    msg_id = _send(retrying.test_client(), key, retrying, recipient="+15005550002").json["id"]
    run_worker(retrying)
    with retrying.app_context():
        assert db.session.get(Message, msg_id).status == "FAILED"
        attempts = db.session.scalars(select(SendAttempt).where(SendAttempt.message_id == msg_id)).all()
        assert len(attempts) == 3 and not any(a.ok for a in attempts)


def test_message_not_sent_before_its_expiry_expires(app, client, api_key, run_worker):
    msg_id = _send(client, api_key, app).json["id"]
    with app.app_context():
        message = db.session.get(Message, msg_id)
        message.expires_at -= timedelta(seconds=301)
        db.session.commit()
        assert sweep()["messages_expired"] == 1
    run_worker()
    shown = client.get(f"/v1/messages/{msg_id}", headers=api_key.headers).json
    assert shown["status"] == "EXPIRED" and shown["sentAt"] is None


def test_messages_count_against_the_daily_cap(app, client):
    key = make_key(app, "capped", daily_send_cap=1)
    assert _send(client, key, app).status_code == 202
    r = _send(client, key, app, recipient="+905551119999")
    assert r.status_code == 429 and r.json["error"]["details"]["limit"] == "1 per 1 day"
    with app.app_context():
        assert len(db.session.scalars(select(Message).where(Message.app_id == key.app_id)).all()) == 1
