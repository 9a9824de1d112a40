"""RQ jobs. Each job takes ids, re-reads the database, and is safe to run twice.

`@job` gives every job its own app context (so its own database session) and a log line
stamped with the RQ job id. The web process and the worker share these functions by
dotted path, so enqueueing never imports the worker's code.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, current_app, g, has_app_context

from .. import metrics
from ..extensions import db

log = logging.getLogger("wpotp.jobs")
_worker_app: Flask | None = None
_running = threading.local()  # the stop event of the worker running a job in this thread (jobs/worker.py)


def watch_stop(stopping: threading.Event | None, burst: bool = False) -> None:
    """Called by our Worker (jobs/worker.py) around each job it runs in this thread: the event its
    process sets on SIGTERM/SIGINT (None after the job), and whether the worker runs in burst mode
    (until the queues are empty: then a drain job does not linger)."""
    _running.stopping = stopping
    _running.burst = burst


def may_linger() -> bool:
    """May the job running in this thread wait for more work before it ends? Only in one of our
    workers that is not in burst mode (a burst ends when the queues are empty)."""
    return getattr(_running, "stopping", None) is not None and not getattr(_running, "burst", False)


def stop_event() -> threading.Event | None:
    """The stop event of the worker running this thread's job, to hand to the job's own threads;
    None outside one of our workers (a plain `rq worker`, a test calling the job directly)."""
    return getattr(_running, "stopping", None)


def worker_stopping() -> bool:
    """Has the worker running this thread's job been asked to stop? A long job (a drain job)
    looks between its steps, and hands back what it has not started."""
    event = stop_event()
    return event is not None and event.is_set()


def _app() -> Flask:
    global _worker_app
    if has_app_context():
        return current_app._get_current_object()
    if _worker_app is None:  # a plain `rq worker` process: build the app once
        from .. import create_app

        _worker_app = create_app(serve_http=False)  # jobs need none of the web app's modules
    return _worker_app


def job(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _app().app_context():
            g.wpotp_job = True  # one configuration-cache epoch read per job (wpotp.cache)
            started = time.monotonic()
            ok = False
            try:
                result = func(*args, **kwargs)
                ok = True
                return result
            except Exception:
                db.session.rollback()
                log.exception("job %s failed", func.__name__)
                raise
            finally:
                log.info("job %s done in %.1f ms", func.__name__, (time.monotonic() - started) * 1000)
                metrics.job_done(func.__name__, started, ok)
                db.session.remove()

    return wrapper
