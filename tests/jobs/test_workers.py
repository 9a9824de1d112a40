"""The worker process: threads of SimpleWorkers, and the WHATSAPP_MPS cap they share."""

from __future__ import annotations

import time

import pytest

from tests.helpers import in_threads
from wpotp.extensions import get_queue, redis_client
from wpotp.jobs.worker import Worker, run_workers
from wpotp.providers.throttle import SlotWaitStopped, try_take, wait_for_slot


def test_no_more_sends_start_than_the_cap_within_a_window(app):
    """45 callers racing at a cap of 20: exactly 20 may start, the rest are told how long to wait."""
    def take(_i):
        with app.app_context():
            return try_take("cloud_api", 20)

    waits = in_threads(45, take)
    assert waits.count(0.0) == 20
    assert all(0 < w <= 1.05 for w in waits if w)


def test_a_slot_frees_up_once_the_window_has_passed(app):
    with app.app_context():
        assert [try_take("slow", 2) for _ in range(3)][:2] == [0.0, 0.0]
        waited = wait_for_slot("slow", 2)  # blocks until the first send leaves the window
    assert waited > 0


def test_a_wait_for_a_slot_gives_up_when_the_worker_stops_and_takes_none(app):
    """A drain job's send waiting for a slot (the next frees in about a second) sees its worker's
    stop request within a slice, and leaves without taking a slot."""
    stop_at = time.monotonic() + 0.3
    with app.app_context():
        assert try_take("stopping", 1) == 0.0
        with pytest.raises(SlotWaitStopped):
            wait_for_slot("stopping", 1, stopping=lambda: time.monotonic() >= stop_at)
        assert redis_client.conn.zcard("wpotp:throttle:stopping") == 1  # still only the first send's


def test_separate_providers_do_not_share_slots(app):
    with app.app_context():
        assert try_take("cloud_api", 1) == 0.0
        assert try_take("cloud_api", 1) > 0
        assert try_take("gateway", 1) == 0.0


def test_threaded_worker_drains_every_queue(app, client, api_key):
    ids = [client.post("/v1/otp/send", headers=api_key.headers,
                       json={"recipient": f"+9055511130{i:02d}"}).json["id"] for i in range(12)]
    with app.app_context():
        run_workers(app, threads=4, burst=True)
    statuses = {client.get(f"/v1/otp/{i}", headers=api_key.headers).json["status"] for i in ids}
    assert statuses == {"READ"}


def test_a_worker_renews_its_own_heartbeat_at_most_every_few_seconds(app):
    """RQ renews a worker's key around every job; the key lives worker_ttl + 60 s, so wpotp's
    Worker renews it at most every HEARTBEAT_EVERY seconds (fewer Redis round trips per job)."""
    with app.app_context():
        conn = redis_client.conn
        worker = Worker([get_queue("otp")], connection=conn)
        worker.register_birth()
        try:
            worker.heartbeat()
            first = conn.hget(worker.key, "last_heartbeat")
            time.sleep(0.01)
            worker.heartbeat()
            assert conn.hget(worker.key, "last_heartbeat") == first
            worker._last_own_heartbeat -= Worker.HEARTBEAT_EVERY
            worker.heartbeat()
            assert conn.hget(worker.key, "last_heartbeat") != first
            assert conn.ttl(worker.key) > worker.worker_ttl
        finally:
            worker.register_death()


def test_jobs_keep_the_apps_redis_timeout(app, client, api_key):
    """RQ widens the socket timeout of the connection pool it is handed (to about 415 s) to fit
    its blocking dequeue; the app's own Redis calls inside jobs must keep their configured timeout."""
    with app.app_context():
        configured = redis_client.conn.connection_pool.connection_kwargs["socket_timeout"]
        client.post("/v1/otp/send", headers=api_key.headers, json={"recipient": "+905551113101"})
        run_workers(app, threads=2, burst=True)
        assert redis_client.conn.connection_pool.connection_kwargs["socket_timeout"] == configured == 5


def test_every_worker_thread_can_hold_two_database_connections_at_once(app):
    """A send job holding SQLite's write lock may need a second connection (the configuration
    cache reads on a session of its own). With a capped pool, a worker's threads waiting for
    that lock could hold every connection, and the holder then waited for one: every writer
    stalled until a 30 s timeout (issue 18). Two per thread, all at once, must be there."""
    from wpotp.extensions import db

    with app.app_context():
        if db.engine.dialect.name != "sqlite":
            pytest.skip("PostgreSQL has row locks: a writer does not hold up the others")
        held = [db.engine.connect() for _ in range(2 * app.config["WORKER_THREADS"] + 2)]
        try:
            for conn in held:
                assert conn.exec_driver_sql("SELECT 1").scalar() == 1
        finally:
            for conn in held:
                conn.close()


def test_a_scheduler_lock_held_by_a_half_written_holder_does_not_stop_a_worker(app):
    """RQ's scheduler heartbeat can rewrite `last_heartbeat` into a hash its holder's death had just
    deleted: a lock then names a holder with no name, host or pid. A worker starting next to it
    (burst or not) must neither crash nor take a lock whose holder it cannot judge."""
    import threading

    from wpotp.jobs.worker import Scheduler

    with app.app_context():
        conn = redis_client.conn
    conn.set("rq:scheduler-lock:otp", "ghost", ex=60)
    conn.hset("rq:scheduler:ghost", "last_heartbeat", "2026-12-03T14:05:45.623455Z")
    try:
        scheduler = Scheduler(conn, threading.Event())
        scheduler.enqueue_due_once()
        scheduler.tick()
        assert conn.get("rq:scheduler-lock:otp") == b"ghost"  # left to expire
        assert "otp" not in scheduler.rq.acquired_locks
        assert "webhooks" in scheduler.rq.acquired_locks  # the others are taken as usual
    finally:
        scheduler.rq.stop()
        conn.delete("rq:scheduler-lock:otp", "rq:scheduler:ghost")
