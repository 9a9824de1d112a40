"""Channel `auto`: the SMS fallback (docs/channels.md), through the API, a real worker and real doubles.

WhatsApp is the Graph double (tests/providers/cloud_api/graph.py) or the WAHA double; SMS is the
SMS sandbox (SMS_PROVIDER=sandbox, its outbox in Redis: where the test reads the code back).
"""

from __future__ import annotations

import re
import time

import pytest
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select

from tests.doubles import HttpDouble
from tests.helpers import make_key, work_queues
from tests.providers.cloud_api.graph import SETTINGS, GraphDouble, meta_error, signed, status_item, status_webhook
from tests.providers.gateway.gateways import API_KEY, SESSION, Evolution, Waha
from wpotp.extensions import db, get_queue
from wpotp.models import Event
from wpotp.providers.sms_sandbox import read_sms_outbox

from .support import error_code, event_types, otp_row, send, send_attempts, show, verify

RECIPIENT = "+905551112233"
CODE = "482913"


@pytest.fixture
def graph():
    with GraphDouble() as double:
        yield double


@pytest.fixture
def cloud(app, make_app, graph):
    """WPOTP_PROVIDER=cloud_api at the Graph double; SMS through the SMS sandbox; receipts applied inline."""
    return make_app(WHATSAPP_GRAPH_URL=graph.url, RECEIPT_BATCH=0, **SETTINGS)


def sms_texts(app, recipient: str = RECIPIENT) -> list[str]:
    with app.app_context():
        return [entry["text"] for entry in read_sms_outbox(limit=100, recipient=recipient)]


def worker_with_scheduler(app) -> None:
    """`wpotp worker --burst`: the real worker process, whose scheduler first enqueues what is due."""
    result = app.test_cli_runner().invoke(args=["wpotp", "worker", "--burst", "--threads", "2"])
    assert result.exit_code == 0, result.output


def timeline(app, otp_id: str) -> list[tuple[str, dict]]:
    with app.app_context():
        rows = db.session.scalars(select(Event).where(Event.otp_id == otp_id).order_by(Event.created_at, Event.id))
        return [(e.type, e.data) for e in rows]


def auto_otp(app, key, recipient: str = RECIPIENT, **fields) -> str:
    r = send(app.test_client(), key, recipient, code=CODE, channel="auto", **fields)
    assert r.status_code == 201, r.get_data(as_text=True)
    return r.json["id"]


def post_status(app, *items: dict):
    """Meta's status webhook; with the receipt queue on, a worker's drain job applies it."""
    raw, headers = signed(status_webhook(*items))
    answer = app.test_client().post("/webhooks/whatsapp", data=raw, headers=headers)
    assert answer.status_code == 200


# --- not on WhatsApp --------------------------------------------------------------------------------

def test_131026_in_the_send_answer_sends_the_same_code_by_sms(cloud, graph):
    key = make_key(cloud, mode="live")
    graph.replies.append(meta_error(131026, "Message undeliverable"))
    otp_id = auto_otp(cloud, key)
    work_queues(cloud)

    client = cloud.test_client()
    detail = show(client, key, otp_id)
    assert detail["channel"] == "sms"
    assert detail["status"] == "DELIVERED"  # the SMS sandbox's delivery report
    entries = [(e["type"], e["channel"]) for e in detail["timeline"]]
    assert entries == [("otp.queued", "whatsapp"), ("otp.fallback", "sms"), ("otp.sent", "sms"),
                       ("otp.delivered", "sms")]
    assert detail["timeline"][1]["reason"].startswith("131026: Message undeliverable")
    (text,) = sms_texts(cloud)
    assert CODE in text
    types = [t for t, _ in timeline(cloud, otp_id)]
    assert types[:3] == ["otp.queued", "otp.fallback", "otp.sent"]
    fallback = dict(timeline(cloud, otp_id))["otp.fallback"]
    assert fallback["channel"] == "sms" and fallback["reason"].startswith("131026")
    attempts = send_attempts(cloud, otp_id)
    assert [(a["channel"], a["ok"]) for a in attempts] == [("whatsapp", False), ("sms", True)]
    assert CODE not in str(timeline(cloud, otp_id)) and CODE not in str(attempts)

    v = verify(client, key, otp_id, CODE)  # the same code, sent twice
    assert v.status_code == 200 and v.json["status"] == "VERIFIED"


def test_a_test_number_outside_the_allowed_list_fails_without_fallback(cloud, graph):
    key = make_key(cloud, mode="live")
    graph.replies.append(meta_error(131030, "Recipient phone number not in allowed list"))
    otp_id = auto_otp(cloud, key)
    work_queues(cloud)
    row = otp_row(cloud, otp_id)
    assert (row["status"], row["channel"], row["fallback"]) == ("FAILED", "whatsapp", "armed")
    assert sms_texts(cloud) == []


@pytest.mark.parametrize("receipt_batch", [0, 4], ids=["inline", "receipt-queue"])
def test_a_131026_failed_receipt_falls_back(app, make_app, graph, receipt_batch):
    cloud = make_app(WHATSAPP_GRAPH_URL=graph.url, RECEIPT_BATCH=receipt_batch, **SETTINGS)
    key = make_key(cloud, mode="live")
    otp_id = auto_otp(cloud, key)
    work_queues(cloud)
    assert otp_row(cloud, otp_id)["status"] == "SENT"
    wamid = graph.wamids[-1]

    post_status(cloud, status_item(wamid, "failed", errors=[{"code": 131026, "title": "Message undeliverable"}]))
    work_queues(cloud)
    row = otp_row(cloud, otp_id)
    assert (row["channel"], row["fallback"], row["generation"]) == ("sms", "done", 2)
    assert row["status"] == "DELIVERED"
    assert "otp.failed" not in event_types(cloud, otp_id)
    assert [CODE in t for t in sms_texts(cloud)] == [True]

    # Meta repeats the receipt, and a late `delivered` of the WhatsApp message comes: neither moves the
    # OTP nor makes a second fallback.
    post_status(cloud, status_item(wamid, "failed", errors=[{"code": 131026, "title": "Message undeliverable"}]),
                status_item(wamid, "delivered"))
    work_queues(cloud)
    assert event_types(cloud, otp_id).count("otp.fallback") == 1
    assert len(sms_texts(cloud)) == 1
    assert otp_row(cloud, otp_id)["generation"] == 2


def test_a_whatsapp_only_otp_fails_on_131026(cloud, graph):
    key = make_key(cloud, mode="live")
    graph.replies.append(meta_error(131026, "Message undeliverable"))
    r = send(cloud.test_client(), key, RECIPIENT, code=CODE)
    work_queues(cloud)
    row = otp_row(cloud, r.json["id"])
    assert (row["status"], row["channel"], row["fallback"]) == ("FAILED", "whatsapp", None)
    assert sms_texts(cloud) == []


def test_waha_check_exists_sends_a_number_not_on_whatsapp_straight_to_sms(app, make_app):
    with Waha() as waha:
        gw = _gateway_app(make_app, waha)
        waha.not_on_whatsapp.add(RECIPIENT.lstrip("+"))
        key = make_key(gw, mode="live")
        otp_id = auto_otp(gw, key)
        work_queues(gw)
        checks = [s for s in waha.http.seen if s.path.startswith("/api/contacts/check-exists")]
        assert len(checks) == 1
        assert waha.sends == []  # nothing went to WhatsApp
    detail = show(gw.test_client(), key, otp_id)
    assert detail["channel"] == "sms" and detail["status"] == "DELIVERED"
    assert [a["channel"] for a in send_attempts(gw, otp_id)] == ["whatsapp", "sms"]
    assert any(CODE in t for t in sms_texts(gw))


def test_evolutions_exists_false_falls_back(app, make_app):
    with Evolution() as evolution:
        gw = _gateway_app(make_app, evolution)
        evolution.not_on_whatsapp.add(RECIPIENT.lstrip("+"))
        key = make_key(gw, mode="live")
        otp_id = auto_otp(gw, key)
        work_queues(gw)
        assert len(evolution.sends) == 1  # Evolution checks the number as it is asked to send
    row = otp_row(gw, otp_id)
    assert (row["channel"], row["status"]) == ("sms", "DELIVERED")
    assert dict(timeline(gw, otp_id))["otp.fallback"]["reason"].startswith("not_on_whatsapp")


def _gateway_app(make_app, double):
    return make_app(WPOTP_PROVIDER="gateway", GATEWAY_KIND=double.kind, GATEWAY_URL=double.url,
                    GATEWAY_API_KEY=API_KEY, GATEWAY_SESSION=SESSION, SEND_RETRY_DELAYS=[0, 0])


# --- no receipt -------------------------------------------------------------------------------------

def test_no_delivery_receipt_in_time_falls_back_by_the_scheduled_job(cloud, graph):
    key = make_key(cloud, mode="live", fallback_after_seconds=1)
    otp_id = auto_otp(cloud, key)
    work_queues(cloud)
    assert otp_row(cloud, otp_id)["status"] == "SENT"
    with cloud.app_context():
        assert len(ScheduledJobRegistry(queue=get_queue("otp"))) == 1  # the timer, kept in Redis
    time.sleep(1.2)
    worker_with_scheduler(cloud)  # its scheduler enqueues the due timer
    row = otp_row(cloud, otp_id)
    assert (row["channel"], row["fallback"], row["status"]) == ("sms", "done", "DELIVERED")
    assert dict(timeline(cloud, otp_id))["otp.fallback"]["reason"].startswith("no_receipt")
    assert verify(cloud.test_client(), key, otp_id, CODE).status_code == 200


def test_the_sweep_falls_back_when_the_timer_was_lost(cloud, graph):
    key = make_key(cloud, mode="live", fallback_after_seconds=1)
    otp_id = auto_otp(cloud, key)
    work_queues(cloud)
    with cloud.app_context():
        registry = ScheduledJobRegistry(queue=get_queue("otp"))
        for job_id in registry.get_job_ids():
            registry.remove(job_id, delete_job=True)  # Redis lost it (a restart without persistence)
    time.sleep(1.2)
    result = cloud.test_cli_runner().invoke(args=["wpotp", "sweep"])
    assert result.exit_code == 0, result.output
    work_queues(cloud)
    row = otp_row(cloud, otp_id)
    assert (row["channel"], row["status"]) == ("sms", "DELIVERED")
    assert any(CODE in t for t in sms_texts(cloud))


def test_a_delivered_otp_does_not_fall_back(cloud, graph):
    key = make_key(cloud, mode="live", fallback_after_seconds=1)
    otp_id = auto_otp(cloud, key)
    work_queues(cloud)
    post_status(cloud, status_item(graph.wamids[-1], "delivered"))
    time.sleep(1.2)
    worker_with_scheduler(cloud)
    cloud.test_cli_runner().invoke(args=["wpotp", "sweep"])
    row = otp_row(cloud, otp_id)
    assert (row["channel"], row["status"]) == ("whatsapp", "DELIVERED")
    assert "otp.fallback" not in event_types(cloud, otp_id)
    assert sms_texts(cloud) == []


def test_no_fallback_after_a_verify(cloud, graph):
    key = make_key(cloud, mode="live", fallback_after_seconds=1)
    otp_id = auto_otp(cloud, key)
    work_queues(cloud)
    assert verify(cloud.test_client(), key, otp_id, CODE).status_code == 200
    time.sleep(1.2)
    worker_with_scheduler(cloud)
    cloud.test_cli_runner().invoke(args=["wpotp", "sweep"])
    assert otp_row(cloud, otp_id)["status"] == "VERIFIED"
    assert "otp.fallback" not in event_types(cloud, otp_id)
    assert sms_texts(cloud) == []


def test_no_fallback_after_a_cancel(cloud, graph):
    key = make_key(cloud, mode="live", fallback_after_seconds=1)
    otp_id = auto_otp(cloud, key)
    work_queues(cloud)
    assert cloud.test_client().post(f"/v1/otp/{otp_id}/cancel", headers=key.headers).status_code == 200
    time.sleep(1.2)
    worker_with_scheduler(cloud)
    assert otp_row(cloud, otp_id)["status"] == "CANCELED"
    assert sms_texts(cloud) == []


def test_it_falls_back_once_even_when_the_sms_gets_no_receipt_either(app, make_app):
    """The sandbox's no-receipt number on a test key: WhatsApp never confirms; the SMS sandbox does
    report its SMS; the timer, the sweep and a repeat find nothing more to do."""
    quick = make_app(SANDBOX_RECEIPT_DELAY=0)
    key = make_key(quick, fallback_after_seconds=1)
    otp_id = auto_otp(quick, key, recipient="+15005550004")
    work_queues(quick)
    assert otp_row(quick, otp_id)["status"] == "SENT"
    time.sleep(1.2)
    worker_with_scheduler(quick)
    time.sleep(1.2)
    quick.test_cli_runner().invoke(args=["wpotp", "sweep"])
    worker_with_scheduler(quick)
    assert event_types(quick, otp_id).count("otp.fallback") == 1
    assert len(sms_texts(quick, "+15005550004")) == 1
    assert otp_row(quick, otp_id)["channel"] == "sms"


def test_the_fallback_counts_once_against_the_recipient_limit(cloud, graph):
    key = make_key(cloud, mode="live", recipient_rate_limit="2/15minutes")
    graph.replies.append(meta_error(131026, "Message undeliverable"))
    first = auto_otp(cloud, key)
    work_queues(cloud)
    assert otp_row(cloud, first)["channel"] == "sms"
    client = cloud.test_client()
    assert send(client, key, RECIPIENT, channel="auto").status_code == 201  # the second of two
    third = send(client, key, RECIPIENT, channel="auto")
    assert third.status_code == 429 and error_code(third) == "RATE_LIMITED"


def test_a_fallback_is_not_one_of_the_callers_resends(app, make_app):
    quick = make_app(RESEND_INTERVAL=0, RESEND_MAX=1)
    key = make_key(quick)
    otp_id = auto_otp(quick, key, recipient="+15005550003")  # the sandbox's "not on WhatsApp"
    work_queues(quick)
    assert otp_row(quick, otp_id)["channel"] == "sms"
    client = quick.test_client()
    r = client.post(f"/v1/otp/{otp_id}/resend", headers=key.headers, json={"channel": "auto"})
    assert r.status_code == 200, r.json
    assert r.json["channel"] == "sms"  # after a fallback, `auto` is the channel that reached the user
    again = client.post(f"/v1/otp/{otp_id}/resend", headers=key.headers)
    assert again.status_code == 429  # RESEND_MAX=1 spent by the caller's one resend


def test_the_fraud_guard_refusing_the_sms_fails_the_otp(cloud, graph):
    key = make_key(cloud, mode="live", fraud_deny_sms="TR")
    graph.replies.append(meta_error(131026, "Message undeliverable"))
    otp_id = auto_otp(cloud, key)
    work_queues(cloud)
    row = otp_row(cloud, otp_id)
    assert (row["status"], row["channel"], row["fallback"]) == ("FAILED", "whatsapp", "refused")
    assert "fraud guard" in row["error"] and row["error"].startswith("131026")
    assert sms_texts(cloud) == []
    with cloud.app_context():
        blocked = db.session.scalars(select(Event).where(Event.type == "otp.blocked")).all()
    assert [(e.data["channel"], e.data["reason"]) for e in blocked] == [("sms", "geo_denied")]


# --- what the customer sees -------------------------------------------------------------------------

def test_webhooks_name_the_channel_and_otp_fallback_can_be_subscribed(cloud, graph):
    key = make_key(cloud, mode="live")
    with HttpDouble() as receiver:
        result = cloud.test_cli_runner().invoke(args=["wpotp", "set-webhook", "--app", "default", "--url",
                                                      receiver.url + "/hook",
                                                      "--events", "otp.fallback,otp.sent,otp.failed"])
        assert result.exit_code == 0, result.output
        graph.replies.append(meta_error(131026, "Message undeliverable"))
        otp_id = auto_otp(cloud, key)
        work_queues(cloud)
        work_queues(cloud)
        bodies = [s.json for s in receiver.seen]
    assert [(b["event"], b["data"]["channel"]) for b in bodies] == [("otp.fallback", "sms"), ("otp.sent", "sms")]
    fallback = bodies[0]["data"]
    assert fallback["id"] == otp_id and fallback["status"] == "QUEUED" and fallback["fromChannel"] == "whatsapp"
    assert fallback["reason"].startswith("131026")
    assert all(CODE not in str(b) for b in bodies)


def test_the_apps_own_sms_text_is_used(cloud, graph):
    key = make_key(cloud, mode="live", sms_texts={"en": "{app}: use {code} to sign in"})
    graph.replies.append(meta_error(131026, "Message undeliverable"))
    auto_otp(cloud, key)
    work_queues(cloud)
    assert sms_texts(cloud) == [f"default: use {CODE} to sign in"]


def test_the_otp_answer_names_the_channel_of_its_last_send(cloud, graph):
    key = make_key(cloud, mode="live")
    otp_id = auto_otp(cloud, key)
    assert show(cloud.test_client(), key, otp_id)["channel"] == "whatsapp"
    assert re.match(r"^otp_", otp_id)
