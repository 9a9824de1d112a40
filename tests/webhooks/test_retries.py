"""SPEC §6 at least once: 2xx is done; anything else, a timeout or a refused connection is retried
on the schedule, then given up. Every attempt is recorded."""

from __future__ import annotations

from datetime import timedelta

import pytest

from config import Config, ConfigError
from tests.doubles import Reply
from tests.otp.support import run_queue
from wpotp.extensions import get_queue, redis_client
from wpotp.otp.maintenance import sweep
from wpotp.util import utcnow
from wpotp.webhooks.delivery import deliver

from .support import (
    attempts,
    canceled_otp,
    closed_port,
    header,
    make_due,
    only_delivery,
    point_endpoint,
    scripted,
    set_webhook,
)

SPEC_SCHEDULE = [10, 30, 120, 600, 1800, 3600, 10800, 21600, 43200]  # 10 s ... 12 h


@pytest.fixture
def quick(make_app, app):
    """Retries at once (so a burst worker runs them all) and a one-second POST time limit."""
    return make_app(WEBHOOK_RETRY_DELAYS=[0, 0, 0], WEBHOOK_TIMEOUT=1)


def _one_delivery(app, key, receiver_url: str, recipient: str) -> str:
    """An endpoint wanting otp.canceled, and one OTP canceled: exactly one delivery. Returns its id."""
    set_webhook(app, receiver_url, events=["otp.canceled"])
    canceled_otp(app.test_client(), key, recipient)
    return only_delivery(app)["id"]


def _queued_webhook_jobs(app) -> int:
    with app.app_context():
        return get_queue("webhooks").count


def _same_event_each_time(receiver) -> None:
    ids = {header(seen, "X-Wpotp-Delivery") for seen in receiver.seen}
    assert len(ids) == 1 and ids == {receiver.seen[0].json["id"]}
    assert len({seen.body for seen in receiver.seen}) == 1
    assert len({header(seen, "X-Wpotp-Signature") for seen in receiver.seen}) == 1


def test_server_error_then_success_is_delivered_on_the_second_attempt(quick, api_key, run_worker, receiver):
    receiver.handler = scripted(Reply(500, b"server on fire"))
    delivery_id = _one_delivery(quick, api_key, receiver.url + "/hook", "+905551118001")
    run_worker(quick)

    assert len(receiver.seen) == 2
    _same_event_each_time(receiver)
    first, second = attempts(quick, delivery_id)
    assert (first["number"], first["status_code"], first["response_excerpt"], first["error"]) == (
        1, 500, "server on fire", None)
    assert isinstance(first["duration_ms"], int) and first["duration_ms"] >= 0
    assert first["next_attempt_at"] is not None
    assert (second["number"], second["status_code"], second["response_excerpt"]) == (2, 200, '{"ok": true}')
    assert second["next_attempt_at"] is None and second["error"] is None
    delivery = only_delivery(quick)
    assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == ("succeeded", 2, 200)
    assert delivery["completed_at"] is not None and delivery["next_attempt_at"] is None


def test_timeout_then_success_is_delivered(quick, api_key, run_worker, receiver):
    receiver.handler = scripted(Reply(200, delay=2))  # past WEBHOOK_TIMEOUT=1
    delivery_id = _one_delivery(quick, api_key, receiver.url + "/hook", "+905551118002")
    run_worker(quick)

    assert len(receiver.seen) == 2
    _same_event_each_time(receiver)
    first, second = attempts(quick, delivery_id)
    assert first["status_code"] is None and first["response_excerpt"] is None
    assert first["error"] == "no answer within 1 s"
    assert second["status_code"] == 200
    assert only_delivery(quick)["status"] == "succeeded"


def test_refused_connection_is_retried_until_the_endpoint_answers(quick, api_key, receiver):
    dead = f"http://127.0.0.1:{closed_port()}/hook"
    delivery_id = _one_delivery(quick, api_key, dead, "+905551118003")
    run_queue(quick, "webhooks", max_jobs=1)

    (first,) = attempts(quick, delivery_id)
    assert first["status_code"] is None and first["error"] == "could not connect"
    assert only_delivery(quick)["status"] == "pending"
    assert _queued_webhook_jobs(quick) == 1  # the retry waits in the queue

    point_endpoint(quick, receiver.url + "/hook")
    run_queue(quick, "webhooks")
    assert len(receiver.seen) == 1
    delivery = only_delivery(quick)
    assert (delivery["status"], delivery["attempts"]) == ("succeeded", 2)
    assert delivery["url"] == receiver.url + "/hook"


def test_failing_every_time_is_given_up_after_the_last_retry(quick, api_key, run_worker, receiver):
    receiver.handler = lambda seen: Reply(503, b"down for maintenance")
    delivery_id = _one_delivery(quick, api_key, receiver.url + "/hook", "+905551118004")
    run_worker(quick)

    retries = quick.config["WEBHOOK_RETRY_DELAYS"]
    assert len(receiver.seen) == len(retries) + 1 == 4
    _same_event_each_time(receiver)
    rows = attempts(quick, delivery_id)
    assert [a["number"] for a in rows] == [1, 2, 3, 4]
    assert all(a["status_code"] == 503 and a["response_excerpt"] == "down for maintenance" for a in rows)
    assert all(a["next_attempt_at"] is not None for a in rows[:-1]) and rows[-1]["next_attempt_at"] is None
    delivery = only_delivery(quick)
    assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == ("given_up", 4, 503)
    assert delivery["completed_at"] is not None and delivery["next_attempt_at"] is None
    with quick.app_context():
        queue = get_queue("webhooks")
        assert queue.count == 0 and queue.scheduled_job_registry.count == 0


def test_a_delayed_retry_waits_in_the_scheduler_and_is_not_posted_early(make_app, app, api_key, run_worker,
                                                                         receiver):
    patient = make_app(WEBHOOK_RETRY_DELAYS=[60, 600])
    receiver.handler = scripted(Reply(500))
    delivery_id = _one_delivery(patient, api_key, receiver.url + "/hook", "+905551118005")
    before = utcnow()
    run_worker(patient)
    after = utcnow()

    assert len(receiver.seen) == 1
    delivery = only_delivery(patient)
    assert (delivery["status"], delivery["attempts"]) == ("pending", 1)
    assert before + timedelta(seconds=50) <= delivery["next_attempt_at"] <= after + timedelta(seconds=70)
    assert attempts(patient, delivery_id)[0]["next_attempt_at"] == delivery["next_attempt_at"]
    with patient.app_context():
        queue = get_queue("webhooks")
        assert queue.count == 0 and queue.scheduled_job_registry.count == 1
        assert deliver(delivery_id) == "skipped"  # a job arriving before the retry is due does nothing
    assert len(receiver.seen) == 1


@pytest.mark.parametrize("status", [200, 202, 204, 299])
def test_any_2xx_is_success(app, api_key, run_worker, receiver, status):
    receiver.handler = lambda seen: Reply(status, b"" if status == 204 else b"thanks")
    delivery_id = _one_delivery(app, api_key, receiver.url + "/hook", "+905551118006")
    run_worker()

    assert len(receiver.seen) == 1
    assert only_delivery(app)["status"] == "succeeded"
    assert [a["status_code"] for a in attempts(app, delivery_id)] == [status]


@pytest.mark.parametrize("status", [199, 300, 400, 404, 410, 429])
def test_anything_but_2xx_is_retried(app, api_key, run_worker, receiver, status):
    receiver.handler = lambda seen: Reply(status, b"no")
    _one_delivery(app, api_key, receiver.url + "/hook", "+905551118007")
    run_worker()

    delivery = only_delivery(app)
    assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == ("pending", 1, status)


def test_the_response_excerpt_is_short_and_printable(app, api_key, run_worker, receiver):
    receiver.handler = lambda seen: Reply(500, b"\x00\x07oops " + b"x" * 10_000)
    delivery_id = _one_delivery(app, api_key, receiver.url + "/hook", "+905551118008")
    run_worker()

    (attempt,) = attempts(app, delivery_id)
    assert attempt["response_excerpt"].startswith("oops xxx")
    assert len(attempt["response_excerpt"]) <= 300 and attempt["response_excerpt"].isprintable()


def test_default_schedule_is_the_specs(monkeypatch, tmp_path, app):
    for name in ("WEBHOOK_RETRY_DELAYS", "WEBHOOK_TIMEOUT", "WEBHOOK_ALLOW_PRIVATE", "WPOTP_ENV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WPOTP_INSTANCE_DIR", str(tmp_path))
    cfg = Config.from_env()
    assert cfg.WEBHOOK_RETRY_DELAYS == SPEC_SCHEDULE
    assert cfg.WEBHOOK_TIMEOUT == 10
    assert cfg.WEBHOOK_ALLOW_PRIVATE is False
    assert app.config["WEBHOOK_RETRY_DELAYS"] == SPEC_SCHEDULE  # the tests' default app runs it too

    monkeypatch.setenv("WEBHOOK_RETRY_DELAYS", "5, 15,60")
    assert Config.from_env().WEBHOOK_RETRY_DELAYS == [5, 15, 60]
    monkeypatch.setenv("WEBHOOK_RETRY_DELAYS", "5,soon")
    with pytest.raises(ConfigError, match="WEBHOOK_RETRY_DELAYS"):
        Config.from_env()


def test_each_retry_waits_the_next_delay_of_the_schedule_then_gives_up(app, api_key, receiver):
    receiver.handler = lambda seen: Reply(500)
    delivery_id = _one_delivery(app, api_key, receiver.url + "/hook", "+905551118009")
    results = []
    for _ in range(len(SPEC_SCHEDULE) + 1):
        make_due(app, delivery_id)  # pretend the wait is over
        with app.app_context():
            results.append(deliver(delivery_id))

    assert results == ["retrying"] * 9 + ["given_up"]
    assert len(receiver.seen) == 10
    rows = attempts(app, delivery_id)
    waits = [(a["next_attempt_at"] - a["started_at"]).total_seconds() for a in rows[:-1]]
    for wait, delay in zip(waits, SPEC_SCHEDULE, strict=True):
        assert delay <= wait <= delay + 5, (waits, SPEC_SCHEDULE)
    assert rows[-1]["next_attempt_at"] is None
    assert only_delivery(app)["status"] == "given_up"


def test_sweep_requeues_a_due_retry_only_when_its_job_is_gone(make_app, app, api_key, run_worker, receiver):
    patient = make_app(WEBHOOK_RETRY_DELAYS=[600])
    receiver.handler = scripted(Reply(500))
    delivery_id = _one_delivery(patient, api_key, receiver.url + "/hook", "+905551118010")
    run_worker(patient)
    with patient.app_context():
        assert sweep()["webhooks_requeued"] == 0  # not due yet
    make_due(patient, delivery_id)
    with patient.app_context():
        assert sweep()["webhooks_requeued"] == 0  # due, but its retry is still scheduled: not queued twice
        redis_client.conn.flushdb()  # Redis restarts empty: the scheduled retry is lost
        assert sweep()["webhooks_requeued"] == 1
    run_worker(patient)

    assert len(receiver.seen) == 2
    assert only_delivery(patient)["status"] == "succeeded"


def test_an_attempt_records_when_it_started(app, api_key, run_worker, receiver):
    received_at = []

    def slow(seen):
        received_at.append(utcnow())
        return Reply(200, delay=1)

    receiver.handler = slow
    delivery_id = _one_delivery(app, api_key, receiver.url + "/hook", "+905551118011")
    run_worker()

    (attempt,) = attempts(app, delivery_id)
    assert attempt["status_code"] == 200
    assert attempt["started_at"] <= received_at[0]  # it began before the receiver had the request
