"""SPEC §7: Meta's signed status webhooks move an OTP forward; nothing else changes it."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from tests.otp.support import event_types, otp_row, send, show
from wpotp.extensions import redis_client
from wpotp.otp import receipts

from .graph import SETTINGS, VERIFY_TOKEN, signed, status_item, status_webhook
from .support import post_receipts, sent_otp


@pytest.fixture(params=[0, 4], ids=["inline", "queued"])
def cloud_app(request, app, make_app, graph):
    """Each test twice: receipts applied in the webhook request (RECEIPT_BATCH=0) and through the
    receipt queue, drained by a real worker in batches of 4 (post_receipts runs it)."""
    return make_app(WHATSAPP_GRAPH_URL=graph.url, RECEIPT_BATCH=request.param, **SETTINGS)


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


def test_control_characters_in_metas_error_or_ids_answer_200_and_lose_nothing(cloud_app, cloud_client, live_key,
                                                                            graph, run_worker):
    """PostgreSQL refuses NUL in text: a signed receipt carrying one (in the error or a message
    id) must not turn into a 500 that makes Meta retry it for days."""
    otp_id, wamid = sent_otp(cloud_client, live_key, run_worker, cloud_app, graph)
    errors = [{"code": 131026, "title": "Message\x00 undeliverable\x07."}]

    r = post_receipts(cloud_client, status_item(wamid + "\x00", "delivered", _now()),
                      status_item(wamid, "failed", _now(), errors=errors))

    assert r.status_code == 200
    detail = show(cloud_client, live_key, otp_id)
    assert detail["status"] == "FAILED"
    assert detail["error"] == "131026: Message undeliverable"


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
    if cloud_app.config["RECEIPT_BATCH"]:
        run_worker(cloud_app)  # the queued one

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


# --- receipts that arrive before the worker has committed the message id (issue 14, defect 11) ---

class HeldSends:
    """Wrap an HTTP double's handler: its answer to a send is made (so the message id is known),
    then held while `meanwhile(reply)` runs (say, the provider's receipt reaching wpotp first),
    and only then sent back to the worker that is waiting for it."""

    def __init__(self, http, is_send, meanwhile) -> None:
        self.inner, self.is_send, self.meanwhile = http.handler, is_send, meanwhile
        self.errors: list[BaseException] = []
        http.handler = self._handle

    def _handle(self, seen):
        reply = self.inner(seen)
        if self.is_send(seen):
            try:
                self.meanwhile(reply)
            except BaseException as exc:  # noqa: BLE001 - reported to the test, which asserts on it
                self.errors.append(exc)
        return reply


def test_receipts_that_arrive_before_the_sent_commit_are_applied_after_it(cloud_app, cloud_client, live_key,
                                                                          graph, run_worker):
    t, answers = _now(), []

    def receipts_first(reply):  # Meta delivered and the user read it before its answer reached us
        wamid = reply.body["messages"][0]["id"]
        answers.append(post_receipts(cloud_app.test_client(), status_item(wamid, "delivered", t),
                                     status_item(wamid, "read", t + 1), drain=False))
        answers.append(show(cloud_app.test_client(), live_key, otp_id[0])["status"])

    held = HeldSends(graph.http, lambda seen: seen.path.endswith("/messages"), receipts_first)
    otp_id = [send(cloud_client, live_key, "+905551112233", code="482913").json["id"]]
    run_worker(cloud_app)

    assert not held.errors, held.errors
    assert answers[0].status_code == 200 and answers[1] == "QUEUED"  # the receipts really came first
    detail = show(cloud_client, live_key, otp_id[0])
    assert detail["status"] == "READ"
    row = otp_row(cloud_app, otp_id[0])  # stamped when applied: never before the send they overtook
    assert row["sent_at"] <= row["delivered_at"] <= row["read_at"]
    types = event_types(cloud_app, otp_id[0])
    assert types.count("otp.delivered") == 1 and types.count("otp.read") == 1
    assert types.index("otp.sent") < types.index("otp.delivered") < types.index("otp.read")
    assert not redis_keys(cloud_app, "wpotp:early-receipt:*")  # taken, not left to expire


def test_early_receipts_of_several_sends_of_one_batch_are_each_applied_after_its_commit(
        cloud_app, cloud_client, live_key, graph, run_worker):
    """Two sends drained in one batch, each overtaken by its own receipt: the batch takes the
    held receipts of all its sends in one go, and each lands on its own OTP."""
    t, statuses = _now(), {"+905551112233": "delivered", "+905551112244": "read"}

    def receipt_first(reply):
        wamid, to = reply.body["messages"][0]["id"], reply.body["contacts"][0]["input"]
        assert post_receipts(cloud_app.test_client(), status_item(wamid, statuses["+" + to], t),
                             drain=False).status_code == 200

    held = HeldSends(graph.http, lambda seen: seen.path.endswith("/messages"), receipt_first)
    ids = {to: send(cloud_client, live_key, to, code="482913").json["id"] for to in statuses}
    run_worker(cloud_app)

    assert not held.errors, held.errors
    for to, status in statuses.items():
        assert show(cloud_client, live_key, ids[to])["status"] == status.upper()
        types = event_types(cloud_app, ids[to])
        assert types.count(f"otp.{status}") == 1 and types.index("otp.sent") < types.index(f"otp.{status}")
    assert not redis_keys(cloud_app, "wpotp:early-receipt:*")


def test_an_early_failed_receipt_fails_the_otp_once_it_is_sent(cloud_app, cloud_client, live_key, graph, run_worker):
    errors = [{"code": 131026, "title": "Message undeliverable."}]
    held = HeldSends(graph.http, lambda seen: seen.path.endswith("/messages"), lambda reply: post_receipts(
        cloud_app.test_client(), status_item(reply.body["messages"][0]["id"], "failed", _now(), errors=errors),
        drain=False))
    otp_id = send(cloud_client, live_key, "+905551112233", code="482913").json["id"]
    run_worker(cloud_app)

    assert not held.errors, held.errors
    detail = show(cloud_client, live_key, otp_id)
    assert detail["status"] == "FAILED" and detail["error"] == "131026: Message undeliverable"


def test_a_receipt_for_a_wamid_that_never_appears_is_held_briefly_without_secrets(cloud_app, cloud_client,
                                                                                  live_key, graph, run_worker):
    otp_id, _wamid = sent_otp(cloud_client, live_key, run_worker, cloud_app, graph)
    before = (otp_row(cloud_app, otp_id), event_types(cloud_app, otp_id))

    assert post_receipts(cloud_client, status_item("wamid.NEVERSENT", "delivered", _now())).status_code == 200

    assert (otp_row(cloud_app, otp_id), event_types(cloud_app, otp_id)) == before
    (key,) = redis_keys(cloud_app, "wpotp:early-receipt:*")
    assert key == "wpotp:early-receipt:cloud_api:wamid.NEVERSENT"
    with cloud_app.app_context():
        conn = redis_client.conn
        assert 0 < conn.ttl(key) <= receipts.EARLY_RECEIPT_TTL  # it expires on its own
        held = b" ".join(conn.lrange(key, 0, -1))
    assert b"delivered" in held and b"482913" not in held and live_key.secret.encode() not in held


def redis_keys(app, pattern: str) -> list[str]:
    with app.app_context():
        return sorted(k.decode() for k in redis_client.conn.scan_iter(pattern))


def test_a_receipt_held_just_after_the_workers_commit_and_replay_is_applied_by_the_holder(
        cloud_app, cloud_client, live_key, graph, run_worker):
    """The other order of the race: the webhook's look-up missed, then the worker committed and
    found nothing held, then the webhook holds its receipt. Its second look then applies it."""
    otp_id, wamid = sent_otp(cloud_client, live_key, run_worker, cloud_app, graph)
    with cloud_app.app_context():
        receipts.hold_receipt("cloud_api", wamid, "delivered", datetime.now(UTC).replace(tzinfo=None), None)

    assert show(cloud_client, live_key, otp_id)["status"] == "DELIVERED"
    assert event_types(cloud_app, otp_id).count("otp.delivered") == 1
    assert not redis_keys(cloud_app, "wpotp:early-receipt:*")


def test_an_early_receipt_of_a_template_message_is_applied_after_its_send(cloud_app, cloud_client, live_key,
                                                                          graph, run_worker):
    templates = cloud_client.get("/v1/templates", headers=live_key.headers).json["data"]
    template_id = next(t["id"] for t in templates if t["name"] == "wpotp_order_update")
    held = HeldSends(graph.http, lambda seen: seen.path.endswith("/messages"), lambda reply: post_receipts(
        cloud_app.test_client(), status_item(reply.body["messages"][0]["id"], "delivered", _now()), drain=False))
    r = cloud_client.post("/v1/messages", headers=live_key.headers, json={
        "recipient": "+905551112233", "templateId": template_id, "variables": {"1": "9F3A", "2": "on its way"}})
    assert r.status_code == 202, r.json
    run_worker(cloud_app)

    assert not held.errors, held.errors
    message = cloud_client.get(f"/v1/messages/{r.json['id']}", headers=live_key.headers).json
    assert message["status"] == "DELIVERED"
