"""A COMMIT whose answer is lost (SPEC §3: a 503 leaves no row).

When the database goes away during the COMMIT of a new OTP (a crash, a cut connection), the row
may be in although the client gets a 503; CI once saw exactly that under `pg_ctl stop -m
immediate` (tests/faults/test_database_restart.py). Here it is made to happen every time: the app
talks to PostgreSQL through a real TCP proxy on 127.0.0.1 that, once armed, forwards the COMMIT
that follows an INSERT into `otps` and then cuts both sides before the server's answer comes
back. The server has committed; the app has no answer. The checks: the client gets the 503
envelope, the row the server committed is deleted once the database answers again (by the
same process's next send, or by the sweep when that process is gone), and a retry with the same
`reference` gets a new OTP that is really sent.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time

import pytest
import redis
from rq import SimpleWorker
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from config import TestConfig
from tests.conftest import _admin
from tests.helpers import make_key
from wpotp import create_app, upgrade_database
from wpotp.extensions import QUEUE_NAMES, db, get_queue, redis_client
from wpotp.otp import service
from wpotp.otp.maintenance import sweep
from wpotp.otp.templates import seed_default_templates

DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
pytestmark = pytest.mark.skipif(not DATABASE_URL, reason="TEST_DATABASE_URL is not set (PostgreSQL tests are off)")


class CommitCutter:
    """A TCP proxy to PostgreSQL; `arm()` makes it cut the next COMMIT of a transaction that inserted
    into `otps` after the COMMIT reached the server and before its answer reaches the client."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = self.listener.getsockname()[1]
        self.armed = threading.Event()
        self.cuts = 0
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self) -> None:
        self.armed.set()

    def _accept(self) -> None:
        while not self.closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            state = {"inserted": False, "cut": False}
            threading.Thread(target=self._pump, args=(client, server, state, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, state, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, state: dict, to_server: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if to_server and b"INSERT INTO otps" in chunk:
                    state["inserted"] = True
                cut = to_server and state["inserted"] and b"COMMIT" in chunk and self.armed.is_set()
                if to_server and b"COMMIT" in chunk:
                    state["inserted"] = False
                if cut:
                    state["cut"] = True  # from here on nothing goes back to the client
                if not to_server and state["cut"]:
                    continue
                sink.sendall(chunk)
                if cut:
                    self.armed.clear()
                    self.cuts += 1
                    time.sleep(0.5)  # the server reads the COMMIT and commits; its answer goes nowhere
                    for s in (source, sink):
                        s.close()
                    return
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.closing = True
        self.listener.close()


@pytest.fixture
def database():
    """A fresh database of this test's own on the TEST_DATABASE_URL server, migrated."""
    base = make_url(DATABASE_URL)
    name = f"{base.database}_in_doubt_{os.getpid()}"
    _admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
    url = base.set(database=name)
    yield url
    _admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def cutter(database):
    proxy = CommitCutter((database.host or "127.0.0.1", database.port or 5432))
    yield proxy
    proxy.close()


@pytest.fixture
def app(database, cutter, tmp_path):
    """The app on the database through the proxy (sslmode=disable, so the proxy can read the wire)."""
    via_proxy = database.set(host="127.0.0.1", port=cutter.port,
                             query={"sslmode": "disable"}).render_as_string(hide_password=False)
    app = create_app(TestConfig(via_proxy, tmp_path))
    with app.app_context():
        upgrade_database(app)
        seed_default_templates()
        db.session.commit()
    redis.Redis.from_url(os.environ["TEST_REDIS_URL"]).flushdb()
    service._in_doubt.clear()
    yield app
    service._in_doubt.clear()
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def rows(database):
    """The OTP ids on the server, read past the proxy."""
    engine = create_engine(database)

    def read() -> set[str]:
        with engine.connect() as conn:
            return set(conn.execute(text("SELECT id FROM otps")).scalars())

    yield read
    engine.dispose()


def _send(client, key, recipient: str, **extra) -> tuple[int, dict]:
    answer = client.post("/v1/otp/send", json={"recipient": recipient, **extra},
                         headers={"Authorization": f"Bearer {key.secret}"})
    return answer.status_code, answer.get_json()


def _cut_send(app, cutter, rows, key, **extra) -> str:
    """A send whose COMMIT lands on the server but whose answer is cut: the 503, and the row it left."""
    cutter.arm()
    status, body = _send(app.test_client(), key, "+905551110001", **extra)
    assert cutter.cuts == 1, "the proxy never saw the send's COMMIT"
    assert (status, body["error"]["code"]) == (503, "SERVICE_UNAVAILABLE"), body
    left = rows()
    assert len(left) == 1, "the server did not commit before the cut: nothing was in doubt"
    (otp_id,) = left
    return otp_id


def _work(app) -> None:
    with app.app_context():
        SimpleWorker([get_queue(name) for name in QUEUE_NAMES],
                     connection=redis_client.conn).work(burst=True, logging_level="WARNING")


def test_the_row_of_a_cut_commit_is_deleted_by_the_next_send_of_the_process(app, cutter, rows):
    key = make_key(app)
    orphan = _cut_send(app, cutter, rows, key)
    with app.app_context():
        assert redis_client.conn.hexists(service.IN_DOUBT_KEY, orphan)

    status, body = _send(app.test_client(), key, "+905551110002")
    assert status == 201, body  # the pool dropped the cut connection
    assert rows() == {body["id"]}, "the 503's row is still there"
    _work(app)
    answer = app.test_client().get(f"/v1/otp/{body['id']}", headers={"Authorization": f"Bearer {key.secret}"})
    assert answer.get_json()["status"] in {"SENT", "DELIVERED", "READ"}


def test_the_sweep_deletes_it_when_the_process_that_got_the_503_is_gone(app, cutter, rows):
    key = make_key(app)
    orphan = _cut_send(app, cutter, rows, key)
    service._in_doubt.clear()  # that process ended before it could resolve it: only Redis knows
    with app.app_context():
        result = sweep()
    assert result["in_doubt_deleted"] == 1
    assert result["failed"] == 0
    assert rows() == set()
    with app.app_context():  # kept a while (a late COMMIT on a cut connection), then dropped
        assert redis_client.conn.hexists(service.IN_DOUBT_KEY, orphan)
        assert sweep()["in_doubt_deleted"] == 0


def test_a_retry_with_the_same_reference_gets_a_new_otp_that_is_sent(app, cutter, rows):
    key = make_key(app)
    orphan = _cut_send(app, cutter, rows, key, reference="order-77")
    service._in_doubt.clear()  # the retry reaches another process: it learns of the doubt from Redis

    status, body = _send(app.test_client(), key, "+905551110001", reference="order-77")
    assert status == 201, body
    assert body["id"] != orphan, "the retry was given the 503's OTP, which no worker will ever send"
    assert rows() == {body["id"]}
    _work(app)
    answer = app.test_client().get(f"/v1/otp/{body['id']}", headers={"Authorization": f"Bearer {key.secret}"})
    assert answer.get_json()["status"] in {"SENT", "DELIVERED", "READ"}
