"""The batch send path (SEND_BATCH): sends appended to a Redis list, drained by RQ jobs that send
a batch at a time; the sweep still sees and hands back every send a dead job had claimed."""

from __future__ import annotations

import pytest

from wpotp.extensions import get_queue, redis_client
from wpotp.jobs.enqueue import (
    DRAIN_FLAG,
    DRAIN_JOB,
    READY_KEY,
    READY_MARK,
    claim_sends,
    claimed_key,
    hand_back,
    send_job_key,
)
from wpotp.otp.maintenance import sweep

from ..otp.support import otp_row, send, send_attempts, shift_back

SENT_OR_LATER = ("SENT", "DELIVERED", "READ")


@pytest.fixture
def batch(app, make_app):
    return make_app(SEND_BATCH=4)


def _queued(batch, key, count: int, prefix: str = "+90555112") -> list[str]:
    client = batch.test_client()
    ids = []
    for n in range(count):
        r = send(client, key, f"{prefix}{n:04d}")
        assert r.status_code == 201, r.json
        ids.append(r.json["id"])
    return ids


def _drain_jobs(batch) -> list:
    with batch.app_context():
        queue = get_queue("otp")
        return [job for job in queue.get_jobs() if job.func_name == DRAIN_JOB]


def _sweep(batch) -> dict:
    with batch.app_context():
        return sweep()


def _sent_once_each(batch, ids, outbox, prefix: str = "+90555112") -> None:
    for n, otp_id in enumerate(ids):
        assert otp_row(batch, otp_id)["status"] in SENT_OR_LATER
        assert len(outbox(f"{prefix}{n:04d}")) == 1
        assert [a["ok"] for a in send_attempts(batch, otp_id)] == [True]


def test_sends_wait_in_one_list_with_one_drain_job_pending_and_all_go_once(batch, api_key, run_worker, outbox):
    ids = _queued(batch, api_key, 10)
    with batch.app_context():
        conn = redis_client.conn
        assert conn.llen(READY_KEY) == 10
        assert conn.get(send_job_key(ids[0])).decode().startswith(READY_MARK)
    assert len(_drain_jobs(batch)) == 1  # ten sends, one drain job (the flag held the others back)

    run_worker(batch)
    _sent_once_each(batch, ids, outbox)
    with batch.app_context():
        conn = redis_client.conn
        assert conn.llen(READY_KEY) == 0
        assert conn.keys("wpotp:sendq:claimed:*") == []


def test_a_send_after_the_drain_started_gets_a_drain_job_of_its_own(batch, api_key, run_worker, outbox):
    ids = _queued(batch, api_key, 1)
    with batch.app_context():
        claim_sends("drain-started", 4, first=True)  # a drain job taking its first batch clears the flag
        assert redis_client.conn.get(DRAIN_FLAG) is None
    ids += _queued(batch, api_key, 1, prefix="+90555113")
    assert len(_drain_jobs(batch)) == 2


def test_sweep_hands_back_the_sends_of_a_drain_job_whose_worker_was_killed_mid_batch(batch, api_key, run_worker,
                                                                                  outbox):
    ids = _queued(batch, api_key, 6)
    (job,) = _drain_jobs(batch)
    alive = "wpotp:worker-alive:host.example.1234.abcd"
    with batch.app_context():
        conn = redis_client.conn
        conn.lrem(get_queue("otp").key, 0, job.id)  # the worker popped it...
        job.worker_name = "host.example.1234.abcd/3.1"
        job.set_status("started")
        job.started_at = job.enqueued_at
        job.save()
        conn.set(alive, "host.example.1234.abcd/3.1", ex=30)
        claimed = claim_sends(job.id, 4, first=True)  # ...and claimed a batch of four
        assert len(claimed) == 4 and conn.llen(claimed_key(job.id)) == 4
        assert conn.get(send_job_key(ids[0])).decode() == job.id
    for otp_id in ids:
        shift_back(batch, otp_id, 61, "last_sent_at")
    assert _sweep(batch)["requeued"] == 0  # its worker still runs; the other two wait in the list

    with batch.app_context():
        redis_client.conn.delete(alive)  # the worker is killed mid-batch
    assert _sweep(batch)["requeued"] == 4
    assert _sweep(batch)["requeued"] == 0  # handed back once
    run_worker(batch)
    _sent_once_each(batch, ids, outbox)


def test_a_stopping_worker_hands_back_its_drain_jobs_claimed_sends(batch, api_key, run_worker, outbox):
    ids = _queued(batch, api_key, 3)
    (job,) = _drain_jobs(batch)
    with batch.app_context():
        conn = redis_client.conn
        conn.lrem(get_queue("otp").key, 0, job.id)
        claim_sends(job.id, 4, first=True)
        assert conn.llen(READY_KEY) == 0
        hand_back(job)
        assert conn.llen(READY_KEY) == 3 and conn.exists(claimed_key(job.id)) == 0
        assert conn.get(send_job_key(ids[0])).decode().startswith(READY_MARK)
    run_worker(batch)
    _sent_once_each(batch, ids, outbox)


def test_sweep_requeues_sends_whose_list_was_lost_and_enqueues_a_lost_drain(batch, api_key, run_worker, outbox):
    ids = _queued(batch, api_key, 2)
    with batch.app_context():
        conn = redis_client.conn
        conn.delete(READY_KEY, DRAIN_FLAG)
        get_queue("otp").empty()
    for otp_id in ids:
        shift_back(batch, otp_id, 61, "last_sent_at")
    assert _sweep(batch)["requeued"] == 2
    run_worker(batch)
    _sent_once_each(batch, ids, outbox)

    more = _queued(batch, api_key, 1, prefix="+90555114")
    with batch.app_context():
        get_queue("otp").empty()  # the drain job is lost; its flag lapses
        redis_client.conn.delete(DRAIN_FLAG)
    _sweep(batch)  # not stuck yet, but sends wait with no drain: one is enqueued
    assert len(_drain_jobs(batch)) == 1
    run_worker(batch)
    assert otp_row(batch, more[0])["status"] in SENT_OR_LATER


def test_sweep_fails_a_batched_send_whose_list_and_code_were_lost(batch, api_key, run_worker, outbox):
    ids = _queued(batch, api_key, 2)
    with batch.app_context():
        conn = redis_client.conn
        conn.delete(READY_KEY, DRAIN_FLAG, *conn.scan_iter(match="wpotp:seal:*"))
        get_queue("otp").empty()
    for otp_id in ids:
        shift_back(batch, otp_id, 61, "last_sent_at")
    assert _sweep(batch)["failed"] == 2
    run_worker(batch)
    for n, otp_id in enumerate(ids):
        row = otp_row(batch, otp_id)
        assert row["status"] == "FAILED" and row["error"].startswith("queue_lost")
        assert outbox(f"+90555112{n:04d}") == []


def test_a_failed_send_of_a_batch_retries_per_otp_with_backoff(app, make_app, api_key, run_worker):
    patient = make_app(SEND_BATCH=4, SEND_RETRY_DELAYS=[100])
    client = patient.test_client()
    r = send(client, api_key, "+15005550002")  # the sandbox's "provider down" number
    assert r.status_code == 201
    run_worker(patient)
    assert [a["ok"] for a in send_attempts(patient, r.json["id"])] == [False]
    assert otp_row(patient, r.json["id"])["status"] == "QUEUED"
    with patient.app_context():
        assert len(get_queue("otp").scheduled_job_registry.get_job_ids()) == 1


def test_sends_left_in_the_list_when_the_batch_path_is_turned_off_are_still_sent(batch, make_app, api_key,
                                                                                run_worker, outbox):
    ids = _queued(batch, api_key, 3)
    off = make_app(SEND_BATCH=0)  # the per-OTP path from now on; the pending drain job was lost with its flag
    with off.app_context():
        get_queue("otp").empty()
        redis_client.conn.delete(DRAIN_FLAG)
    _sweep(off)
    run_worker(off)
    _sent_once_each(off, ids, outbox)


def test_a_send_canceled_while_its_batch_is_at_the_provider_stays_canceled_and_the_rest_are_sent(
        app, make_app, run_worker):
    """The batch's compare-and-sets go as one statement: when one row no longer matches (canceled
    while its provider call was in flight), the others still move to SENT with their events, and
    the canceled one keeps its status, gets no `otp.sent`, and its attempt is recorded."""
    from sqlalchemy import select

    from tests.helpers import make_key
    from tests.providers.cloud_api.graph import SETTINGS as CLOUD_API
    from tests.providers.cloud_api.graph import GraphDouble
    from wpotp.extensions import db
    from wpotp.models import Event

    with GraphDouble() as graph:
        web = make_app(WHATSAPP_GRAPH_URL=graph.url, SEND_BATCH=4, **CLOUD_API)
        key = make_key(web, mode="live")
        client = web.test_client()
        answers = [send(client, key, f"+90555113000{n}") for n in range(3)]
        assert [r.status_code for r in answers] == [201] * 3, answers[0].json
        ids = [r.json["id"] for r in answers]
        answer = graph.http.handler

        def cancel_the_second(seen):
            if b"905551130001" in seen.body:  # Meta's `to` is the number without its +
                assert client.post(f"/v1/otp/{ids[1]}/cancel", headers=key.headers).status_code == 200
            return answer(seen)

        graph.http.handler = cancel_the_second
        run_worker(web)

        assert [otp_row(web, i)["status"] for i in ids] == ["SENT", "CANCELED", "SENT"]
        assert all(otp_row(web, i)["provider_message_id"] for i in (ids[0], ids[2]))
        assert [a["ok"] for a in send_attempts(web, ids[1])] == [True]  # Meta took it: the attempt is history
        with web.app_context():
            sent = db.session.scalars(select(Event.otp_id).where(Event.type == "otp.sent")).all()
        assert sorted(sent) == sorted([ids[0], ids[2]])


def test_the_next_claim_releases_the_previous_batch_in_the_same_script(batch, api_key):
    """A drain job's next claim forgets the claims of its finished batch (release=True) and takes
    the next ones, in one script: no round trip of its own for the release, and nothing waiting
    is lost on the way."""
    _queued(batch, api_key, 6)
    with batch.app_context():
        conn = redis_client.conn
        first = claim_sends("drain-releasing", 4, first=True)
        assert conn.llen(claimed_key("drain-releasing")) == 4
        second = claim_sends("drain-releasing", 4, first=False, release=True)
        assert len(second) == 2 and set(second).isdisjoint(first)
        assert conn.lrange(claimed_key("drain-releasing"), 0, -1) == second  # only the new batch's claims
        assert claim_sends("drain-releasing", 4, first=False, release=True) == []
        assert conn.exists(claimed_key("drain-releasing")) == 0 and conn.llen(READY_KEY) == 0
