"""PostgreSQL through PgBouncer in transaction mode (issue 17, item 5).

With transaction pooling, each transaction of a client may run on another server connection,
so nothing may rely on session state: psycopg's server-side prepared statements (off with
DATABASE_TRANSACTION_POOLING=true: pgbouncer before 1.21 does not track them), SET, advisory
locks, LISTEN. The web app (in the test) and a real `wpotp worker` process both go through a
pgbouncer of the test's own whose server pool is smaller than either's connection pool, with
enough repetitions of every statement that psycopg would have prepared them (it does at the
fifth execution on a connection).
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.helpers import in_threads, make_key

from .procs import PGBOUNCER, PgBouncer, WorkerProc, wait_until, worker_env

pytestmark = pytest.mark.skipif(PGBOUNCER is None or shutil.which("psql") is None,
                                reason="pgbouncer (apt-get install pgbouncer) or psql is not installed")

ROUNDS, CLIENTS = 3, 4


def _send_and_verify(web, key, outbox, n: int) -> list[tuple[int, int, str]]:
    client = web.test_client()
    results = []
    for round_ in range(ROUNDS):
        recipient = f"+90555610{n:02d}{round_:02d}"
        sent = client.post("/v1/otp/send", headers=key.headers, json={"recipient": recipient})
        if sent.status_code != 201:
            results.append((sent.status_code, 0, str(sent.get_json())))
            continue
        otp_id = sent.get_json()["id"]
        code = wait_until(lambda r=recipient: next((m["code"] for m in outbox(r)), None), 20, every=0.2,
                          what=f"the code for {recipient} in the sandbox outbox")
        verified = client.post(f"/v1/otp/{otp_id}/verify", headers=key.headers, json={"code": code})
        status = client.get(f"/v1/otp/{otp_id}", headers=key.headers).get_json().get("status")
        results.append((sent.status_code, verified.status_code, status))
    return results


def test_sends_and_verifies_through_pgbouncer_in_transaction_mode(postgresql_only, make_app, app, outbox, tmp_path,
                                                                   figures):
    with PgBouncer(app.config["SQLALCHEMY_DATABASE_URI"]) as bouncer:
        web = make_app(SQLALCHEMY_DATABASE_URI=bouncer.url, DATABASE_TRANSACTION_POOLING=True)
        key = make_key(web)
        env = worker_env(web, web.config["REDIS_URL"], DATABASE_TRANSACTION_POOLING="true")
        worker = WorkerProc(env, tmp_path / "worker.log", threads=4)
        try:
            results = in_threads(CLIENTS, lambda n: _send_and_verify(web, key, outbox, n))
            pools = [p for p in bouncer.show("POOLS") if p["database"] == bouncer.target.database]
            stats = [s for s in bouncer.show("STATS") if s["database"] == bouncer.target.database]
            log = worker.log()
        finally:
            worker.stop()
            if os.environ.get("WPOTP_KEEP_PGBOUNCER_LOG"):
                print(bouncer.log())
    flat = [r for per_client in results for r in per_client]
    figures(otps=len(flat), transactions=int(stats[0]["total_xact_count"]), queries=int(stats[0]["total_query_count"]))
    assert flat == [(201, 200, "VERIFIED")] * (ROUNDS * CLIENTS), flat
    assert {p["pool_mode"] for p in pools} == {"transaction"}
    assert int(stats[0]["total_xact_count"]) > ROUNDS * CLIENTS * 4  # the app and the worker went through it
    assert "prepared statement" not in log and "Traceback" not in log, log[-5000:]
