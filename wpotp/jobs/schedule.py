"""The periodic jobs, as data, and the ticker that enqueues them.

Every worker process runs a ticker thread. A Redis `SET NX EX` per job and period means that
however many workers run, each periodic job is enqueued once per period.

SCHEDULE is every job that runs because time has passed. Jobs that run because something
happened are enqueued where it happens, with that event's arguments: sends and their retries,
webhook deliveries, the sandbox's receipts, and the recomputation of stale cached report
buckets (wpotp.reports.usage, when a report is viewed: only buckets someone looks at are
recomputed, so a period would either recompute buckets nobody reads or scan the whole cache).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from flask import Flask

from ..extensions import get_queue, redis_client

log = logging.getLogger("wpotp.schedule")


@dataclass(frozen=True)
class Periodic:
    name: str
    func: str  # dotted path of the job
    interval_setting: str  # config key holding the period in seconds
    queue: str = "default"


SCHEDULE = (
    Periodic("sweep", "wpotp.jobs.maintenance.sweep_job", "SWEEP_INTERVAL"),
)


def enqueue_due(app: Flask) -> list[str]:
    """Enqueue each periodic job whose period has come round; returns their names."""
    enqueued = []
    conn = redis_client.conn
    for item in SCHEDULE:
        interval = int(app.config[item.interval_setting])
        if conn.set(f"wpotp:periodic:{item.name}", "1", nx=True, ex=interval):
            get_queue(item.queue).enqueue(item.func, description=f"periodic {item.name}", result_ttl=300)
            enqueued.append(item.name)
    return enqueued


def start_ticker(app: Flask, stop: threading.Event, every: float = 1.0) -> threading.Thread:
    def run() -> None:
        with app.app_context():
            while not stop.wait(every):
                try:
                    enqueue_due(app)
                except Exception:  # Redis away for a moment: try again next tick
                    log.exception("periodic tick failed")

    thread = threading.Thread(target=run, name="wpotp-ticker", daemon=True)
    thread.start()
    return thread
