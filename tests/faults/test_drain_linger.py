"""A drain job with nothing left lingers (DRAIN_LINGER_MS): it holds the drain flag and takes
what arrives itself, so at a steady rate the sends do not each pay for an RQ job of their own.

Real `wpotp worker` processes (not in burst mode: a burst never lingers), a Redis server of the
test's own and the Graph API double. What must hold: one drain job sends the sends that arrive
while it lingers; it lets go of the flag when nothing comes (the next send makes a new job
pending), when its worker stops (at once, not after the linger) and, when it is killed, within
the hold's TTL, after which a worker's sweep sends what arrived meanwhile.
"""

from __future__ import annotations

import signal

from tests.helpers import make_key
from tests.providers.cloud_api.graph import SETTINGS as CLOUD_API
from tests.providers.cloud_api.graph import GraphDouble
from wpotp.jobs.enqueue import DRAIN_FLAG

from .procs import RedisServer, WorkerProc, wait_until, worker_env


def _drain_jobs(redis) -> set[str]:
    """The ids of the drain jobs RQ has (kept SEND_RESULT_TTL seconds after they end)."""
    return {key.decode().removeprefix("rq:job:") for key in redis.keys("rq:job:drain-*")
            if key.count(b":") == 2}


def _holder(redis) -> str | None:
    flag = redis.get(DRAIN_FLAG)
    return flag.decode() if flag is not None else None


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


def test_a_lingering_drain_job_sends_what_arrives_and_lets_go_when_nothing_comes(make_app, app, tmp_path):
    with RedisServer(tmp_path / "redis") as redis_server, GraphDouble() as graph:
        web, key, settings = _setup(make_app, redis_server, graph, DRAIN_LINGER_MS=4000)
        redis = redis_server.client()
        worker = WorkerProc(worker_env(web, redis_server.url(), **settings), tmp_path / "w.log", threads=2)
        try:
            first = _send(web, key, "+905551117000")
            wait_until(lambda: len(graph.sends) == 1, 30, what="the first send")
            (job,) = _drain_jobs(redis)
            wait_until(lambda: _holder(redis) == job, 10, what="the drain job to hold the flag")
            ids = [first] + [_send(web, key, f"+90555111700{n}") for n in range(1, 5)]
            wait_until(lambda: len(graph.sends) == 5, 30, what="the next four sends", every=0.05)
            assert _drain_jobs(redis) == {job}, worker.log()  # the lingering job sent them: no new job
            # Nothing more comes: the job lets go of the flag once its linger has run out, and ends.
            wait_until(lambda: _holder(redis) is None, 30, what="the hold to be let go")
            wait_until(lambda: redis.hget(f"rq:job:{job}", "status") == b"finished", 30, what="the job to end")
            ids.append(_send(web, key, "+905551117005"))  # the flag is free: this send makes a job pending
            wait_until(lambda: len(graph.sends) == 6, 30, what="the send after the linger")
            assert len(_drain_jobs(redis)) == 2
        finally:
            worker.stop()
        assert [_status(web, key, otp_id) for otp_id in ids] == ["SENT"] * 6
        assert sorted(s.json["to"] for s in graph.sends) == [f"90555111700{n}" for n in range(6)]


def test_a_worker_stopping_while_its_drain_job_lingers_stops_at_once_and_lets_go(make_app, app, tmp_path,
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
            wait_until(lambda: _holder(redis) == job, 10, what="the drain job to hold the flag")
            worker.signal(signal.SIGTERM)
            assert worker.proc.wait(timeout=15) == 0, worker.log()
            log = worker.log()
        finally:
            worker.stop()
        assert "did not finish in time" not in log, log
        assert _holder(redis) is None  # let go: the next send makes a drain job pending
        assert redis.hget(f"rq:job:{job}", "status") == b"finished"
        otp_id = _send(web, key, "+905551117101")
        assert len(_drain_jobs(redis)) == 2
        run_worker(web)
        assert _status(web, key, otp_id) == "SENT"


def test_a_send_made_while_a_killed_drain_job_held_the_flag_is_sent_after_its_hold_lapses(make_app, app,
                                                                                       tmp_path):
    with RedisServer(tmp_path / "redis") as redis_server, GraphDouble() as graph:
        web, key, settings = _setup(make_app, redis_server, graph, DRAIN_LINGER_MS=600_000, SWEEP_INTERVAL=1)
        redis = redis_server.client()
        worker = WorkerProc(worker_env(web, redis_server.url(), **settings), tmp_path / "w1.log", threads=2)
        try:
            _send(web, key, "+905551117200")
            wait_until(lambda: len(graph.sends) == 1, 30, what="the first send")
            (job,) = _drain_jobs(redis)
            wait_until(lambda: _holder(redis) == job, 10, what="the drain job to hold the flag")
            worker.signal(signal.SIGKILL, group=True)
            worker.proc.wait(timeout=30)
            # The dead job's hold still stands: this send queues no drain job of its own...
            otp_id = _send(web, key, "+905551117201")
            assert _holder(redis) == job and _drain_jobs(redis) == {job}
        finally:
            worker.stop()
        # ...but the hold lapses, and a worker's sweep finds the send waiting with no drain pending.
        second = WorkerProc(worker_env(web, redis_server.url(), **settings), tmp_path / "w2.log", threads=2)
        try:
            wait_until(lambda: _status(web, key, otp_id) == "SENT", 60, what="the send after the kill")
        finally:
            second.stop()
        assert sorted(s.json["to"] for s in graph.sends) == ["905551117200", "905551117201"]
