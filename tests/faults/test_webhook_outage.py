"""Issue 14 fault suite: a webhook receiver down for "10 minutes", compressed by settings.

The real `wpotp worker` process (its threads and RQ scheduler) delivers, with the retry schedule
squeezed into seconds (WEBHOOK_RETRY_DELAYS=1,...,10). The receiver first refuses connections
(nothing listens on its port), then answers 500, then answers too late (timeouts), then comes
back. Events are emitted in every phase. Afterwards every event has been delivered, signed, at
least once, and every attempt is in the delivery log (webhook_deliveries, webhook_attempts).
Each phase lasts until every pending delivery has failed in that phase's way at least once, so
the test waits on what happened, never on a clock."""

from __future__ import annotations

import os
import time
from http.server import ThreadingHTTPServer

import pytest
from sqlalchemy import select

from tests.doubles import HttpDouble, Reply
from tests.webhooks.support import canceled_otp, closed_port, header, send_otp, set_webhook, signed_with, timestamp_ok
from wpotp.extensions import db
from wpotp.models import Event, WebhookAttempt, WebhookDelivery
from wpotp.webhooks.events import PUBLIC_EVENTS

from .procs import WorkerProc, worker_env

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
SCHEDULE = "1,1,2,2,3,3,4,5,6,8"  # SPEC §6 schedule (10 s ... 12 h) squeezed: 10 retries within 35 s
TIMEOUT = 1
REFUSED, TIMED_OUT = "could not connect", f"no answer within {TIMEOUT} s"


class FixedPortDouble(HttpDouble):
    """An HttpDouble on a chosen port: the receiver coming back where it was."""

    def __init__(self, port: int, handler=None):
        super().__init__(handler)
        handler_class = self._server.RequestHandlerClass
        self._server.server_close()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler_class)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{port}"


@pytest.fixture
def worker(app, tmp_path):
    """The real `wpotp worker` (4 threads and its scheduler) on the test database and Redis."""
    env = worker_env(app, TEST_REDIS_URL, WEBHOOK_ALLOW_PRIVATE="true", WEBHOOK_TIMEOUT=TIMEOUT,
                     WEBHOOK_RETRY_DELAYS=SCHEDULE, LOG_LEVEL="WARNING")
    proc = WorkerProc(env, tmp_path / "worker.log", threads=4)
    yield proc
    proc.stop()  # everything asserted is in the database by now


def _log(app) -> tuple[list[WebhookDelivery], list[WebhookAttempt]]:
    with app.app_context():
        deliveries = db.session.scalars(select(WebhookDelivery)).all()
        found = db.session.scalars(select(WebhookAttempt).order_by(WebhookAttempt.delivery_id,
                                                                   WebhookAttempt.number)).all()
        db.session.expunge_all()
        return deliveries, found


def _failed_so(attempt: WebhookAttempt, kind: str | int) -> bool:
    return attempt.status_code == kind if isinstance(kind, int) else attempt.error == kind


def _wait_until_each_pending_failed(app, worker, kind: str | int, seconds: float = 180) -> None:
    """Until every delivery not yet done has had an attempt failing with `kind` (error or status)."""
    deadline = time.monotonic() + seconds
    while True:
        assert worker.alive(), "the worker process stopped"
        deliveries, found = _log(app)
        hit = {a.delivery_id for a in found if _failed_so(a, kind)}
        if deliveries and all(d.id in hit for d in deliveries if d.status != "succeeded"):
            return
        assert time.monotonic() < deadline, f"gave up waiting for every delivery to fail with {kind!r}"
        time.sleep(0.2)


def _emit(client, key, phase: int) -> None:
    """Two sends (otp.sent, .delivered, .read by the worker) and two cancels (otp.canceled)."""
    for n in range(2):
        send_otp(client, key, f"+90555114{phase}{n}01")
        canceled_otp(client, key, f"+90555114{phase}{n}02")


def test_events_during_a_receiver_outage_are_all_delivered_afterwards(app, client, api_key, worker, figures):
    port = closed_port()
    secret = set_webhook(app, f"http://127.0.0.1:{port}/hook")  # every event; nothing listens there yet
    _emit(client, api_key, 1)
    _wait_until_each_pending_failed(app, worker, REFUSED)
    with FixedPortDouble(port, lambda seen: Reply(500, b"down for maintenance")) as receiver:
        _emit(client, api_key, 2)
        _wait_until_each_pending_failed(app, worker, 500)
        receiver.handler = lambda seen: Reply(200, delay=TIMEOUT + 1)
        _emit(client, api_key, 3)
        _wait_until_each_pending_failed(app, worker, TIMED_OUT)
        receiver.handler = lambda seen: Reply(200, {"ok": True})
        _wait_for_all_delivered(app, worker)
        seen = list(receiver.seen)

    deliveries, found = _log(app)
    _assert_every_event_delivered_and_logged(app, deliveries, found, seen, secret)
    _report(figures, deliveries, found, seen)


def _wait_for_all_delivered(app, worker, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while True:
        assert worker.alive(), "the worker process stopped"
        deliveries, _found = _log(app)
        assert not [d.id for d in deliveries if d.status == "given_up"], "a delivery was given up"
        if all(d.status == "succeeded" for d in deliveries):
            return
        assert time.monotonic() < deadline, "gave up waiting for every delivery to succeed"
        time.sleep(0.2)


def _assert_every_event_delivered_and_logged(app, deliveries, found, seen, secret: str) -> None:
    with app.app_context():
        events = {e.id for e in db.session.scalars(select(Event).where(Event.type.in_(PUBLIC_EVENTS)))}
    assert sorted(d.event_id for d in deliveries) == sorted(events)  # one delivery per public event
    assert all(d.status == "succeeded" for d in deliveries)
    received_ok = {header(s, "X-Wpotp-Delivery") for s in seen}
    assert events <= received_ok  # every event reached the receiver at least once
    for request in seen:  # ... every copy signed, both ways
        assert signed_with(secret, request) and timestamp_ok(secret, request), request.headers

    by_delivery: dict[str, list[WebhookAttempt]] = {}
    for attempt in found:
        by_delivery.setdefault(attempt.delivery_id, []).append(attempt)
    for delivery in deliveries:
        tried = by_delivery[delivery.id]
        assert [a.number for a in tried] == list(range(1, delivery.attempts + 1))
        assert tried[-1].status_code == 200 and delivery.last_status_code == 200
        for failure in tried[:-1]:
            assert failure.status_code == 500 or failure.error in (REFUSED, TIMED_OUT), failure.error
    reached = [a for a in found if a.status_code is not None or a.error == TIMED_OUT]
    assert len(reached) == len(seen)  # every request the receiver got is an attempt in the log
    kinds = {a.status_code or a.error for a in found}
    assert {REFUSED, 500, TIMED_OUT, 200} <= kinds


def _report(figures, deliveries, found, seen) -> None:
    per_event = [d.attempts for d in deliveries]
    figures(**{"events": len(deliveries), "deliveries": len(deliveries), "attempts": len(found),
               "refused": sum(a.error == REFUSED for a in found), "http_500": sum(a.status_code == 500 for a in found),
               "timeouts": sum(a.error == TIMED_OUT for a in found), "posts_received": len(seen),
               "max_attempts_per_event": max(per_event), "lost": 0})
