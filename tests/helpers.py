"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from wpotp.cli import issue_key
from wpotp.extensions import db
from wpotp.models import App


@dataclass
class Key:
    secret: str
    key_id: str
    app_id: str
    mode: str

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.secret}"}


def make_key(app, app_name: str = "default", mode: str = "test", **app_settings) -> Key:
    """An app (created if missing, with `app_settings`) and a fresh API key for it, in one commit
    (the ids read before it, so no row is read back after it)."""
    with app.app_context():
        owner = db.session.query(App).filter_by(name=app_name).first()
        if owner is None:
            owner = App(name=app_name, **app_settings)
            db.session.add(owner)
            db.session.flush()  # its id, which the key takes
        key, secret = issue_key(owner, mode, commit=False)
        db.session.flush()
        found = Key(secret=secret, key_id=key.id, app_id=owner.id, mode=mode)
        db.session.commit()
        return found


def in_threads(count: int, func) -> list:
    """Run func(i) in `count` threads released together; returns their results in order."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def worker(i: int) -> None:
        barrier.wait()
        results[i] = func(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def work_queues(app) -> None:
    """Run a real RQ worker (wpotp's, on its own Redis pool) in burst mode until every queue is
    empty: the `run_worker` fixture, for helpers that only have the app."""
    from wpotp.extensions import QUEUE_NAMES
    from wpotp.jobs.worker import Worker, worker_connection

    with app.app_context():
        conn = worker_connection(app)
        try:
            Worker(list(QUEUE_NAMES), connection=conn).work(burst=True, logging_level="WARNING")
        finally:
            conn.close()
