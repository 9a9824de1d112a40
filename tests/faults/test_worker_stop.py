"""Stopping a worker (SIGTERM from systemd, Ctrl-C under `make run`) (issue 14, defect 6).

An idle worker stops at once: its threads look at the stop request between one-second
dequeue slices. A busy one lets its sends finish for WORKER_STOP_TIMEOUT seconds; a send
still waiting on the provider then is handed back to the queue, and nothing is lost.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading

from tests.doubles import Reply
from tests.helpers import make_key
from tests.providers.cloud_api.graph import SETTINGS as CLOUD_API
from tests.providers.cloud_api.graph import GraphDouble

from .procs import ROOT, RedisServer, WorkerProc, free_port, wait_until, worker_env


def test_an_idle_worker_stops_on_sigterm_at_once(make_app, app, tmp_path):
    with RedisServer(tmp_path / "redis") as redis_server:
        web = make_app(REDIS_URL=redis_server.url(), RATELIMIT_STORAGE_URI=redis_server.url())
        worker = WorkerProc(worker_env(web, redis_server.url(), WORKER_STOP_TIMEOUT=60), tmp_path / "w.log",
                            threads=16)
        try:
            wait_until(lambda: web.test_client().get("/readyz").json["workers"] == {"alive": 1}, 30,
                       what="/readyz to count the worker")
            worker.signal(signal.SIGTERM)
            # Far below the stop timeout (60 s) and RQ's 405 s dequeue: today's 16 idle threads took ~15 min.
            assert worker.proc.wait(timeout=15) == 0, worker.log()
            assert redis_server.client().keys("wpotp:worker-alive:*") == []
            assert web.test_client().get("/readyz").json["workers"] == {"alive": 0}
        finally:
            worker.stop()


def test_a_busy_worker_hands_back_the_send_it_could_not_finish(make_app, app, tmp_path, run_worker):
    release = threading.Event()
    with RedisServer(tmp_path / "redis") as redis_server, GraphDouble() as graph:
        settings = {**CLOUD_API, "WHATSAPP_GRAPH_URL": graph.url, "PROVIDER_TIMEOUT": 30}
        web = make_app(REDIS_URL=redis_server.url(), RATELIMIT_STORAGE_URI=redis_server.url(), **settings)
        key = make_key(web, mode="live")
        hang = graph.http.handler

        def slow_first(seen):
            if not release.is_set() and len(graph.sends) == 1:
                release.wait(20)  # the provider takes its time with the first send
                return Reply(status=503, body={"error": {"message": "gone", "code": 1}})
            return hang(seen)

        graph.http.handler = slow_first
        worker = WorkerProc(worker_env(web, redis_server.url(), WORKER_STOP_TIMEOUT=1, **settings),
                            tmp_path / "w.log", threads=2)
        try:
            sent = web.test_client().post("/v1/otp/send", headers=key.headers, json={"recipient": "+905551114401"})
            assert sent.status_code == 201
            otp_id = sent.json["id"]
            wait_until(lambda: graph.sends, 30, what="the worker to call the provider")
            worker.signal(signal.SIGTERM)
            assert worker.proc.wait(timeout=20) == 0, worker.log()
            assert "handed back" in worker.log()
        finally:
            release.set()
            worker.stop()
        run_worker(web)
        shown = web.test_client().get(f"/v1/otp/{otp_id}", headers=key.headers).json
        assert shown["status"] == "SENT", shown
        assert len(graph.sends) == 2


def test_a_stopping_worker_gives_back_the_batched_sends_it_has_not_started(make_app, app, tmp_path, run_worker):
    """The batch send path: one drain job has claimed six sends and, at WHATSAPP_MPS=1, sends
    them a second apart. On SIGTERM it starts no more (its waits for a throughput slot see the
    stop request), gives the unstarted ones back to the send list, and the worker exits long
    before its stop timeout (60 s) without a timeout hand-back; nothing is stranded in a
    claimed list, and another worker then sends every OTP exactly once."""
    with RedisServer(tmp_path / "redis") as redis_server, GraphDouble() as graph:
        settings = {**CLOUD_API, "WHATSAPP_GRAPH_URL": graph.url, "WHATSAPP_MPS": 1, "SEND_BATCH": 16}
        web = make_app(REDIS_URL=redis_server.url(), RATELIMIT_STORAGE_URI=redis_server.url(), **settings)
        key = make_key(web, mode="live")
        client = web.test_client()
        recipients = [f"+9055511146{n:02d}" for n in range(6)]
        ids = []
        for recipient in recipients:  # all waiting before the worker starts: one drain job claims them all
            sent = client.post("/v1/otp/send", headers=key.headers, json={"recipient": recipient})
            assert sent.status_code == 201, sent.json
            ids.append(sent.json["id"])
        worker = WorkerProc(worker_env(web, redis_server.url(), WORKER_STOP_TIMEOUT=60, **settings),
                            tmp_path / "w.log", threads=2)
        try:
            wait_until(lambda: graph.sends, 30, what="the drain job's first send")
            log = worker.stop_gracefully()
        finally:
            worker.stop()
        redis = redis_server.client()
        made = len(graph.sends)
        assert made < len(recipients), "the stop came too late to test anything"
        assert redis.llen("wpotp:sendq") == len(recipients) - made, log
        assert redis.keys("wpotp:sendq:claimed:*") == []
        run_worker(web)
        for otp_id in ids:
            assert client.get(f"/v1/otp/{otp_id}", headers=key.headers).json["status"] == "SENT"
        assert sorted("+" + s.json["to"] for s in graph.sends) == sorted(recipients)


def test_make_run_stops_on_ctrl_c_without_reporting_a_failure(tmp_path):
    """`make run` (scripts/run.sh) under Ctrl-C: the SIGINT reaches the script, gunicorn and the
    worker at once; everything stops, the exit status is 0, and no failure is printed."""
    with RedisServer(tmp_path / "redis") as redis_server:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WPOTP_", "DATABASE_", "REDIS_"))}
        env.update(WPOTP_INSTANCE_DIR=str(tmp_path / "instance"), DATABASE_URL=f"sqlite:///{tmp_path}/run.db",
                   REDIS_URL=redis_server.url(), PORT=str(free_port()), WEB_CONCURRENCY="1", WORKER_THREADS="4")
        run = subprocess.Popen(["bash", "scripts/run.sh"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            wait_until(lambda: redis_server.client().keys("wpotp:worker-alive:*"), 60, what="make run to be up")
            os.killpg(run.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
            out, err = run.communicate(timeout=60)
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 0, (out, err)
    assert "stopped" not in err and "Stopping wpotp" in out, (out, err)
