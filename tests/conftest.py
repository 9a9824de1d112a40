"""Fixtures: a real database (SQLite always, PostgreSQL when TEST_DATABASE_URL is set),
real Redis (TEST_REDIS_URL, default db 15, flushed per test), real RQ worker runs (wpotp's Worker).

Chain: backend -> app -> client -> api_key. Every test that takes `app` runs once per
backend. Nothing of wpotp is mocked: outside services are real servers on 127.0.0.1.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from flask import Flask
from sqlalchemy import create_engine, delete, inspect, make_url, text

from config import TestConfig
from wpotp import create_app, upgrade_database
from wpotp.extensions import db, init_limiter, redis_client
from wpotp.logs import configure_logging
from wpotp.models import Template
from wpotp.otp.templates import seed_default_templates
from wpotp.providers.sandbox import read_outbox

from .helpers import Key, make_key, work_queues


def _redis_of_this_worker(url: str) -> str:
    """Under pytest-xdist each worker (gw0, gw1, ...) flushes a Redis database of its own: the
    given one for gw0, the ones below it for the others (15, 14, ...)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    parts = urlsplit(url)
    db_number = int(parts.path.lstrip("/") or 0) - index
    if db_number < 0:
        raise RuntimeError(f"{url}: too few Redis databases below it for xdist worker {worker}")
    return urlunsplit(parts._replace(path=f"/{db_number}"))


TEST_REDIS_URL = _redis_of_this_worker(os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))
os.environ["TEST_REDIS_URL"] = TEST_REDIS_URL  # TestConfig reads it
BACKENDS = ["sqlite"] + (["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [])
KEEP_TABLES = {"alembic_version", "templates"}


def _private_database(url: str) -> str:
    """A fresh database of this test process's own beside TEST_DATABASE_URL's (`<name>_<pid>`), so
    concurrent runs never share one; migrations then run on it from nothing."""
    base = make_url(url)
    name = f"{base.database}_{os.getpid()}"
    _admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
    return base.set(database=name).render_as_string(hide_password=False)


def _admin(base, *statements: str) -> None:
    engine = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        for statement in statements:
            conn.execute(text(statement))
    engine.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request, tmp_path_factory) -> tuple[str, str, Path]:
    """(name, database url, instance dir), migrated from an empty database by Alembic."""
    instance = tmp_path_factory.mktemp(f"instance-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{instance / 'test.db'}"
    else:
        url = _private_database(os.environ["TEST_DATABASE_URL"])
    app = create_app(TestConfig(url, instance))
    with app.app_context():
        upgrade_database(app)
        seed_default_templates()
        db.session.commit()
        db.engine.dispose()
    yield request.param, url, instance
    if request.param == "postgresql":
        _admin(make_url(url), f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')


def _clean(app) -> None:
    _delete_rows(app)
    _flusher().flushdb()


_FLUSHER: list[redis.Redis] = []


def _flusher() -> redis.Redis:
    """One client per test process for the per-test FLUSHDB: a new connection costs ~3 ms (the
    handshake), as much as the flush itself ten times over."""
    if not _FLUSHER:
        _FLUSHER.append(redis.Redis.from_url(TEST_REDIS_URL))
    return _FLUSHER[0]


def _delete_rows(app) -> None:
    """Empty every table but the kept ones, first the rows that reference others. On PostgreSQL all
    the DELETEs go in one round trip; not TRUNCATE, which costs ~100 ms more per test on these
    small tables (it makes new files for each), and waits on any open transaction, even a reader."""
    with app.app_context():
        tables = _tables_to_empty(app)
        with db.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("; ".join(str(t.delete().compile(conn)) for t in tables))
            else:
                for table in tables:
                    conn.execute(table.delete())


def _tables_to_empty(app) -> list:
    """The tables the database has, but the kept ones, referencing tables first (looked up once per
    database: the schema does not change during the run)."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    if url not in _EXISTING_TABLES:
        _EXISTING_TABLES[url] = set(inspect(db.engine).get_table_names())
    existing = _EXISTING_TABLES[url]
    return [t for t in reversed(db.metadata.sorted_tables) if t.name not in KEEP_TABLES and t.name in existing]


_EXISTING_TABLES: dict[str, set[str]] = {}


@pytest.fixture
def restore_templates(app):
    """Template sync rewrites the templates table, which the suite keeps between tests:
    put the seeded defaults back afterwards (first the rows that reference templates)."""
    yield
    _delete_rows(app)
    with app.app_context():
        db.session.execute(delete(Template))
        seed_default_templates()
        db.session.commit()


class AppPool:
    """Apps built with TestConfig(url, instance, **overrides), kept for the whole session and lent
    to one test at a time, so a test pays no create_app (nor a new engine) for the settings and
    environment an earlier test asked for. A lent app is as create_app left it: its config and
    extensions are put back to how they were right after it was built (a test may change
    `app.config`; caches refill), its Redis pool is new, and create_app's process-wide steps (the
    limiter's storage, the log level) are done again for it. Within one test every call still gets
    an app of its own. Apps aimed at a test's own servers (an override ending in _URL or _URI) are
    built fresh and disposed after the test, as before."""

    MAX_IDLE = 16  # idle apps kept; the least recently used beyond that are disposed
    IDLE_CONNECTIONS = 2  # an app back from a test with more idle database connections closes them
    # Idle database connections kept open by all of this process's idle apps together: each
    # pytest-xdist worker is one such process, and PostgreSQL's max_connections (100 by default)
    # must leave room for the tests that open 20-50 at once beside them.
    IDLE_CONNECTIONS_IN_ALL = 6

    def __init__(self, url: str, instance: Path):
        self.url, self.instance = url, instance
        self.idle: dict[str, list[tuple[Flask, dict, dict]]] = {}
        self.order: list[tuple[str, Flask]] = []  # idle apps, least recently returned first

    def lend(self, overrides: dict) -> tuple[Flask, str | None]:
        """An app with these settings and its pool key (None: not to be kept)."""
        if any(name.endswith(("_URL", "_URI")) for name in overrides):
            return create_app(TestConfig(self.url, self.instance, **overrides)), None
        # The environment is part of the key: TestConfig reads it (a test may set WPOTP_ENV, a secret...).
        environment = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
        key = repr((sorted(overrides.items()), sorted(environment.items())))
        if self.idle.get(key):
            app, config, extensions = self.idle[key].pop()
            self.order.remove((key, app))
            _restore(app, config, extensions)
            return app, key
        return create_app(TestConfig(self.url, self.instance, **overrides)), key

    def take_back(self, app: Flask, key: str | None, config: dict, extensions: dict) -> None:
        with app.app_context():
            db.session.remove()
            if key is None or db.engine.pool.checkedin() > self.IDLE_CONNECTIONS:
                db.engine.dispose()
        if key is None:
            return
        self.idle.setdefault(key, []).append((app, config, extensions))
        self.order.append((key, app))
        while len(self.order) > self.MAX_IDLE:
            old_key, old_app = self.order.pop(0)
            self.idle[old_key] = [entry for entry in self.idle[old_key] if entry[0] is not old_app]
            with old_app.app_context():
                db.engine.dispose()
        self._close_idle_connections()

    def _close_idle_connections(self) -> None:
        """Close the pools of the least recently used idle apps until all of them together keep at
        most IDLE_CONNECTIONS_IN_ALL connections (a disposed pool reconnects when next lent)."""
        open_ = [(app, _pooled(app)) for _key, app in self.order]
        total = sum(count for _app, count in open_)
        for app, count in open_:
            if total <= self.IDLE_CONNECTIONS_IN_ALL:
                break
            if count:
                with app.app_context():
                    db.engine.dispose()
                total -= count

    def close(self) -> None:
        for _key, app in self.order:
            with app.app_context():
                db.engine.dispose()


def _pooled(app: Flask) -> int:
    """Connections open in the app's database pool and idle there."""
    with app.app_context():
        return db.engine.pool.checkedin()


def _restore(app: Flask, config: dict, extensions: dict) -> None:
    """Put a kept app back to how create_app left it, and redo create_app's process-wide steps."""
    app.config.clear()
    app.config.update(copy.deepcopy(config))
    app.extensions.clear()
    app.extensions.update(extensions)
    app.extensions["wpotp_redis"].close()
    redis_client.init_app(app)  # a fresh pool: RQ widens the socket timeout of a pool it is handed
    configure_logging(app)  # the `wpotp` logger's level is process-wide: the last app built set it
    init_limiter(app)  # so is the limiter's storage (Flask-Limiter keeps one per Limiter)


@pytest.fixture(scope="session")
def app_pool(backend):
    _name, url, instance = backend
    pool = AppPool(url, instance)
    yield pool
    pool.close()


@pytest.fixture
def make_app(app_pool):
    """Build an app on the test database with settings overridden: make_app(RESEND_INTERVAL=0).
    Each call gives an app of its own, as create_app would (kept ones are lent, see AppPool)."""
    lent = []

    def factory(**overrides):
        app, key = app_pool.lend(overrides)
        lent.append((app, key, copy.deepcopy(dict(app.config)), dict(app.extensions)))
        return app

    yield factory
    for app, key, config, extensions in lent:
        app_pool.take_back(app, key, config, extensions)


@pytest.fixture
def app(make_app):
    app = make_app()
    _clean(app)
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def api_key(app) -> Key:
    return make_key(app)


@pytest.fixture
def run_worker(app):
    """Run a real RQ worker (wpotp's Worker, on its own Redis pool as in `wpotp worker`) in burst
    mode until every queue is empty."""

    def run(target_app=None) -> None:
        work_queues(target_app or app)

    return run


@pytest.fixture
def outbox(app):
    """The sandbox outbox, newest first: where a test (like a developer) reads a generated code."""

    def read(recipient: str | None = None) -> list[dict]:
        with app.app_context():
            return read_outbox(limit=500, recipient=recipient)

    return read


# --- figures of the fault suite (tests/faults/conftest.py's `figures` fixture) and the fuzzing (tests/apidoc) ---
# Here rather than in tests/faults/conftest.py: under pytest-xdist the controller, which prints the
# summary, loads only this conftest.

FIGURE_PREFIX = "figure:"
_collected: list[tuple[str, str, dict]] = []  # (test id, outcome, figures), in the order tests ended


def pytest_runtest_logreport(report) -> None:
    if report.when != "call":
        return
    found = {name.removeprefix(FIGURE_PREFIX): value for name, value in report.user_properties
             if isinstance(name, str) and name.startswith(FIGURE_PREFIX)}
    if found:
        _collected.append((report.nodeid, report.outcome, found))


def pytest_terminal_summary(terminalreporter) -> None:
    if not _collected:
        return
    terminalreporter.section("figures (fault suite, schema fuzzing)")
    for nodeid, outcome, found in _collected:
        terminalreporter.write_line(f"{nodeid} [{outcome}]")
        terminalreporter.write_line("    " + ", ".join(f"{k}={v}" for k, v in found.items()))


@pytest.fixture(scope="session")
def browser():
    """One Chromium per test process, shared by every directory's browser tests (tests/console,
    tests/cli): Playwright's sync API can be started only once in a process, so the fixture lives
    here, where every test directory sees the same instance."""
    from tests.console.conftest import CHROMIUM, CHROMIUM_ARGS

    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package to run the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
