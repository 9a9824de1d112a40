"""Data retention (wpotp/otp/retention.py): `purge` and `flask wpotp purge`, on a real database, with
OTPs sent through a real worker and webhooks delivered to a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import math
from datetime import timedelta

import pytest
from sqlalchemy import event, select, update

from tests.doubles import HttpDouble
from tests.helpers import make_key
from tests.reports.support import add_otps
from tests.webhooks.support import invoke, set_webhook
from wpotp.extensions import db
from wpotp.models import (
    App,
    AuditEntry,
    Event,
    Message,
    Otp,
    SendAttempt,
    Template,
    VerifyAttempt,
    WebhookAttempt,
    WebhookDelivery,
)
from wpotp.otp.codes import hash_recipient
from wpotp.otp.retention import STEPS, purge
from wpotp.reports.usage import forget_reports, usage_report
from wpotp.util import new_id, utcnow

from .support import send, show, verify

NUMBERS = ("+905551117701", "+905551117702", "+905551117703")
LATER = timedelta(days=31)  # past the default RETENTION_DAYS (30)
TABLES = (Otp, Message, Event, VerifyAttempt, SendAttempt, WebhookDelivery, WebhookAttempt)


def _send_message(client, app, key, recipient: str) -> str:
    with app.app_context():
        template_id = db.session.scalars(select(Template.id).where(Template.name == "wpotp_order_update",
                                                                   Template.language == "en")).one()
    r = client.post("/v1/messages", headers=key.headers, json={
        "recipient": recipient, "templateId": template_id, "variables": {"1": "Ada", "2": "#1234"}})
    assert r.status_code == 202, r.json
    return r.json["id"]


def _history(app, client, api_key, run_worker, outbox) -> list[str]:
    """Three OTPs (one verified after a wrong guess, one canceled, one left to be read), a message,
    their events, send attempts, and webhook deliveries to a real endpoint."""
    ids = []
    for number in NUMBERS:
        r = send(client, api_key, number)
        assert r.status_code == 201, r.json
        ids.append(r.json["id"])
    _send_message(client, app, api_key, "+905551117709")
    run_worker()
    code = outbox(NUMBERS[0])[0]["code"]
    assert verify(client, api_key, ids[0], "000000" if code != "000000" else "111111").status_code == 400
    assert verify(client, api_key, ids[0], code).json["verified"]
    assert client.post(f"/v1/otp/{ids[1]}/cancel", headers=api_key.headers).status_code == 200
    run_worker()  # the webhook deliveries of those events
    return ids


def _report(app, app_id: str) -> dict:
    hour = utcnow().replace(minute=0, second=0, microsecond=0)
    with app.app_context():
        forget_reports(app_id)  # counted from the tables, not the report cache
        return usage_report(app_id, hour - timedelta(days=1), hour + timedelta(hours=2), "hour")


def _purge(app, **kwargs):
    with app.app_context():
        return purge(**kwargs)


def _rows(app, model) -> list[dict]:
    with app.app_context():  # in key order: an UPDATE moves rows within PostgreSQL's heap
        return [{c.name: getattr(row, c.name) for c in model.__table__.columns}
                for row in db.session.scalars(select(model).order_by(*model.__table__.primary_key.columns))]


def test_purge_anonymises_recipients_drops_ips_and_deletes_old_events(app, client, api_key, run_worker, outbox):
    with HttpDouble() as endpoint:
        set_webhook(app, endpoint.url)
        ids = _history(app, client, api_key, run_worker, outbox)
        assert endpoint.seen  # the deliveries really happened
    before = _report(app, api_key.app_id)
    assert len(_rows(app, Event)) and len(_rows(app, WebhookDelivery)) and len(_rows(app, WebhookAttempt))
    assert [a["ip"] for a in _rows(app, VerifyAttempt)] == ["127.0.0.1", "127.0.0.1"]

    result = _purge(app, now=utcnow() + LATER)

    assert result.counts["otps_anonymised"] == 3 and result.counts["messages_anonymised"] == 1
    assert result.counts["attempt_ips_dropped"] == 2 and result.counts["events_deleted"] > 0
    otps = {row["id"]: row for row in _rows(app, Otp)}
    for otp_id, number in zip(ids, NUMBERS, strict=True):
        row = otps[otp_id]
        assert row["recipient"] == "" and row["anonymised_at"] is not None and row["country"] == "TR"
        with app.app_context():
            assert row["recipient_hash"] == hash_recipient(number)
        assert row["recipient_hash"] != hashlib.sha256(number.encode()).hexdigest()  # keyed, not a plain hash
    assert otps[ids[0]]["status"] == "VERIFIED" and otps[ids[1]]["status"] == "CANCELED"
    [message] = _rows(app, Message)
    assert message["recipient"] == "" and message["variables"] == {} and message["anonymised_at"] is not None
    assert [(a["result"], a["ip"]) for a in _rows(app, VerifyAttempt)] == [("invalid_code", None), ("verified", None)]
    for model in (Event, SendAttempt, WebhookDelivery, WebhookAttempt):
        assert _rows(app, model) == [], model.__tablename__
    for model in TABLES:  # the numbers are nowhere, in any column
        dump = repr(_rows(app, model))
        assert not any(n[1:] in dump for n in (*NUMBERS, "+905551117709")), model.__tablename__

    assert _report(app, api_key.app_id) == before  # reports keep their counts

    shown_message = client.get(f"/v1/messages/{message['id']}", headers=api_key.headers).json
    assert shown_message["recipient"] is None and shown_message["variables"] == {}
    assert shown_message["anonymisedAt"] is not None

    shown = show(client, api_key, ids[0])
    assert shown["recipient"] is None and shown["anonymisedAt"] is not None and shown["timeline"] == []
    listed = client.get("/v1/otp", headers=api_key.headers).json["data"]
    assert {o["id"]: (o["recipient"], o["anonymisedAt"] is not None) for o in listed} == {
        i: (None, True) for i in ids}


def test_purge_is_idempotent(app, client, api_key, run_worker, outbox):
    _history(app, client, api_key, run_worker, outbox)
    later = utcnow() + LATER
    first = _purge(app, now=later)
    assert first.batches > 0
    snapshot = {m.__tablename__: _rows(app, m) for m in TABLES}
    again = _purge(app, now=later)
    assert again.counts == dict.fromkeys(STEPS, 0) and again.batches == 0
    assert {m.__tablename__: _rows(app, m) for m in TABLES} == snapshot


@pytest.mark.parametrize(("rows", "batch"), [(7, 3), (7, 7), (8, 2), (5, 100)])
def test_purge_works_in_batches_one_commit_each(app, api_key, rows, batch):
    old = utcnow() - timedelta(days=40)
    add_otps(app, api_key.app_id, *[{"created_at": old + timedelta(minutes=i), "status": "EXPIRED"}
                                    for i in range(rows)])
    commits = []

    def count(conn) -> None:
        commits.append(conn)

    with app.app_context():
        event.listen(db.engine, "commit", count)  # every COMMIT the purge sends to the database
        try:
            result = purge(batch=batch)
        finally:
            event.remove(db.engine, "commit", count)
    assert result.counts["otps_anonymised"] == rows
    assert result.batches == math.ceil(rows / batch) == len(commits)
    assert all(r["anonymised_at"] is not None for r in _rows(app, Otp))


def test_each_app_keeps_its_own_retention_period(app, api_key):
    keeper = make_key(app, "keeper", retention_days=90)
    old = utcnow() - timedelta(days=40)
    mine = add_otps(app, api_key.app_id, {"created_at": old, "status": "EXPIRED", "recipient": "+905551117711"},
                    # never marked EXPIRED by a sweep, but long past its expiry: anonymised too
                    {"created_at": old, "status": "SENT", "recipient": "+905551117712"},
                    {"created_at": utcnow() - timedelta(days=29), "status": "FAILED",
                     "recipient": "+905551117713"})  # not old enough
    kept = add_otps(app, keeper.app_id, {"created_at": old, "status": "VERIFIED", "verify_after": 3,
                                         "recipient": "+905551117714"})
    result = _purge(app)
    assert result.counts["otps_anonymised"] == 2
    rows = {r["id"]: r for r in _rows(app, Otp)}
    assert [rows[i]["recipient"] for i in (*mine, *kept)] == ["", "", "+905551117713", "+905551117714"]
    assert [rows[i]["anonymised_at"] is None for i in (*mine, *kept)] == [False, False, True, True]

    with app.app_context():
        db.session.execute(update(App).where(App.id == keeper.app_id).values(retention_days=30))
        db.session.commit()
    assert _purge(app).counts["otps_anonymised"] == 1  # the keeper's, now that it keeps 30 days


def test_an_event_still_owed_to_an_endpoint_waits_for_its_delivery(app, api_key):
    old = utcnow() - timedelta(days=40)
    [otp_id] = add_otps(app, api_key.app_id, {"created_at": old, "status": "EXPIRED"})
    with app.app_context():
        evt = Event(id=new_id("evt"), app_id=api_key.app_id, otp_id=otp_id, type="otp.expired", created_at=old,
                    data={"status": "EXPIRED"})
        done = Event(id=new_id("evt"), app_id=api_key.app_id, otp_id=otp_id, type="otp.queued", created_at=old,
                     data={"status": "QUEUED"})
        db.session.add_all([evt, done])
        db.session.flush()
        db.session.add(WebhookDelivery(id=new_id("whd"), app_id=api_key.app_id, event_id=evt.id,
                                       event_type="otp.expired", url="http://127.0.0.1:9/hook", status="pending",
                                       created_at=old, next_attempt_at=utcnow()))
        db.session.commit()
        evt_id, done_id = evt.id, done.id
    assert _purge(app).counts["events_deleted"] == 1
    assert [e["id"] for e in _rows(app, Event)] == [evt_id]
    assert done_id not in [e["id"] for e in _rows(app, Event)]
    with app.app_context():
        db.session.execute(update(WebhookDelivery).values(status="given_up"))
        db.session.commit()
    result = _purge(app)
    assert result.counts["webhook_deliveries_deleted"] == 1 and result.counts["events_deleted"] == 1
    assert _rows(app, Event) == [] and _rows(app, WebhookDelivery) == []


def test_dry_run_counts_and_changes_nothing(app, client, api_key, run_worker, outbox):
    _history(app, client, api_key, run_worker, outbox)
    snapshot = {m.__tablename__: _rows(app, m) for m in TABLES}
    later = utcnow() + LATER
    dry = _purge(app, now=later, dry_run=True)
    assert dry.batches == 0 and dry.counts["otps_anonymised"] == 3
    assert {m.__tablename__: _rows(app, m) for m in TABLES} == snapshot
    assert _purge(app, now=later).counts == dry.counts  # it said what the real run did


def test_purge_command(app, api_key):
    old = utcnow() - timedelta(days=40)
    add_otps(app, api_key.app_id, *[{"created_at": old, "status": "EXPIRED"}] * 3)
    dry = invoke(app, "purge", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "app 'default': retention 30 days" in dry.output
    assert "dry run, nothing changed; would change: otps_anonymised=3 " in dry.output
    assert all(r["anonymised_at"] is None for r in _rows(app, Otp))
    real = invoke(app, "purge", "--batch", "2")
    assert real.exit_code == 0, real.output
    assert "otps_anonymised=3 " in real.output and real.output.rstrip().endswith("batches=2")
    assert "otps_anonymised=0 " in invoke(app, "purge").output
    [entry] = _rows(app, AuditEntry)  # the purge that changed something; not the dry run, not the no-op
    assert (entry["actor"], entry["action"]) == ("cli", "retention.purge")
    assert entry["details"]["otps_anonymised"] == 3 and entry["details"]["batches"] == 2
