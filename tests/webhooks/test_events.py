"""SPEC §6: every public OTP and message event reaches the app's endpoint through a real worker,
with the exact headers and body, signed with the app's secret; internal events never do."""

from __future__ import annotations

import json
from collections import Counter

from sqlalchemy import select, update

from tests.helpers import make_key
from tests.otp.support import run_queue
from wpotp.extensions import db
from wpotp.models import Event, Otp, Template, WebhookDelivery
from wpotp.otp.maintenance import sweep
from wpotp.util import iso, utcnow

from .support import (
    ISO_MS_Z,
    MESSAGE_DATA,
    OTP_DATA,
    canceled_otp,
    deliveries,
    header,
    invoke,
    send_otp,
    set_webhook,
    signed_with,
    timestamp_ok,
)

CODE = "739164"  # chosen so a test can look for it anywhere in what the receiver got
UNDELIVERABLE = "+15005550001"


def _events(receiver) -> Counter:
    return Counter(seen.json["event"] for seen in receiver.seen)


def _by_event(receiver, event_type: str):
    matches = [seen for seen in receiver.seen if seen.json["event"] == event_type]
    assert len(matches) == 1, [s.json for s in receiver.seen]
    return matches[0]


def _assert_webhook(app, seen, secret: str, event_type: str, data: dict, path: str = "/hooks/wpotp") -> None:
    """One request as SPEC §6 shows it: POST, the four headers, the body, the signature."""
    assert (seen.method, seen.path) == ("POST", path)
    assert header(seen, "Content-Type") == "application/json"
    assert header(seen, "X-Wpotp-Event") == event_type
    body = json.loads(seen.body)
    assert set(body) == {"id", "event", "createdAt", "data"}
    assert header(seen, "X-Wpotp-Delivery") == body["id"]
    assert body["event"] == event_type
    assert ISO_MS_Z.match(body["createdAt"]), body["createdAt"]
    assert body["data"] == data
    with app.app_context():
        event = db.session.get(Event, body["id"])
        assert event is not None and event.type == event_type
        assert iso(event.created_at) == body["createdAt"]
    assert signed_with(secret, seen), seen.headers
    assert not signed_with(secret + "x", seen)
    assert timestamp_ok(secret, seen), seen.headers  # SPEC §12: the attempt's timestamp, signed with the body


def _assert_no_code(receiver, *codes: str) -> None:
    for seen in receiver.seen:
        for code in codes:
            assert code not in seen.body.decode()
            assert all(code not in value for value in seen.headers.values())


def _template_id(app, name: str) -> str:
    with app.app_context():
        return db.session.scalars(select(Template.id).where(Template.name == name, Template.language == "en")).one()


def test_otp_sent_delivered_read_and_verified_arrive_signed_with_exact_headers_and_body(
        app, client, api_key, run_worker, receiver):
    secret = set_webhook(app, receiver.url + "/hooks/wpotp")
    otp = send_otp(client, api_key, "+905551117001", code=CODE, reference="order-9f3a2c")
    run_worker()
    assert _events(receiver) == Counter(["otp.sent", "otp.delivered", "otp.read"])

    r = client.post(f"/v1/otp/{otp['id']}/verify", headers=api_key.headers, json={"code": CODE})
    assert r.status_code == 200, r.json
    run_worker()

    assert _events(receiver) == Counter(["otp.sent", "otp.delivered", "otp.read", "otp.verified"])
    base = {"id": otp["id"], "recipient": "+905551117001", "reference": "order-9f3a2c",
            "templateId": otp["templateId"], "channel": "whatsapp"}
    for event_type, status in (("otp.sent", "SENT"), ("otp.delivered", "DELIVERED"), ("otp.read", "READ"),
                               ("otp.verified", "VERIFIED")):
        _assert_webhook(app, _by_event(receiver, event_type), secret, event_type, {**base, "status": status})
    _assert_no_code(receiver, CODE)
    assert {d["status"] for d in deliveries(app)} == {"succeeded"}


def test_canceled_otp_sends_otp_canceled(app, client, api_key, run_worker, receiver):
    secret = set_webhook(app, receiver.url + "/hooks/wpotp")
    otp_id = canceled_otp(client, api_key, "+905551117002", code=CODE)
    run_worker()

    assert _events(receiver) == Counter(["otp.canceled"])  # canceled before the send job ran
    with app.app_context():
        template_id = db.session.get(Otp, otp_id).template_id
    _assert_webhook(app, receiver.seen[0], secret, "otp.canceled",
                    {"id": otp_id, "recipient": "+905551117002", "reference": None, "status": "CANCELED",
                     "templateId": template_id, "channel": "whatsapp"})
    _assert_no_code(receiver, CODE)


def test_expired_otp_sends_otp_expired_from_the_sweep(app, client, api_key, run_worker, receiver):
    secret = set_webhook(app, receiver.url + "/hooks/wpotp", events=["otp.expired"])
    otp = send_otp(client, api_key, "+905551117003", code=CODE, reference="exp-1")
    run_worker()
    assert receiver.seen == []  # only otp.expired is wanted
    with app.app_context():
        db.session.execute(update(Otp).where(Otp.id == otp["id"]).values(expires_at=utcnow()))
        db.session.commit()
        assert sweep()["expired"] == 1
    run_worker()

    assert _events(receiver) == Counter(["otp.expired"])
    _assert_webhook(app, receiver.seen[0], secret, "otp.expired",
                    {"id": otp["id"], "recipient": "+905551117003", "reference": "exp-1", "status": "EXPIRED",
                     "templateId": otp["templateId"], "channel": "whatsapp"})
    _assert_no_code(receiver, CODE)


def test_undeliverable_recipient_sends_otp_failed_with_the_reason(app, client, api_key, run_worker, receiver):
    secret = set_webhook(app, receiver.url + "/hooks/wpotp")
    otp = send_otp(client, api_key, UNDELIVERABLE, code=CODE)
    run_worker()

    assert _events(receiver) == Counter(["otp.failed"])
    seen = receiver.seen[0]
    error = seen.json["data"].get("error", "")
    assert "not on WhatsApp" in error
    _assert_webhook(app, seen, secret, "otp.failed",
                    {"id": otp["id"], "recipient": UNDELIVERABLE, "reference": None, "status": "FAILED",
                     "templateId": otp["templateId"], "channel": "whatsapp", "error": error})
    assert set(seen.json["data"]) == OTP_DATA | {"error"}
    _assert_no_code(receiver, CODE)


def test_message_sent_delivered_read_arrive_without_a_reference(app, client, api_key, run_worker, receiver):
    secret = set_webhook(app, receiver.url + "/hooks/wpotp")
    template_id = _template_id(app, "wpotp_order_update")
    r = client.post("/v1/messages", headers=api_key.headers,
                    json={"recipient": "+905551117004", "templateId": template_id,
                          "variables": {"1": "A-1001", "2": "on its way"}})
    assert r.status_code == 202, r.json
    run_worker()

    assert _events(receiver) == Counter(["message.sent", "message.delivered", "message.read"])
    for event_type, status in (("message.sent", "SENT"), ("message.delivered", "DELIVERED"),
                               ("message.read", "READ")):
        seen = _by_event(receiver, event_type)
        _assert_webhook(app, seen, secret, event_type,
                        {"id": r.json["id"], "recipient": "+905551117004", "status": status,
                         "templateId": template_id})
        assert set(seen.json["data"]) == MESSAGE_DATA


def test_undeliverable_message_sends_message_failed(app, client, api_key, run_worker, receiver):
    secret = set_webhook(app, receiver.url + "/hooks/wpotp")
    template_id = _template_id(app, "wpotp_order_update")
    r = client.post("/v1/messages", headers=api_key.headers,
                    json={"recipient": UNDELIVERABLE, "templateId": template_id,
                          "variables": {"1": "A-1001", "2": "on its way"}})
    assert r.status_code == 202, r.json
    run_worker()

    assert _events(receiver) == Counter(["message.failed"])
    seen = receiver.seen[0]
    assert "not on WhatsApp" in seen.json["data"]["error"]
    _assert_webhook(app, seen, secret, "message.failed",
                    {"id": r.json["id"], "recipient": UNDELIVERABLE, "status": "FAILED", "templateId": template_id,
                     "error": seen.json["data"]["error"]})


def test_internal_and_superseded_events_are_never_sent(make_app, app, api_key, run_worker, receiver, outbox):
    quick = make_app(RESEND_INTERVAL=0)
    c = quick.test_client()
    set_webhook(quick, receiver.url + "/hooks/wpotp")
    otp = send_otp(c, api_key, "+905551117005")
    run_queue(quick, "otp")  # generation 1 is SENT; its receipts wait in the queue
    r = c.post(f"/v1/otp/{otp['id']}/resend", headers=api_key.headers)
    assert r.status_code == 200, r.json
    run_worker(quick)  # generation 2 is sent; generation 1's receipts arrive late (superseded)

    with quick.app_context():
        recorded = Counter(db.session.scalars(select(Event.type).where(Event.otp_id == otp["id"])))
    assert recorded["otp.queued"] == 1 and recorded["otp.resent"] == 1  # they happened ...
    assert recorded["otp.delivered"] == 2  # ... and so did generation 1's late receipt
    # ... but only the public events of the live generation were posted.
    assert _events(receiver) == Counter(["otp.sent", "otp.sent", "otp.delivered", "otp.read"])
    assert {d["event_type"] for d in deliveries(quick)} == {"otp.sent", "otp.delivered", "otp.read"}
    codes = [e["code"] for e in outbox() if e["otpId"] == otp["id"]]
    assert len(codes) == 2
    _assert_no_code(receiver, *codes)


def test_message_queued_is_never_sent(app, client, api_key, receiver):
    set_webhook(app, receiver.url + "/hooks/wpotp")
    r = client.post("/v1/messages", headers=api_key.headers,
                    json={"recipient": "+905551117006", "templateId": _template_id(app, "wpotp_order_update"),
                          "variables": {"1": "A-1001", "2": "on its way"}})
    assert r.status_code == 202
    assert deliveries(app) == []  # no worker yet: only message.queued has happened, and it owes nothing


def test_events_option_limits_what_arrives(app, client, api_key, run_worker, receiver):
    set_webhook(app, receiver.url + "/hooks/wpotp", events=["otp.verified", "otp.canceled"])
    verified = send_otp(client, api_key, "+905551117007", code=CODE)
    run_worker()  # sent, delivered, read: none wanted
    assert receiver.seen == []
    r = client.post(f"/v1/otp/{verified['id']}/verify", headers=api_key.headers, json={"code": CODE})
    assert r.status_code == 200
    canceled = canceled_otp(client, api_key, "+905551117008")
    run_worker()

    assert _events(receiver) == Counter(["otp.verified", "otp.canceled"])
    assert {(s.json["event"], s.json["data"]["id"]) for s in receiver.seen} == {
        ("otp.verified", verified["id"]), ("otp.canceled", canceled)}
    assert len(deliveries(app)) == 2


def test_unknown_event_names_are_refused(app, api_key, receiver):
    result = invoke(app, "set-webhook", "--app", "default", "--url", receiver.url,
                    "--events", "otp.sent,otp.queued,otp.bogus")
    assert result.exit_code != 0
    assert "unknown events: otp.bogus, otp.queued" in result.output


def test_each_app_hears_only_its_own_events(app, client, api_key, run_worker, receiver, second_receiver):
    other = make_key(app, "other")
    silent = make_key(app, "silent")  # no endpoint at all
    set_webhook(app, receiver.url + "/hooks/wpotp")
    set_webhook(app, second_receiver.url + "/other", app_name="other")
    mine = canceled_otp(client, api_key, "+905551117009")
    theirs = canceled_otp(client, other, "+905551117010")
    canceled_otp(client, silent, "+905551117011")
    run_worker()

    assert [s.json["data"]["id"] for s in receiver.seen] == [mine]
    assert [s.json["data"]["id"] for s in second_receiver.seen] == [theirs]
    with app.app_context():
        owed = db.session.scalars(select(WebhookDelivery.app_id)).all()
    assert sorted(owed) == sorted([api_key.app_id, other.app_id])
