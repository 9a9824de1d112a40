"""SPEC §4: past its TTL an OTP answers OTP_EXPIRED and the sweeper marks it EXPIRED;
no OTP stays QUEUED forever (the sweeper re-enqueues or fails stuck rows)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tests.helpers import in_threads
from wpotp.extensions import db, get_queue, redis_client
from wpotp.models import Event
from wpotp.otp.maintenance import sweep
from wpotp.settings import refresh_settings

from ..otp.support import error_code, event_types, otp_row, send, send_attempts, shift_back, show, verify


def _sweep(app) -> dict:
    with app.app_context():
        return sweep()


def _queued(client, key, recipient: str, **fields) -> str:
    r = send(client, key, recipient, **fields)
    assert r.status_code == 201, r.json
    return r.json["id"]


# --- expiry ---------------------------------------------------------------------------------------

def test_sweep_expires_otp_past_its_ttl(app, client, api_key, run_worker):
    otp_id = _queued(client, api_key, "+905551110301", code="3141")
    run_worker()
    keeper = _queued(client, api_key, "+905551110302", code="2718")
    run_worker()
    assert _sweep(app)["expired"] == 0

    shift_back(app, otp_id, 301, "expires_at")
    result = _sweep(app)
    assert result["expired"] == 1

    row = otp_row(app, otp_id)
    assert row["status"] == "EXPIRED" and row["expired_at"] is not None
    assert event_types(app, otp_id).count("otp.expired") == 1
    assert show(client, api_key, otp_id)["expiredAt"] is not None
    v = verify(client, api_key, otp_id, "3141")
    assert (v.status_code, error_code(v)) == (400, "OTP_EXPIRED")

    assert otp_row(app, keeper)["status"] == "READ"  # not due: left alone
    assert _sweep(app)["expired"] == 0  # nothing twice
    assert event_types(app, otp_id).count("otp.expired") == 1


def test_sweep_command_expires_otp(app, client, api_key, run_worker):
    otp_id = _queued(client, api_key, "+905551110303", code="3141")
    run_worker()
    shift_back(app, otp_id, 301, "expires_at")

    result = app.test_cli_runner().invoke(args=["wpotp", "sweep"])
    assert result.exit_code == 0, result.output
    assert "expired=1" in result.output
    row = otp_row(app, otp_id)
    assert row["status"] == "EXPIRED" and row["expired_at"] is not None
    assert "otp.expired" in event_types(app, otp_id)
    v = verify(client, api_key, otp_id, "3141")
    assert (v.status_code, error_code(v)) == (400, "OTP_EXPIRED")


def test_verify_past_expiry_answers_expired_before_any_sweep(app, client, api_key, run_worker):
    otp_id = _queued(client, api_key, "+905551110304", code="3141")
    run_worker()
    shift_back(app, otp_id, 301, "expires_at")
    v = verify(client, api_key, otp_id, "3141")
    assert (v.status_code, error_code(v)) == (400, "OTP_EXPIRED")
    assert otp_row(app, otp_id)["status"] != "VERIFIED"


def test_send_job_for_expired_otp_sends_nothing(app, client, api_key, run_worker, outbox):
    otp_id = _queued(client, api_key, "+905551110305")
    shift_back(app, otp_id, 301, "expires_at")
    run_worker()
    assert outbox("+905551110305") == []
    assert otp_row(app, otp_id)["status"] == "EXPIRED"
    assert "otp.sent" not in event_types(app, otp_id)


def test_parallel_sweeps_expire_each_otp_once(app, client, api_key):
    ids = [_queued(client, api_key, f"+9055511103{n:02d}") for n in range(40, 52)]
    for otp_id in ids:
        shift_back(app, otp_id, 301, "expires_at")

    def run(_i):
        with app.app_context():
            return sweep()["expired"]

    assert sum(in_threads(5, run)) == len(ids)
    assert {otp_row(app, otp_id)["status"] for otp_id in ids} == {"EXPIRED"}
    with app.app_context():
        events = db.session.scalar(select(func.count()).select_from(Event).where(Event.type == "otp.expired"))
    assert events == len(ids)


# --- stuck in QUEUED ------------------------------------------------------------------------------
#
# The tests that lose or kill a send job by hand take RQ's per-OTP send jobs apart, so they pin
# SEND_BATCH=0 (`per_otp`); the same losses on the batch path (a lost list, a lost drain job, a
# drain job killed mid-batch, a lost code) are in tests/jobs/test_batch.py.

@pytest.fixture
def per_otp(app):
    app.config["SEND_BATCH"] = 0  # the pool restores the app's settings (and its extensions) after the test
    refresh_settings(app)  # the services read their settings once (wpotp/settings.py)
    return app


def _lose_send_job(app) -> None:
    with app.app_context():
        get_queue("otp").empty()


def test_sweep_requeues_otp_whose_send_job_was_lost(per_otp, app, client, api_key, run_worker, outbox):
    otp_id = _queued(client, api_key, "+905551110311")
    _lose_send_job(app)
    assert _sweep(app)["requeued"] == 0  # not stuck yet: sent moments ago

    shift_back(app, otp_id, 61, "last_sent_at")
    result = _sweep(app)
    assert result == {"in_doubt_deleted": 0, "expired": 0, "requeued": 1, "failed": 0,
                      "messages_expired": 0, "webhooks_requeued": 0,
                      "receipts_rescued": 0}
    assert _sweep(app)["requeued"] == 0  # its new job is pending: not queued twice

    run_worker()
    assert otp_row(app, otp_id)["status"] in ("SENT", "DELIVERED", "READ")
    sent = outbox("+905551110311")
    assert len(sent) == 1
    assert verify(client, api_key, otp_id, sent[0]["code"]).status_code == 200


def test_sweep_leaves_otp_with_pending_send_job_alone(app, client, api_key, run_worker, outbox):
    otp_id = _queued(client, api_key, "+905551110312")
    shift_back(app, otp_id, 61, "last_sent_at")
    assert _sweep(app) == {"in_doubt_deleted": 0, "expired": 0, "requeued": 0, "failed": 0,
                      "messages_expired": 0, "webhooks_requeued": 0,
                      "receipts_rescued": 0}
    run_worker()
    assert len(outbox("+905551110312")) == 1


def test_sweep_fails_stuck_otp_whose_code_is_gone(per_otp, app, client, api_key, run_worker, outbox):
    otp_id = _queued(client, api_key, "+905551110313")
    _lose_send_job(app)
    with app.app_context():
        conn = redis_client.conn
        sealed = list(conn.scan_iter(match="wpotp:seal:*"))
        assert sealed
        conn.delete(*sealed)
    shift_back(app, otp_id, 61, "last_sent_at")

    result = _sweep(app)
    assert result == {"in_doubt_deleted": 0, "expired": 0, "requeued": 0, "failed": 1,
                      "messages_expired": 0, "webhooks_requeued": 0,
                      "receipts_rescued": 0}
    row = otp_row(app, otp_id)
    assert row["status"] == "FAILED"
    assert row["error"].startswith("queue_lost")
    assert row["failed_at"] is not None
    assert event_types(app, otp_id).count("otp.failed") == 1
    run_worker()
    assert outbox("+905551110313") == []
    assert otp_row(app, otp_id)["status"] == "FAILED"


def test_sweep_leaves_otp_with_scheduled_retry_alone(app, make_app, api_key, run_worker):
    patient = make_app(SEND_RETRY_DELAYS=[100])
    c = patient.test_client()
    otp_id = _queued(c, api_key, "+15005550002")
    run_worker(patient)
    assert len(send_attempts(patient, otp_id)) == 1
    assert otp_row(patient, otp_id)["status"] == "QUEUED"  # waiting for its retry
    shift_back(patient, otp_id, 61, "last_sent_at")
    assert _sweep(patient) == {"in_doubt_deleted": 0, "expired": 0, "requeued": 0, "failed": 0,
                      "messages_expired": 0, "webhooks_requeued": 0,
                      "receipts_rescued": 0}
    with patient.app_context():
        assert len(get_queue("otp").scheduled_job_registry.get_job_ids()) == 1
        assert get_queue("otp").count == 0


# --- a worker killed between taking a job and starting it, or in the middle of it ---------------

def _pop_send_job_like_a_killed_worker(app) -> str:
    """What a worker's dequeue does before it marks the job started (RQ pops the id off the list
    with BLPOP): a worker SIGKILLed right then leaves the job hash saying `queued`, in no queue."""
    with app.app_context():
        queue = get_queue("otp")
        job_id = redis_client.conn.lpop(queue.key).decode()
        assert queue.fetch_job(job_id).get_status() == "queued"
        return job_id


def test_sweep_requeues_a_job_popped_by_a_worker_killed_before_starting_it(per_otp, app, client, api_key,
                                                                           run_worker, outbox):
    otp_id = _queued(client, api_key, "+905551110321")
    _pop_send_job_like_a_killed_worker(app)
    shift_back(app, otp_id, 61, "last_sent_at")

    assert _sweep(app)["requeued"] == 1
    run_worker()
    assert otp_row(app, otp_id)["status"] in ("SENT", "DELIVERED", "READ")
    assert len(outbox("+905551110321")) == 1


@pytest.mark.parametrize("ended", ["process killed", "slot's worker replaced"])
def test_sweep_requeues_a_started_job_whose_wpotp_worker_is_gone(per_otp, app, client, api_key, run_worker, outbox,
                                                                 ended):
    """A job `started` by a wpotp worker that its process no longer names as running (the process
    was killed, or the slot's RQ worker stopped on a Redis outage and a new one took its place)
    is rescued at once, not after a grace of minutes; one whose worker still runs is left alone."""
    otp_id = _queued(client, api_key, "+905551110322")
    job_id = _pop_send_job_like_a_killed_worker(app)
    alive = "wpotp:worker-alive:host.example.1234.abcd"
    with app.app_context():
        job = get_queue("otp").fetch_job(job_id)
        job.worker_name = "host.example.1234.abcd/3.1"
        job.set_status("started")
        job.started_at = job.enqueued_at
        job.save()
        redis_client.conn.set(alive, "host.example.1234.abcd/2.1 host.example.1234.abcd/3.1", ex=30)
    shift_back(app, otp_id, 61, "last_sent_at")
    assert _sweep(app)["requeued"] == 0  # its worker still runs: the job may still finish

    with app.app_context():
        if ended == "process killed":
            redis_client.conn.delete(alive)
        else:
            redis_client.conn.set(alive, "host.example.1234.abcd/2.1 host.example.1234.abcd/3.2", ex=30)
    assert _sweep(app)["requeued"] == 1
    run_worker()
    assert otp_row(app, otp_id)["status"] in ("SENT", "DELIVERED", "READ")
    assert len(outbox("+905551110322")) == 1
