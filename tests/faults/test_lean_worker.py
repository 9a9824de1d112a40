"""`wpotp worker` from a shell becomes the lean worker process (wpotp/jobs/main.py): the same
PID, without the web app's modules, and it serves jobs as before."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.helpers import make_key

from .procs import RedisServer, WorkerProc, wait_until, worker_env


def _maps(pid: int | str) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_wpotp_worker_hands_its_process_to_the_lean_worker_which_sends(make_app, app, tmp_path):
    with RedisServer(tmp_path / "redis") as redis_server:
        web = make_app(REDIS_URL=redis_server.url(), RATELIMIT_STORAGE_URI=redis_server.url())
        key = make_key(web)
        worker = WorkerProc(worker_env(web, redis_server.url()), tmp_path / "w.log", threads=2, via_cli=True)
        try:
            wait_until(lambda: web.test_client().get("/readyz").json["workers"] == {"alive": 1}, 30,
                       what="/readyz to count the worker")
            # The process Popen started (its PID is what systemd and `make run` watch) now runs
            # wpotp.jobs.main: the flask CLI replaced itself.
            cmdline = Path(f"/proc/{worker.pid}/cmdline").read_bytes().split(b"\0")
            assert b"wpotp.jobs.main" in cmdline and b"--threads" in cmdline, cmdline
            # The web app's modules were never imported: pydantic's compiled core (the API's
            # schemas) is not mapped, as it is in this test process that serves the API.
            assert "pydantic_core" in _maps("self")
            assert "pydantic_core" not in _maps(worker.pid)

            r = web.test_client().post("/v1/otp/send", headers=key.headers, json={"recipient": "+905551110901"})
            assert r.status_code == 201, r.json
            otp_id = r.json["id"]
            wait_until(lambda: web.test_client().get(f"/v1/otp/{otp_id}", headers=key.headers).json["status"]
                       in ("SENT", "DELIVERED", "READ"), 30, what="the lean worker to send the OTP")
            worker.signal(signal.SIGTERM)
            assert worker.proc.wait(timeout=15) == 0, worker.log()
        finally:
            worker.stop()
