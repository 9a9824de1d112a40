"""A drain job with nothing left lingers (DRAIN_LINGER_MS): it waits on the send list, entered in
its LINGERING set, and takes what arrives itself, so at a steady rate the sends do not each pay
for an RQ job of their own.

Real `wpotp worker` processes (not in burst mode: a burst never lingers), a Redis server of the
test's own and the Graph API double. What must hold: one drain job sends the sends that arrive
while it lingers; it stops lingering when nothing comes (the next send makes a new job pending),
when its worker stops (at once, not after the linger) and, when it is killed, once its entry
lapses, after which a worker's sweep sends what arrived meanwhile.
"""

from __future__ import annotations

import signal

from tests.helpers import make_key
from tests.providers.cloud_api.graph import SETTINGS as CLOUD_API
from tests.providers.cloud_api.graph import GraphDouble, status_item
from tests.providers.cloud_api.support import post_receipts
from wpotp.extensions import db
from wpotp.jobs.enqueue import LINGERING
from wpotp.jobs.receipt_queue import RECEIPT_CLAIMS, RECEIPT_LINGERING
from wpotp.models import Otp

from .procs import RedisServer, WorkerProc, wait_until, worker_env


def _drain_jobs(redis, prefix: str = "drain-") -> set[str]:
    """The ids of the drain jobs RQ has (kept SEND_RESULT_TTL seconds after they end); `rdrain-`
    for the receipt drain jobs."""
    return {key.decode().removeprefix("rq:job:") for key in redis.keys(f"rq:job:{prefix}*")
            if key.count(b":") == 2}


def _lingering(redis) -> set[str]:
    """The drain jobs entered as lingering (a killed one's entry stands until it lapses)."""
    return {member.decode() for member in redis.zrange(LINGERING, 0, -1)}


def _setup(make_app, redis_server, graph, **extra):
    settings = {**CLOUD_API, "WHATSAPP_GRAPH_URL": graph.url, "SEND_BATCH": 16, **extra}
    web = make_app(REDIS_URL=redis_server.url(), RATELIMIT_STORAGE_URI=redis_server.url(), **settings)
    return web, make_key(web, mode="live"), settings


def _send(web, key, recipient: str) -> str:
    answer = web.test_client().post("/v1/otp/send", headers=key.headers, json={"recipient": recipient})
    assert answer.status_code == 201, answer.json
    return answer.json["id"]


def _status(web, key, otp_id: str) -> str:
    return web.test_client().get(f"/v1/otp/{otp_id}", headers=key.headers).json["status"]


def test_a_lingering_drain_job_sends_what_arrives_and_ends_when_nothing_comes(make_app, app, tmp_path):
    with RedisServer(tmp_path / "redis") as redis_server, GraphDouble() as graph:
        web, key, settings = _setup(make_app, redis_server, graph, DRAIN_LINGER_MS=4000)
        redis = redis_server.client()
        worker = WorkerProc(worker_env(web, redis_server.url(), **settings), tmp_path / "w.log", threads=2)
        try:
            first = _send(web, key, "+905551117000")
            wait_until(lambda: len(graph.sends) == 1, 30, what="the first send")
            (job,) = _drain_jobs(redis)
            wait_until(lambda: _lingering(redis) == {job}, 10, what="the drain job to linger")
            ids = [first]
            for n in range(1, 5):  # a trickle: each send arrives while the job waits for one
                ids.append(_send(web, key, f"+90555111700{n}"))
                wait_until(lambda n=n: len(graph.sends) == n + 1, 30, what=f"send {n + 1}", every=0.05)
                wait_until(lambda: _lingering(redis) == {job}, 10, what="the job to linger again", every=0.05)
            assert _drain_jobs(redis) == {job}, worker.log()  # the lingering job sent them all: no new job
            # Nothing more comes: the job stops lingering once its linger has run out, and ends.
            wait_until(lambda: _lingering(redis) == set(), 30, what="the job to stop lingering")
            wait_until(lambda: redis.hget(f"rq:job:{job}", "status") == b"finished", 30, what="the job to end")
            ids.append(_send(web, key, "+905551117005"))  # none lingers: this send makes a job pending
            wait_until(lambda: len(graph.sends) == 6, 30, what="the send after the linger")
            assert len(_drain_jobs(redis)) == 2
        finally:
            worker.stop()
        assert [_status(web, key, otp_id) for otp_id in ids] == ["SENT"] * 6
        assert sorted(s.json["to"] for s in graph.sends) == [f"90555111700{n}" for n in range(6)]


def test_a_worker_stopping_while_its_drain_job_lingers_stops_at_once(make_app, app, tmp_path,
                                                                                run_worker):
    with RedisServer(tmp_path / "redis") as redis_server, GraphDouble() as graph:
        # A linger far longer than the wait below: the stop, not the linger running out, ends the job.
        web, key, settings = _setup(make_app, redis_server, graph, DRAIN_LINGER_MS=600_000)
        redis = redis_server.client()
        worker = WorkerProc(worker_env(web, redis_server.url(), WORKER_STOP_TIMEOUT=60, **settings),
                            tmp_path / "w.log", threads=2)
        try:
            _send(web, key, "+905551117100")
            wait_until(lambda: len(graph.sends) == 1, 30, what="the first send")
            (job,) = _drain_jobs(redis)
            wait_until(lambda: _lingering(redis) == {job}, 10, what="the drain job to linger")
            worker.stop_gracefully()
        finally:
            worker.stop()
        assert _lingering(redis) == set()  # the next send makes a drain job pending
        assert redis.hget(f"rq:job:{job}", "status") == b"finished"
        otp_id = _send(web, key, "+905551117101")
        assert len(_drain_jobs(redis)) == 2
        run_worker(web)
        assert _status(web, key, otp_id) == "SENT"


def test_a_send_made_while_a_killed_drain_job_seemed_to_linger_is_sent_once_its_entry_lapses(make_app, app,
                                                                                          tmp_path):
    with RedisServer(tmp_path / "redis") as redis_server, GraphDouble() as graph:
        web, key, settings = _setup(make_app, redis_server, graph, DRAIN_LINGER_MS=600_000, SWEEP_INTERVAL=1)
        redis = redis_server.client()
        worker = WorkerProc(worker_env(web, redis_server.url(), **settings), tmp_path / "w1.log", threads=2)
        try:
            _send(web, key, "+905551117200")
            wait_until(lambda: len(graph.sends) == 1, 30, what="the first send")
            (job,) = _drain_jobs(redis)
            wait_until(lambda: _lingering(redis) == {job}, 10, what="the drain job to linger")
            worker.signal(signal.SIGKILL, group=True)
            worker.proc.wait(timeout=30)
            # The dead job's entry still stands: this send queues no drain job of its own...
            otp_id = _send(web, key, "+905551117201")
            assert _lingering(redis) == {job} and _drain_jobs(redis) == {job}
        finally:
            worker.stop()
        # ...but the entry lapses, and a worker's sweep finds the send waiting with no drain pending.
        second = WorkerProc(worker_env(web, redis_server.url(), **settings), tmp_path / "w2.log", threads=2)
        try:
            wait_until(lambda: _status(web, key, otp_id) == "SENT", 60, what="the send after the kill")
        finally:
            second.stop()
        assert sorted(s.json["to"] for s in graph.sends) == ["905551117200", "905551117201"]


def test_a_lingering_receipt_drain_job_applies_the_receipts_that_trickle_in(make_app, app, tmp_path):
    """Meta posts a send's receipts one by one, seconds apart: one receipt drain job, lingering
    between them, applies them all (without lingering each POST would enqueue a job of its own)."""
    with RedisServer(tmp_path / "redis") as redis_server, GraphDouble() as graph:
        web, key, settings = _setup(make_app, redis_server, graph, DRAIN_LINGER_MS=4000, RECEIPT_BATCH=100)
        redis = redis_server.client()
        worker = WorkerProc(worker_env(web, redis_server.url(), **settings), tmp_path / "w.log", threads=4)
        try:
            otp_id = _send(web, key, "+905551117300")
            wait_until(lambda: _status(web, key, otp_id) == "SENT", 30, what="the send")
            with web.app_context():
                wamid = db.session.get(Otp, otp_id).provider_message_id
                db.session.remove()
            for n, status in enumerate(("delivered", "read")):
                answer = post_receipts(web.test_client(), status_item(wamid, status, 1779012301 + n), drain=False)
                assert answer.status_code == 200
                wait_until(lambda status=status: _status(web, key, otp_id) == status.upper(), 30, what=status)
                wait_until(lambda: len(_receipt_jobs(redis)) == 1 and
                           {m.decode() for m in redis.zrange(RECEIPT_LINGERING, 0, -1)} == _receipt_jobs(redis),
                           10, what="the receipt drain job to linger", every=0.05)
            assert len(_receipt_jobs(redis)) == 1, worker.log()
            # Nothing more comes: the job ends, and with nothing claimed it is no longer named among
            # the jobs holding claimed receipts (which the sweep and the bench read).
            (job,) = _receipt_jobs(redis)
            wait_until(lambda: redis.hget(f"rq:job:{job}", "status") == b"finished", 30, what="the job to end")
            assert not redis.sismember(RECEIPT_CLAIMS, job) and redis.zrange(RECEIPT_LINGERING, 0, -1) == []
        finally:
            worker.stop()


def _receipt_jobs(redis) -> set[str]:
    return _drain_jobs(redis, "rdrain-")
