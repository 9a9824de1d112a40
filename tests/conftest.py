"""Fixtures: a real database (SQLite always, PostgreSQL when TEST_DATABASE_URL is set),
real Redis (TEST_REDIS_URL, default db 15, flushed per test), real RQ worker runs (wpotp's Worker).

Chain: backend -> app -> client -> api_key. Every test that takes `app` runs once per
backend. Nothing of wpotp is mocked: outside services are real servers on 127.0.0.1.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from flask_migrate import upgrade
from sqlalchemy import create_engine, delete, inspect, make_url, text

from config import TestConfig
from wpotp import MIGRATIONS_DIR, create_app
from wpotp.extensions import QUEUE_NAMES, db
from wpotp.jobs.worker import Worker, worker_connection
from wpotp.models import Template
from wpotp.otp.templates import seed_default_templates
from wpotp.providers.sandbox import read_outbox

from .helpers import Key, make_key


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
        upgrade(directory=MIGRATIONS_DIR)
        seed_default_templates()
        db.session.commit()
        db.engine.dispose()
    yield request.param, url, instance
    if request.param == "postgresql":
        _admin(make_url(url), f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')


def _clean(app) -> None:
    _delete_rows(app)
    redis.Redis.from_url(TEST_REDIS_URL).flushdb()


def _delete_rows(app) -> None:
    """Empty every table but the kept ones (first the rows that reference others)."""
    with app.app_context():
        tables = [t for t in reversed(db.metadata.sorted_tables) if t.name not in KEEP_TABLES]
        existing = set(inspect(db.engine).get_table_names())
        with db.engine.begin() as conn:
            for table in tables:
                if table.name in existing:
                    conn.execute(table.delete())


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


@pytest.fixture
def make_app(backend):
    """Build an app on the test database with settings overridden: make_app(RESEND_INTERVAL=0)."""
    _name, url, instance = backend
    built = []

    def factory(**overrides):
        app = create_app(TestConfig(url, instance, **overrides))
        built.append(app)
        return app

    yield factory
    for app in built:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


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
        target = target_app or app
        with target.app_context():
            conn = worker_connection(target)
            try:
                Worker(list(QUEUE_NAMES), connection=conn).work(burst=True, logging_level="WARNING")
            finally:
                conn.close()

    return run


@pytest.fixture
def outbox(app):
    """The sandbox outbox, newest first: where a test (like a developer) reads a generated code."""

    def read(recipient: str | None = None) -> list[dict]:
        with app.app_context():
            return read_outbox(limit=500, recipient=recipient)

    return read
