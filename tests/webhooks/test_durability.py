"""SPEC §6 at least once, when things break: the delivery is written with its event (an outbox),
survives a worker killed mid-POST and a Redis that was away at commit, and is never posted by two
jobs at once."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from tests.doubles import Reply
from wpotp.extensions import db, get_queue
from wpotp.models import Otp
from wpotp.otp.maintenance import expire_due, sweep
from wpotp.util import utcnow
from wpotp.webhooks.delivery import deliver

from .support import (
    attempts,
    canceled_otp,
    closed_port,
    event_id,
    header,
    make_due,
    only_delivery,
    send_otp,
    set_webhook,
)

ROOT = Path(__file__).resolve().parents[2]
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _wait_for(condition, seconds: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def worker_process(backend, app, tmp_path):
    """Start the real `wpotp worker` in its own process on the test database and Redis."""
    _name, url, instance = backend
    started: list[subprocess.Popen] = []
    log = tmp_path / "worker.log"

    def start() -> subprocess.Popen:
        env = {**os.environ, "DATABASE_URL": url, "WPOTP_INSTANCE_DIR": str(instance), "REDIS_URL": TEST_REDIS_URL,
               "RATELIMIT_STORAGE_URI": TEST_REDIS_URL, "WPOTP_ENV": "development",
               # the keys the test app really uses (they decrypt the webhook secret)
               "OTP_HASH_KEY": app.config["OTP_HASH_KEY"], "SECRET_KEY": app.config["SECRET_KEY"],
               "WEBHOOK_ALLOW_PRIVATE": "true", "WEBHOOK_TIMEOUT": "10", "SANDBOX_RECEIPT_DELAY": "0",
               "LOG_LEVEL": "WARNING"}
        with log.open("ab") as out:
            # its own process group: RQ forks a scheduler child, which must die with it
            proc = subprocess.Popen([str(ROOT / ".venv/bin/flask"), "--app", "wsgi", "wpotp", "worker",
                                     "--threads", "1"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        _kill_group(proc)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the worker and its scheduler child, as when the machine or container dies."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def test_delivery_row_is_written_with_the_event_before_any_worker_runs(app, client, api_key, receiver):
    set_webhook(app, receiver.url + "/hook")
    otp_id = canceled_otp(client, api_key, "+905551120001")

    delivery = only_delivery(app)
    assert delivery["event_id"] == event_id(app, otp_id, "otp.canceled")
    assert (delivery["status"], delivery["attempts"], delivery["event_type"]) == ("pending", 0, "otp.canceled")
    assert delivery["next_attempt_at"] <= utcnow()
    with app.app_context():
        assert get_queue("webhooks").count == 1  # queued once the event's transaction committed
    assert receiver.seen == []


def test_sweep_requeues_a_due_delivery_whose_job_is_gone(app, client, api_key, receiver, run_worker):
    set_webhook(app, receiver.url + "/hook")
    canceled_otp(client, api_key, "+905551120002")
    delivery_id = only_delivery(app)["id"]
    with app.app_context():
        assert sweep()["webhooks_requeued"] == 0  # its job is waiting in the queue
        get_queue("webhooks").empty()  # ... and now it is lost
    make_due(app, delivery_id)
    with app.app_context():
        assert sweep()["webhooks_requeued"] == 1
    run_worker()

    assert len(receiver.seen) == 1
    assert only_delivery(app)["status"] == "succeeded"


def test_event_committed_while_redis_is_away_is_delivered_after_the_sweep(make_app, app, client, api_key,
                                                                          receiver, run_worker):
    dead_redis = f"redis://127.0.0.1:{closed_port()}/0"
    cut_off = make_app(REDIS_URL=dead_redis)  # queues, not the (process-wide) rate limiter
    set_webhook(app, receiver.url + "/hook", events=["otp.expired"])
    otp = send_otp(client, api_key, "+905551120003")
    with app.app_context():
        db.session.execute(update(Otp).where(Otp.id == otp["id"]).values(expires_at=utcnow()))
        db.session.commit()
    with cut_off.app_context():
        assert expire_due() == 1  # committed; queueing its delivery failed (and was logged)

    delivery = only_delivery(app)
    assert (delivery["status"], delivery["event_type"]) == ("pending", "otp.expired")
    with app.app_context():
        assert get_queue("webhooks").count == 0
    make_due(app, delivery["id"])
    with app.app_context():
        assert sweep()["webhooks_requeued"] == 1
    run_worker()

    assert [seen.json["event"] for seen in receiver.seen] == ["otp.expired"]
    assert only_delivery(app)["status"] == "succeeded"


def test_delivery_survives_a_worker_killed_mid_post(app, client, api_key, receiver, run_worker, worker_process):
    answers = iter([Reply(200, delay=5)])  # the first answer comes too late: the worker is dead by then
    receiver.handler = lambda seen: next(answers, Reply(200))
    set_webhook(app, receiver.url + "/hook", events=["otp.canceled"])
    otp_id = canceled_otp(client, api_key, "+905551120004")
    delivery_id = only_delivery(app)["id"]

    worker = worker_process()
    _wait_for(lambda: receiver.seen, what="the worker's POST")
    _kill_group(worker)

    delivery = only_delivery(app)
    assert (delivery["status"], delivery["attempts"]) == ("pending", 0)
    assert attempts(app, delivery_id) == []
    assert delivery["next_attempt_at"] > utcnow()  # the dead worker's lease
    with app.app_context():
        assert sweep()["webhooks_requeued"] == 0  # not while the lease holds

    make_due(app, delivery_id)  # the lease has lapsed
    with app.app_context():
        assert sweep()["webhooks_requeued"] >= 1
    run_worker()

    assert len(receiver.seen) == 2
    assert [header(seen, "X-Wpotp-Delivery") for seen in receiver.seen] == [event_id(app, otp_id, "otp.canceled")] * 2
    assert receiver.seen[0].body == receiver.seen[1].body
    delivery = only_delivery(app)
    assert (delivery["status"], delivery["attempts"]) == ("succeeded", 1)


def test_a_delivery_leased_by_another_job_is_skipped(app, client, api_key, receiver):
    release = threading.Event()

    def hold(seen):
        release.wait(timeout=30)
        return Reply(200)

    receiver.handler = hold
    set_webhook(app, receiver.url + "/hook")
    canceled_otp(client, api_key, "+905551120005")
    delivery_id = only_delivery(app)["id"]
    results: list[str] = []

    def first_job() -> None:
        with app.app_context():
            results.append(deliver(delivery_id))

    thread = threading.Thread(target=first_job)
    thread.start()
    try:
        _wait_for(lambda: receiver.seen, seconds=30, what="the first job's POST")
        with app.app_context():
            assert deliver(delivery_id) == "skipped"  # the first job holds the lease
    finally:
        release.set()
        thread.join(timeout=30)

    assert results == ["succeeded"]
    assert len(receiver.seen) == 1
    assert len(attempts(app, delivery_id)) == 1
    with app.app_context():
        assert deliver(delivery_id) == "skipped"  # and once done, it is never posted again
    assert len(receiver.seen) == 1


def test_the_lease_outlasts_the_post_time_limit(make_app, app, client, api_key, receiver):
    patient = make_app(WEBHOOK_TIMEOUT=20)
    release = threading.Event()
    seen_lease = []

    def hold(seen):
        seen_lease.append(only_delivery(app)["next_attempt_at"])
        release.wait(timeout=30)
        return Reply(200)

    receiver.handler = hold
    set_webhook(app, receiver.url + "/hook")
    canceled_otp(client, api_key, "+905551120006")
    delivery_id = only_delivery(app)["id"]
    before = utcnow()
    thread = threading.Thread(target=lambda: _deliver_in(patient, delivery_id))
    thread.start()
    try:
        _wait_for(lambda: seen_lease, seconds=30, what="the POST")
    finally:
        release.set()
        thread.join(timeout=30)
    assert seen_lease[0] >= before + timedelta(seconds=20)


def _deliver_in(app, delivery_id: str) -> None:
    with app.app_context():
        deliver(delivery_id)
