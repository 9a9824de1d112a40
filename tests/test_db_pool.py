"""The database pool tests a connection before handing it out only when it sat idle
(DATABASE_PING_AFTER_MS, wpotp/__init__.py _ping_when_idle): a connection killed while it waited
in the pool is replaced unseen; one killed moments after its last use fails one request with a
503 and nothing written, and the next request reconnects; 0 tests every checkout, as SQLAlchemy's
pool_pre_ping. PostgreSQL only: SQLite has no server to lose a connection to."""

from __future__ import annotations

import time

import psycopg
import pytest
from sqlalchemy import func, make_url, select

from tests.helpers import make_key
from wpotp.extensions import db
from wpotp.models import Event, Otp

pytestmark = pytest.mark.usefixtures("app")


@pytest.fixture(autouse=True)
def _postgresql_only(backend):
    if backend[0] != "postgresql":
        pytest.skip("needs the PostgreSQL backend (TEST_DATABASE_URL): SQLite connections are files")


def _one_pooled_connection(app) -> int:
    """Empty the pool, then leave one connection in it; its server process id."""
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
        with db.engine.connect() as conn:
            return conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()


def _kill(app, pid: int) -> None:
    """End that server process from outside the pool, as a restart or a pooler's timeout would."""
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone()[0] is True
        for _ in range(100):  # terminate only signals: wait until the process is gone
            if not admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
                return
            time.sleep(0.02)
    raise AssertionError(f"server process {pid} did not end")


def _send(app, key, number: str):
    return app.test_client().post("/v1/otp/send", headers=key.headers, json={"recipient": number})


def _counts(app) -> tuple[int, int]:
    with app.app_context():
        return (db.session.scalar(select(func.count()).select_from(Otp)),
                db.session.scalar(select(func.count()).select_from(Event)))


def _server_pid(app) -> int:
    with app.app_context(), db.engine.connect() as conn:
        return conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()


def test_a_connection_killed_while_idle_in_the_pool_is_replaced_before_anybody_uses_it(make_app):
    app = make_app(DATABASE_PING_AFTER_MS=50)
    key = make_key(app)
    pid = _one_pooled_connection(app)
    _kill(app, pid)
    time.sleep(0.1)  # longer than DATABASE_PING_AFTER_MS: the next checkout tests it
    answer = _send(app, key, "+905551110001")
    assert answer.status_code == 201, answer.json
    assert _server_pid(app) != pid
    assert _counts(app) == (1, 1)


def test_a_connection_killed_just_after_its_use_fails_one_request_with_a_503_and_the_next_reconnects(make_app):
    app = make_app(DATABASE_PING_AFTER_MS=600_000)  # never idle long enough to be tested
    key = make_key(app)
    pid = _one_pooled_connection(app)
    _kill(app, pid)
    refused = _send(app, key, "+905551110002")  # handed out untested: its first statement finds it dead
    assert refused.status_code == 503, refused.json
    assert refused.json["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert _counts(app) == (0, 0)  # nothing written
    answer = _send(app, key, "+905551110003")  # the pool dropped the dead connection and reconnects
    assert answer.status_code == 201, answer.json
    assert _counts(app) == (1, 1)


def test_zero_tests_every_connection_it_hands_out(make_app):
    app = make_app(DATABASE_PING_AFTER_MS=0)
    with app.app_context():
        assert db.engine.pool._pre_ping is True  # SQLAlchemy's own pool_pre_ping, not ours
    key = make_key(app)
    pid = _one_pooled_connection(app)
    _kill(app, pid)
    answer = _send(app, key, "+905551110004")  # at once, no wait: still tested, replaced
    assert answer.status_code == 201, answer.json
    assert _server_pid(app) != pid
