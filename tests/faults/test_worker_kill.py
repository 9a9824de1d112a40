"""Workers SIGKILLed during a load, restarted by a supervisor loop: no OTP lost or stuck (issue 14).

A kill can land anywhere: between popping a job and starting it, mid provider call, after the
provider answered but before the commit. Whatever it hits, every OTP answered 201 must end
SENT (or later) once the sweep has had its rescue time (STUCK_QUEUED_AFTER + SWEEP_INTERVAL +
the 6 s a dead worker's liveness key lasts).
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections import Counter
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import func, select

from tests.helpers import make_key
from wpotp.extensions import db, get_queue
from wpotp.jobs.enqueue import send_job_key
from wpotp.models import Event, Otp

from .procs import RedisServer, Supervisor, WorkerProc, wait_until, worker_env

SENDS = 1000
SENDERS = 6
RESCUE = {"STUCK_QUEUED_AFTER": 5, "SWEEP_INTERVAL": 1}
SENT_OR_LATER = {"SENT", "DELIVERED", "READ", "VERIFIED"}


def _wait_for_all_sent(web, ids, supervisor, redis_server) -> None:
    """Until every accepted OTP is sent or later; else the workers' logs and what is left unsent."""
    try:
        wait_until(lambda: set(_statuses(web, ids)) <= SENT_OR_LATER, 180, every=0.5,
                   what="every accepted OTP to be sent")
    except AssertionError:
        print(supervisor.logs()[-20000:])
        raise AssertionError(_unsent(web, ids, redis_server)) from None


def _statuses(app, ids: list[str]) -> Counter:
    with app.app_context():
        rows = db.session.execute(select(Otp.id, Otp.status).where(Otp.id.in_(ids))).all()
        db.session.remove()
    return Counter(str(row.status) for row in rows)


def _unsent(app, ids: list[str], redis_server) -> list[dict]:
    """What is known of each OTP not sent: its events, its send job (for the failure report)."""
    conn = redis_server.client()
    with app.app_context():
        rows = db.session.execute(select(Otp.id, Otp.status, Otp.last_sent_at).where(
            Otp.id.in_(ids), Otp.status.not_in(SENT_OR_LATER))).all()
        out = []
        for row in rows:
            job_id = conn.get(send_job_key(row.id))
            job = conn.hgetall(f"rq:job:{job_id.decode()}") if job_id else {}
            out.append({"otp": row.id, "status": row.status, "last_sent_at": row.last_sent_at,
                        "events": db.session.scalars(select(Event.type).where(Event.otp_id == row.id)).all(),
                        "job": job_id, "job_status": job.get(b"status"), "worker": job.get(b"worker_name"),
                        "alive": [k.decode() for k in conn.keys("wpotp:worker-alive:*")]})
        db.session.remove()
    return out


def _send_all(web, key, count: int, on_accepted) -> tuple[list[str], Counter]:
    ids: list[str] = []
    answers: Counter = Counter()
    lock = threading.Lock()
    numbers = iter(range(count))

    def sender() -> None:
        client = web.test_client()
        while True:
            with lock:
                n = next(numbers, None)
            if n is None:
                return
            r = client.post("/v1/otp/send", headers=key.headers, json={"recipient": f"+9055520{n:05d}"})
            with lock:
                answers[r.status_code] += 1
                if r.status_code == 201:
                    ids.append(r.json["id"])
                    on_accepted(len(ids))

    threads = [threading.Thread(target=sender) for _ in range(SENDERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    return ids, answers


def test_workers_killed_during_1000_sends_lose_no_otp(make_app, app, tmp_path, figures):
    """Per-OTP send jobs (SEND_BATCH=0); the batch path's version is test_workers_killed_mid_batch_lose_no_otp."""
    per_otp = {**RESCUE, "SEND_BATCH": 0}
    with RedisServer(tmp_path / "redis") as redis_server:
        web = make_app(REDIS_URL=redis_server.url(), RATELIMIT_STORAGE_URI=redis_server.url(), **per_otp)
        key = make_key(web)
        env = worker_env(web, redis_server.url(), WORKER_STOP_TIMEOUT=2, **per_otp)
        kills: list[tuple[int, str, float]] = []
        with Supervisor(env, tmp_path, threads=8) as supervisor:
            wait_until(lambda: redis_server.client().scard("rq:workers"), 30, what="the first worker to start")
            plan = {SENDS // 4: ("pid", False), SENDS // 2: ("process group", True), 3 * SENDS // 4: ("pid", False)}

            def on_accepted(count: int) -> None:
                if count in plan:
                    what, group = plan.pop(count)
                    supervisor.current.signal(signal.SIGKILL, group=group)
                    kills.append((count, what, time.monotonic()))

            started = time.monotonic()
            ids, answers = _send_all(web, key, SENDS, on_accepted)
            accepted_in = time.monotonic() - started
            _wait_for_all_sent(web, ids, supervisor, redis_server)
            done_in = time.monotonic() - kills[-1][2]
            workers = len(supervisor.procs)
            logs = supervisor.logs()
    statuses = _statuses(web, ids)
    rescued = sum(int(n) for n in re.findall(r"'requeued': (\d+)", logs))
    figures(sends=SENDS, accepted=answers[201], accepted_in_s=round(accepted_in, 1), kills=len(kills),
            worker_processes=workers, rescued_by_sweep=rescued, all_sent_after_last_kill_s=round(done_in, 1),
            **{status.lower(): n for status, n in statuses.items()})
    assert answers == {201: SENDS}
    assert len(kills) == 3 and workers == 4
    assert set(statuses) <= SENT_OR_LATER and sum(statuses.values()) == SENDS


def test_a_restarted_worker_has_a_scheduler_within_seconds_and_leaves_no_orphan(make_app, app, tmp_path):
    """The scheduler is a thread of the worker process (no child to orphan); after a SIGKILL, the
    next worker on this host takes the scheduler lock over from the dead process at once, instead
    of waiting for RQ's ten-minute maintenance pass."""
    with RedisServer(tmp_path / "redis") as redis_server:
        web = make_app(REDIS_URL=redis_server.url(), RATELIMIT_STORAGE_URI=redis_server.url())
        env = worker_env(web, redis_server.url())
        conn = redis_server.client()
        first = WorkerProc(env, tmp_path / "first.log", threads=2)
        try:
            wait_until(lambda: conn.get("rq:scheduler-lock:otp"), 30, what="the first worker's scheduler lock")
            assert first.children() == []  # no forked scheduler
            first.signal(signal.SIGKILL)
            first.proc.wait(timeout=10)
            assert conn.get("rq:scheduler-lock:otp")  # the dead worker's lock is still there...

            second = WorkerProc(env, tmp_path / "second.log", threads=2)
            try:
                held_before = conn.get("rq:scheduler-lock:otp")
                wait_until(lambda: conn.get("rq:scheduler-lock:otp") not in (None, held_before), 20,
                           what="the second worker to take the scheduler lock")
                with web.app_context():
                    job = get_queue("default").enqueue_in(timedelta(seconds=1), "wpotp.jobs.maintenance.sweep_job")
                wait_until(lambda: job.get_status(refresh=True) == "finished", 20,
                           what="a delayed job to run through the new scheduler")
            finally:
                second.stop()
        finally:
            first.stop()


BATCH_SENDS = 600


def test_workers_killed_mid_batch_lose_no_otp(make_app, app, tmp_path, figures):
    """The batch send path (SEND_BATCH), against a Graph API double that holds each request
    0.3 s, so each kill lands while a drain job has a claimed batch at the provider. Every OTP
    answered 201 still ends SENT or later, each with at least one successful provider call: the
    sweep hands the dead drain jobs' claimed sends back."""
    from tests.providers.cloud_api.graph import SETTINGS as CLOUD_API
    from tests.providers.cloud_api.graph import GraphDouble
    from wpotp.models import SendAttempt

    with RedisServer(tmp_path / "redis") as redis_server, GraphDouble() as graph:
        answer = graph.http.handler

        def slow(seen):
            time.sleep(0.3)
            return answer(seen)

        graph.http.handler = slow
        settings = {**CLOUD_API, "WHATSAPP_GRAPH_URL": graph.url, "WHATSAPP_MPS": 10000, "SEND_BATCH": 16,
                    **RESCUE}
        conn = redis_server.client()
        web = make_app(REDIS_URL=redis_server.url(), RATELIMIT_STORAGE_URI=redis_server.url(), **settings)
        key = make_key(web, mode="live")
        env = worker_env(web, redis_server.url(), WORKER_STOP_TIMEOUT=2, **settings)
        kills: list[tuple[int, bool]] = []
        with Supervisor(env, tmp_path, threads=4) as supervisor:
            wait_until(lambda: conn.scard("rq:workers"), 30, what="the first worker to start")
            plan = {BATCH_SENDS // 4, BATCH_SENDS // 2, 3 * BATCH_SENDS // 4}

            def on_accepted(count: int) -> None:
                if count not in plan:
                    return
                plan.discard(count)
                deadline = time.monotonic() + 5
                while not conn.keys("wpotp:sendq:claimed:*") and time.monotonic() < deadline:
                    time.sleep(0.001)
                held = bool(conn.keys("wpotp:sendq:claimed:*"))
                supervisor.current.signal(signal.SIGKILL, group=True)
                kills.append((count, held))

            ids, answers = _send_all(web, key, BATCH_SENDS, on_accepted)
            _wait_for_all_sent(web, ids, supervisor, redis_server)
            left_claimed = len(conn.keys("wpotp:sendq:claimed:*"))  # the killed jobs' batches
            logs = supervisor.logs()
    statuses = _statuses(web, ids)
    with web.app_context():
        sent_ok = dict(db.session.execute(
            select(SendAttempt.otp_id, func.count()).where(SendAttempt.otp_id.in_(ids), SendAttempt.ok.is_(True))
            .group_by(SendAttempt.otp_id)).all())
        db.session.remove()
    rescued = sum(int(n) for n in re.findall(r"'requeued': (\d+)", logs))
    figures(sends=BATCH_SENDS, accepted=answers[201], kills=len(kills), kills_mid_batch=sum(h for _, h in kills),
            claimed_lists_left_by_kills=left_claimed, rescued_by_sweep=rescued,
            sent_twice=sum(1 for n in sent_ok.values() if n > 1),
            **{status.lower(): n for status, n in statuses.items()})
    assert answers == {201: BATCH_SENDS}
    assert len(kills) == 3 and any(held for _, held in kills) and left_claimed >= 1
    assert rescued >= 1  # sends a killed drain job had claimed were handed back by the sweep
    assert set(statuses) <= SENT_OR_LATER and sum(statuses.values()) == BATCH_SENDS
    assert set(sent_ok) == set(ids)  # each sent at least once; none lost


@contextmanager
def _rows_held(app, otp_ids: list[str]):
    """Hold these OTP rows from another connection, so a drain job that claimed their receipts waits
    inside its batch: FOR UPDATE on PostgreSQL, SQLite's one write lock (BEGIN IMMEDIATE) there."""
    with app.app_context():
        raw = db.engine.raw_connection()
        try:
            cursor = raw.cursor()
            if db.engine.dialect.name == "postgresql":
                cursor.execute("SELECT id FROM otps WHERE id = ANY(%s) FOR UPDATE", (otp_ids,))
            else:
                cursor.execute("BEGIN IMMEDIATE")
            yield
        finally:
            raw.rollback()
            raw.close()


def test_a_worker_killed_mid_drain_loses_no_receipt(make_app, app, tmp_path, figures):
    """The receipt queue (RECEIPT_BATCH): a drain job has claimed a batch and waits on the rows (held
    by the test) when its worker is SIGKILLed. The sweep of the restarted worker gives the claimed
    receipts back, a drain job applies them: every OTP ends DELIVERED, each with one otp.delivered."""
    from tests.otp.support import send
    from tests.providers.cloud_api.graph import SETTINGS as CLOUD_API
    from tests.providers.cloud_api.graph import GraphDouble, status_item
    from tests.providers.cloud_api.support import post_receipts
    from wpotp.jobs.receipt_queue import RECEIPT_CLAIMS, RECEIPT_QUEUE

    count = 8
    with RedisServer(tmp_path / "redis") as redis_server, GraphDouble() as graph:
        settings = {**CLOUD_API, "WHATSAPP_GRAPH_URL": graph.url, "RECEIPT_BATCH": 4, **RESCUE}
        conn = redis_server.client()
        web = make_app(REDIS_URL=redis_server.url(), RATELIMIT_STORAGE_URI=redis_server.url(), **settings)
        key = make_key(web, mode="live")
        client = web.test_client()
        env = worker_env(web, redis_server.url(), WORKER_STOP_TIMEOUT=2, **settings)
        with Supervisor(env, tmp_path, threads=2) as supervisor:
            wait_until(lambda: conn.scard("rq:workers"), 30, what="the first worker to start")
            ids = [send(client, key, f"+90555111{3000 + i}", code="482913").json["id"] for i in range(count)]
            _wait_for_all_sent(web, ids, supervisor, redis_server)
            with web.app_context():
                wamids = db.session.scalars(select(Otp.provider_message_id).where(Otp.id.in_(ids))).all()
                db.session.remove()
            t = int(time.time()) + 5
            with _rows_held(web, ids):
                answer = post_receipts(client, *[status_item(w, "delivered", t) for w in wamids], drain=False)
                wait_until(lambda: conn.scard(RECEIPT_CLAIMS), 30, what="a drain job to claim a batch")
                time.sleep(0.3)  # inside its batch: waiting on the held rows
                claimed = sum(conn.llen(f"wpotp:receiptq:claimed:{j.decode()}") for j in conn.smembers(RECEIPT_CLAIMS))
                supervisor.current.signal(signal.SIGKILL, group=True)
            wait_until(lambda: _statuses(web, ids) == {"DELIVERED": count}, 90, every=0.5,
                       what="every receipt to be applied after the kill")
            wait_until(lambda: not conn.scard(RECEIPT_CLAIMS) and not conn.llen(RECEIPT_QUEUE), 30,
                       what="the receipt queue to be empty")
            logs = supervisor.logs()
    with web.app_context():
        delivered = db.session.scalars(select(Event.otp_id).where(Event.otp_id.in_(ids),
                                                                  Event.type == "otp.delivered")).all()
        db.session.remove()
    rescued = sum(int(n) for n in re.findall(r"'receipts_rescued': (\d+)", logs))
    figures(receipts=count, claimed_when_killed=claimed, rescued_by_sweep=rescued)
    assert answer.status_code == 200
    assert claimed >= 1 and rescued >= claimed
    assert sorted(delivered) == sorted(ids)  # each applied once
