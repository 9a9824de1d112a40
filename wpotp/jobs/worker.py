"""The worker process: RQ SimpleWorkers (wpotp's Worker) in threads, so one process keeps many sends in flight.

A send spends most of its time waiting for the provider (Meta answers in ~100-300 ms), so a
single sequential worker would cap a process at a few messages a second. Each thread runs
its own SimpleWorker on the same queues; the main thread's worker also runs RQ's scheduler
(delayed retries, sandbox receipts) and owns the signals. On SIGTERM the main worker finishes
its job, then the threads are asked to stop and finish theirs.
"""

from __future__ import annotations

import logging
import threading
import time

from flask import Flask
from rq import SimpleWorker
from rq.timeouts import TimerDeathPenalty

from ..extensions import QUEUE_NAMES, get_queue, redis_client
from ..util import settle_heap
from .schedule import start_ticker

log = logging.getLogger("wpotp.worker")


class Worker(SimpleWorker):
    """A SimpleWorker whose own heartbeat (the TTL of its `rq:worker:` key) is renewed at most
    every HEARTBEAT_EVERY seconds. RQ renews it three times around every job, three Redis round
    trips each: most of a send job's Redis traffic, for a key that lives worker_ttl + 60 s.
    Heartbeats inside RQ's own pipelines (job start, job end) and with an explicit timeout are
    left alone, and so are the job's and the execution's heartbeats."""

    HEARTBEAT_EVERY = 5.0

    def heartbeat(self, timeout: int | None = None, pipeline=None):
        if timeout is None and pipeline is None:
            last = getattr(self, "_last_own_heartbeat", None)
            if last is not None and time.monotonic() - last < self.HEARTBEAT_EVERY:
                return
            self._last_own_heartbeat = time.monotonic()
        super().heartbeat(timeout, pipeline)


class ThreadWorker(Worker):
    """A Worker that can live off the main thread: timer-based job timeouts, no signals."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        """Signals belong to the main thread's worker."""


def run_workers(app: Flask, threads: int, burst: bool = False) -> None:
    settle_heap()
    stop = threading.Event()
    if not burst:
        start_ticker(app, stop)
    queues = [get_queue(name) for name in QUEUE_NAMES]
    conn = redis_client.conn
    helpers = [ThreadWorker(queues, connection=conn, worker_ttl=20) for _ in range(max(0, threads - 1))]
    running = [threading.Thread(target=_work, args=(app, w, burst), name=f"rq-{i}", daemon=True)
               for i, w in enumerate(helpers, start=1)]
    for thread in running:
        thread.start()
    try:
        Worker(queues, connection=conn).work(burst=burst, with_scheduler=True,
                                              logging_level=app.config["LOG_LEVEL"])
    finally:
        stop.set()
        for worker in helpers:
            worker._stop_requested = True  # noticed between jobs, within a dequeue timeout
        for thread in running:
            thread.join(timeout=60)
    # A burst ends when the queues are empty, but a thread's last job may have queued more
    # (a retry, the sandbox's receipts) after the others stopped looking: drain those too.
    while burst and any(queue.count for queue in queues):
        Worker(queues, connection=conn).work(burst=True, logging_level=app.config["LOG_LEVEL"])


def _work(app: Flask, worker: ThreadWorker, burst: bool) -> None:
    with app.app_context():
        try:
            worker.work(burst=burst, logging_level=app.config["LOG_LEVEL"])
        except Exception:
            log.exception("worker thread %s stopped", worker.name)
