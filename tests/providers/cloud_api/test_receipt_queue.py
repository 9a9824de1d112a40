"""The receipt queue (RECEIPT_BATCH > 0): webhooks hand receipts to Redis, drain jobs apply them
in batches through a real worker, with the same outcomes as applying each in its request."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from sqlalchemy import select

from tests.helpers import make_key
from tests.otp.support import send, show
from tests.webhooks.support import closed_port, set_webhook
from wpotp.extensions import db, redis_client
from wpotp.jobs import receipt_queue
from wpotp.models import Event, Otp, WebhookDelivery
from wpotp.otp import receipts
from wpotp.webhooks.events import payload

from .graph import SETTINGS, status_item
from .support import LogCapture, post_receipts

OTPS = 9


def _sent_otps(app, client, key, run_worker, graph, count: int) -> list[tuple[str, str]]:
    ids = []
    for i in range(count):
        r = send(client, key, f"+90555111{2000 + i}", code="482913")
        assert r.status_code == 201, r.json
        ids.append(r.json["id"])
    run_worker(app)
    wamids = {}
    with app.app_context():
        for row in db.session.execute(select(Otp.id, Otp.provider_message_id, Otp.status).where(Otp.id.in_(ids))):
            assert row.status == "SENT"
            wamids[row.id] = row.provider_message_id
        db.session.remove()
    return [(otp_id, wamids[otp_id]) for otp_id in ids]


def _burst(otps: list[tuple[str, str]], t: int) -> list[list[dict]]:
    """Three webhook calls carrying every OTP's receipts, interleaved across OTPs: sent, delivered
    and read for most; read before delivered for every third; a repeated delivered for every fourth;
    a failed for the last (after its delivered)."""
    first, second, third = [], [], []
    for i, (_otp_id, wamid) in enumerate(otps):
        first.append(status_item(wamid, "sent", t))
        if i == len(otps) - 1:
            second.append(status_item(wamid, "delivered", t + 1))
            third.append(status_item(wamid, "failed", t + 2, errors=[{"code": 131026, "title": "Undeliverable"}]))
        elif i % 3 == 0:
            second.append(status_item(wamid, "read", t + 2))
            third.append(status_item(wamid, "delivered", t + 1))
        else:
            second.append(status_item(wamid, "delivered", t + 1))
            third.append(status_item(wamid, "read", t + 2))
        if i % 4 == 0:
            third.append(status_item(wamid, "delivered", t + 1))
    return [first, second, third]


def _outcome(app, client, key, otps: list[tuple[str, str]], t: int) -> list[dict]:
    """Per OTP, what a client and a webhook receiver can see: status, receipt times, the timeline,
    and the SPEC §6 payloads of the webhook deliveries owed (ids and times left out)."""
    out = []
    with app.app_context():
        for otp_id, _wamid in otps:
            otp = db.session.get(Otp, otp_id)
            owed = db.session.execute(
                select(Event).join(WebhookDelivery, WebhookDelivery.event_id == Event.id)
                .where(Event.otp_id == otp_id).order_by(Event.created_at, Event.id)).scalars().all()
            bodies = []
            for evt in owed:
                body = payload(evt)
                bodies.append({"event": body["event"],
                               **{k: v for k, v in body["data"].items() if k not in ("id", "templateId")}})
            out.append({"status": str(otp.status), "delivered_at": _since(otp.delivered_at, t),
                        "read_at": _since(otp.read_at, t),
                        "failed_at": otp.failed_at is not None, "error": otp.error, "webhooks": bodies})
        db.session.remove()
    for entry, (otp_id, _wamid) in zip(out, otps, strict=True):
        entry["timeline"] = [(e["type"], e["status"]) for e in show(client, key, otp_id)["timeline"]]
    return out


def _since(at, t: int) -> float | None:
    return None if at is None else (at - datetime.fromtimestamp(t, UTC).replace(tzinfo=None)).total_seconds()


def _cloud(make_app, graph, batch: int):
    return make_app(WHATSAPP_GRAPH_URL=graph.url, RECEIPT_BATCH=batch, **SETTINGS)


def _cloud_with_webhook(make_app, graph, batch: int, name: str):
    """(app, its test client, a live key) of a Cloud API app named `name`, its webhook endpoint
    set to a closed port (deliveries are owed and logged, none succeeds)."""
    cloud = _cloud(make_app, graph, batch)
    key = make_key(cloud, app_name=name, mode="live")
    set_webhook(cloud, f"http://127.0.0.1:{closed_port()}/hook", app_name=name)
    return cloud, cloud.test_client(), key


def test_a_burst_applied_in_batches_ends_as_applied_one_by_one(app, make_app, graph, run_worker):
    outcomes = {}
    drains = {}
    for batch in (0, 4):
        cloud, client, key = _cloud_with_webhook(make_app, graph, batch, f"burst-{batch}")
        otps = _sent_otps(cloud, client, key, run_worker, graph, OTPS)
        t = int(time.time()) + 5
        calls = _burst(otps, t)
        for statuses in calls:
            assert post_receipts(client, *statuses, drain=False).status_code == 200
        with cloud.app_context():
            drains[batch] = redis_client.conn.llen(receipt_queue.RECEIPT_QUEUE)
        run_worker(cloud)
        outcomes[batch] = _outcome(cloud, client, key, otps, t)

    assert drains == {0: 0, 4: sum(len(c) for c in _burst([("x", "w")] * OTPS, 0))}  # all queued, then drained
    assert outcomes[4] == outcomes[0]
    inline = outcomes[0]
    assert [o["status"] for o in inline] == ["READ"] * (OTPS - 1) + ["FAILED"]
    assert inline[1]["timeline"][-2:] == [("otp.delivered", "DELIVERED"), ("otp.read", "READ")]
    # read before delivered: the late delivered is kept (at its own, earlier, time) and moves nothing back
    assert inline[0]["timeline"][-2:] == [("otp.delivered", "READ"), ("otp.read", "READ")]
    assert [w["event"] for w in inline[1]["webhooks"]] == ["otp.sent", "otp.delivered", "otp.read"]
    assert inline[-1]["error"] == "131026: Undeliverable"
    with make_app().app_context():
        assert not redis_client.conn.exists(receipt_queue.RECEIPT_QUEUE, receipt_queue.RECEIPT_CLAIMS)


def test_receipts_of_one_message_in_one_batch_read_in_arrival_order(cloud_app_queued, live_key, graph, run_worker):
    app, client = cloud_app_queued, cloud_app_queued.test_client()
    ((otp_id, wamid),) = _sent_otps(app, client, live_key, run_worker, graph, 1)
    t = int(time.time()) + 5  # one whole second for all three, as Meta's timestamps often are
    post_receipts(client, status_item(wamid, "delivered", t), status_item(wamid, "read", t),
                  status_item(wamid, "delivered", t), drain=False)
    run_worker(app)

    timeline = show(client, live_key, otp_id)["timeline"]
    assert [e["type"] for e in timeline] == ["otp.queued", "otp.sent", "otp.delivered", "otp.read"]
    with app.app_context():
        stamps = db.session.scalars(select(Event.created_at).where(Event.otp_id == otp_id)
                                    .order_by(Event.created_at)).all()
        db.session.remove()
    assert stamps[-1] > stamps[-2]


def test_a_receipt_that_fails_in_its_batch_loses_none_of_the_others(cloud_app_queued, live_key, graph, run_worker):
    app, client = cloud_app_queued, cloud_app_queued.test_client()
    otps = _sent_otps(app, client, live_key, run_worker, graph, 3)
    t = int(time.time()) + 5
    # An item no webhook would make (its error is not text): applying it raises, on either database.
    with app.app_context():
        redis_client.conn.rpush(receipt_queue.RECEIPT_QUEUE,
                                json.dumps(["cloud_api", otps[1][1], "failed", None, 12345]))
    capture = LogCapture()
    import logging

    logging.getLogger("wpotp").addHandler(capture)
    try:
        post_receipts(client, *[status_item(wamid, "delivered", t) for _, wamid in otps], drain=False)
        run_worker(app)
    finally:
        logging.getLogger("wpotp").removeHandler(capture)

    assert [show(client, live_key, otp_id)["status"] for otp_id, _ in otps] == ["DELIVERED"] * 3
    assert any("one at a time" in line for line in capture.lines)
    assert any("could not be applied; skipped" in line for line in capture.lines)
    with app.app_context():
        assert not redis_client.conn.exists(receipt_queue.RECEIPT_QUEUE)
        db.session.remove()


def test_redis_down_at_hand_off_applies_the_receipts_inline(cloud_app_queued, make_app, live_key, graph,
                                                            run_worker):
    app, client = cloud_app_queued, cloud_app_queued.test_client()
    ((otp_id, wamid),) = _sent_otps(app, client, live_key, run_worker, graph, 1)
    dead = f"redis://127.0.0.1:{closed_port()}/0"
    broken = make_app(WHATSAPP_GRAPH_URL=graph.url, RECEIPT_BATCH=4, REDIS_URL=dead, **SETTINGS)

    r = post_receipts(broken.test_client(), status_item(wamid, "delivered", int(time.time()) + 5), drain=False)

    assert r.status_code == 200
    assert show(client, live_key, otp_id)["status"] == "DELIVERED"  # applied before the 200, no worker ran
    with app.app_context():
        assert not redis_client.conn.exists(receipt_queue.RECEIPT_QUEUE)


def test_a_stopping_worker_gives_its_claimed_receipts_back(cloud_app_queued, live_key, graph, run_worker):
    """hand_back for a drain job that claimed a batch and did not finish: the receipts go back to the
    head of the queue, a drain job is pending, and a worker then applies them."""
    from wpotp.jobs.enqueue import hand_back

    app, client = cloud_app_queued, cloud_app_queued.test_client()
    otps = _sent_otps(app, client, live_key, run_worker, graph, 2)
    t = int(time.time()) + 5
    with app.app_context():
        conn = redis_client.conn
        for _, wamid in otps:
            conn.rpush(receipt_queue.RECEIPT_QUEUE,
                       receipts.Receipt("cloud_api", wamid, "delivered", None, None).dumps())
        job_id = receipt_queue.enqueue_receipt_drain()
        conn.delete(receipt_queue.RECEIPT_DRAIN_FLAG)
        assert len(receipt_queue.claim_receipts(job_id, 4, True)) == 2  # as the drain job would, then it stops
        from rq.job import Job

        job = Job.fetch(job_id, connection=conn)
        job.cancel()
        hand_back(job)
        assert conn.llen(receipt_queue.RECEIPT_QUEUE) == 2 and not conn.sismember(receipt_queue.RECEIPT_CLAIMS, job_id)
    post_receipts(client, status_item(otps[0][1], "read", t))  # drains everything queued

    assert [show(client, live_key, otp_id)["status"] for otp_id, _ in otps] == ["READ", "DELIVERED"]


def test_the_database_down_during_a_drain_loses_no_receipt(cloud_app_queued, make_app, live_key, graph, run_worker):
    """A drain job whose database does not answer (a worker on an unreachable database URL): its batch
    goes back to the head of the queue, in order, and the job fails; once the database answers, the
    sweep makes a drain job pending and a worker applies every receipt."""
    from rq.registry import FailedJobRegistry

    from wpotp.extensions import get_queue
    from wpotp.otp.maintenance import sweep

    app, client = cloud_app_queued, cloud_app_queued.test_client()
    otps = _sent_otps(app, client, live_key, run_worker, graph, 3)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        dead = f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/test"
    else:
        dead = f"sqlite:///{app.instance_path}/missing-dir/down.db"
    down = make_app(WHATSAPP_GRAPH_URL=graph.url, RECEIPT_BATCH=4, SQLALCHEMY_DATABASE_URI=dead, **SETTINGS)
    t = int(time.time()) + 5
    capture = LogCapture()
    import logging

    logging.getLogger("wpotp").addHandler(capture)
    try:
        post_receipts(client, *[status_item(wamid, "delivered", t) for _, wamid in otps], drain=False)
        with app.app_context():
            queued = redis_client.conn.lrange(receipt_queue.RECEIPT_QUEUE, 0, -1)
        run_worker(down)  # the drain job runs against the unreachable database
    finally:
        logging.getLogger("wpotp").removeHandler(capture)

    assert any("given back to the receipt queue" in line for line in capture.lines)
    assert not any("skipped" in line for line in capture.lines)
    with app.app_context():
        conn = redis_client.conn
        assert len(queued) == 3 and conn.lrange(receipt_queue.RECEIPT_QUEUE, 0, -1) == queued  # all back, in order
        assert not conn.exists(receipt_queue.RECEIPT_CLAIMS, receipt_queue.RECEIPT_DRAIN_FLAG)
        assert len(FailedJobRegistry(queue=get_queue("otp"))) == 1
    assert [show(client, live_key, otp_id)["status"] for otp_id, _ in otps] == ["SENT"] * 3

    with app.app_context():
        sweep()  # the database answers again: a drain job is made pending for the receipts waiting
        db.session.remove()
    run_worker(app)

    assert [show(client, live_key, otp_id)["status"] for otp_id, _ in otps] == ["DELIVERED"] * 3
    with app.app_context():
        assert not redis_client.conn.exists(receipt_queue.RECEIPT_QUEUE, receipt_queue.RECEIPT_CLAIMS)


def test_template_messages_and_otps_in_one_batch_end_as_applied_one_by_one(app, make_app, graph, run_worker):
    """Receipts of template messages (Message rows: their own compare-and-set, their own table's
    UPDATE on PostgreSQL) mixed with OTPs' in one webhook call: the same statuses, timelines and
    owed message.* / otp.* webhooks as inline."""
    seen = {}
    for batch in (0, 8):
        cloud, client, key = _cloud_with_webhook(make_app, graph, batch, f"mixed-{batch}")
        templates = client.get("/v1/templates", headers=key.headers).json["data"]
        template_id = next(t["id"] for t in templates if t["name"] == "wpotp_order_update")
        message_ids = []
        for i in range(2):
            r = client.post("/v1/messages", headers=key.headers, json={
                "recipient": f"+90555111{4000 + i}", "templateId": template_id,
                "variables": {"1": f"A-{i}", "2": "on its way"}})
            assert r.status_code == 202, r.json
            message_ids.append(r.json["id"])
        otps = _sent_otps(cloud, client, key, run_worker, graph, 2)  # its worker run sends the messages too
        from wpotp.models import Message

        with cloud.app_context():
            wamids = dict(db.session.execute(select(Message.id, Message.provider_message_id)
                                             .where(Message.id.in_(message_ids))).all())
            db.session.remove()
        t = int(time.time()) + 5
        items = []
        for step, status in enumerate(("sent", "delivered", "read")):
            items += [status_item(wamids[m], status, t + step) for m in message_ids]
            items += [status_item(wamid, status, t + step) for _, wamid in otps]
        items.append(status_item(wamids[message_ids[0]], "delivered", t + 1))  # a repeat: changes nothing
        assert post_receipts(client, *items, drain=False).status_code == 200
        run_worker(cloud)
        with cloud.app_context():
            deliveries = db.session.execute(
                select(Event.type, Event.data).join(WebhookDelivery, WebhookDelivery.event_id == Event.id)
                .where(Event.message_id.in_(message_ids)).order_by(Event.message_id, Event.created_at)).all()
            db.session.remove()
        messages = [client.get(f"/v1/messages/{m}", headers=key.headers).json for m in message_ids]
        seen[batch] = {
            "messages": [(m["status"], [e["type"] for e in m["timeline"]]) for m in messages],
            "message_webhooks": [(kind, data.get("status")) for kind, data in deliveries],
            "otps": _outcome(cloud, client, key, otps, t),
        }

    assert seen[8] == seen[0]
    assert seen[0]["messages"] == [("READ", ["message.queued", "message.sent", "message.delivered",
                                             "message.read"])] * 2
    assert [s for s, _ in seen[0]["message_webhooks"]] == ["message.sent", "message.delivered", "message.read"] * 2
    assert [o["status"] for o in seen[0]["otps"]] == ["READ", "READ"]
