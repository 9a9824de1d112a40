"""wpotp.otp.store: the hot statements as Core. The answers are built from the values written
(no SELECT back), so they must say exactly what the rows say; a compare-and-set's attempt,
event and outbox rows exist only when it matched (one statement with CTEs on PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import func, select

from wpotp.api.serializers import otp_detail
from wpotp.extensions import db
from wpotp.models import Event, Otp, VerifyAttempt, WebhookDelivery
from wpotp.otp.store import COLUMNS

from ..webhooks.support import set_webhook
from .support import send, show, verify


def test_the_view_has_every_column_of_the_otps_table():
    assert set(COLUMNS) == {c.name for c in Otp.__table__.columns}


def _rows(app, model, otp_id: str) -> list:
    """The OTP's rows of `model` (a delivery belongs to it through its event)."""
    query = select(model)
    if model is WebhookDelivery:
        query = query.join(Event, Event.id == WebhookDelivery.event_id).where(Event.otp_id == otp_id)
    else:
        query = query.where(model.otp_id == otp_id)
    with app.app_context():
        return list(db.session.scalars(query))


def test_a_send_answers_what_it_stored_and_writes_its_queued_event(app, client, api_key):
    r = send(client, api_key, "+905551110001", code="123456", reference="order-1")
    assert r.status_code == 201, r.json
    with app.app_context():
        stored = otp_detail(db.session.get(Otp, r.json["id"]), with_timeline=False)
    assert {k: stored[k] for k in r.json} == r.json
    assert [e.type for e in _rows(app, Event, r.json["id"])] == ["otp.queued"]


def test_show_reads_the_otp_and_its_timeline_in_order(app, client, api_key):
    otp_id = send(client, api_key, "+905551110002", code="123456").json["id"]
    assert verify(client, api_key, otp_id, "000000").status_code == 400
    assert verify(client, api_key, otp_id, "123456").status_code == 200
    shown = show(client, api_key, otp_id)
    with app.app_context():
        expected = otp_detail(db.session.get(Otp, otp_id))  # the ORM row and a query of its events
    assert shown == expected
    assert [e["type"] for e in shown["timeline"]] == ["otp.queued", "otp.verified"]


def test_a_verify_writes_its_attempt_event_and_delivery_only_when_the_claim_matches(app, client, api_key):
    set_webhook(app, "https://hooks.example.com/wpotp", events=["otp.verified"])
    otp_id = send(client, api_key, "+905551110003", code="123456").json["id"]

    assert verify(client, api_key, otp_id, "000000").status_code == 400
    assert verify(client, api_key, otp_id, "123456").status_code == 200
    assert verify(client, api_key, otp_id, "123456").status_code == 409  # already verified: no second claim

    assert [a.result for a in sorted(_rows(app, VerifyAttempt, otp_id), key=lambda a: a.id)] == [
        "invalid_code", "verified", "otp_already_verified"]
    assert [e.type for e in _rows(app, Event, otp_id)].count("otp.verified") == 1
    [delivery] = _rows(app, WebhookDelivery, otp_id)
    assert (delivery.event_type, delivery.status, delivery.url) == (
        "otp.verified", "pending", "https://hooks.example.com/wpotp")
    with app.app_context():
        row = db.session.get(Otp, otp_id)
        assert (row.status, row.attempts) == ("VERIFIED", 1)
        assert db.session.scalar(select(func.count()).select_from(WebhookDelivery)) == 1
