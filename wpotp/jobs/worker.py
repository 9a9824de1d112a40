"""The worker process: RQ SimpleWorkers (wpotp's Worker) in threads, so one process keeps many sends in flight.

A send spends most of its time waiting for the provider (Meta answers in ~100-300 ms), so a
single sequential worker would cap a process at a few messages a second. The process is a
small supervisor (`WorkerProcess`) around:

- N slots, each a thread running one RQ worker on every queue. When a worker stops for any
  reason but a stop request (Redis went away mid-job, an unexpected error), the slot logs it,
  waits for Redis to answer again and starts a fresh worker: the process rides out a Redis
  outage of any length. A slot thread that dies anyway is noticed and replaced.
- RQ's scheduler (delayed retries, sandbox receipts, webhook retries) in a thread, not in a
  forked child, so it dies with its process and no orphan holds the scheduler lock. A lock left
  by a dead process on this host is taken over at once; one held elsewhere expires on its own.
- the periodic-job ticker (jobs/schedule.py), and a liveness key the sweep reads to tell a
  killed worker's half-done job from one that is still running.

SIGTERM or SIGINT: idle slots stop within a second; busy ones get WORKER_STOP_TIMEOUT seconds
to finish. Jobs still running then are handed back to their queue (jobs are idempotent), and
the process exits. A second signal stops at once, handing back the same way.

The RQ workers have a Redis connection pool of their own: RQ widens the socket timeout of the
pool it is given to fit its blocking dequeue, and the app's own calls (seals, throttle, limits)
keep their configured timeout.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time

import redis
from flask import Flask
from rq import Queue, SimpleWorker
from rq.exceptions import SchedulerNotFound
from rq.job import Job
from rq.scheduler import RQScheduler
from rq.scripts import release_lock
from rq.timeouts import TimerDeathPenalty

from .. import metrics
from ..extensions import QUEUE_NAMES, redis_client
from ..redis_url import WORKER_POOL, app_redis, follow_failover
from ..util import random_base62, settle_heap
from . import watch_stop
from .enqueue import hand_back, note_worker_alive, note_worker_gone
from .schedule import start_ticker

log = logging.getLogger("wpotp.worker")

IDLE_SLICE = 1  # seconds a blocking dequeue waits before it looks at the stop flag again
ALIVE_EVERY = 2.0  # seconds between the process's liveness beats
ALIVE_TTL = 6  # seconds a liveness beat lasts: a killed process is known dead this long after


class Worker(SimpleWorker):
    """A SimpleWorker that stops when its process says so, and knows its job in flight.

    Its state (busy, idle) is written only when it changes. Its own heartbeat (the TTL of its
    `rq:worker:` key) is renewed at most every HEARTBEAT_EVERY
    seconds: RQ renews it three times around every job, three Redis round trips each, for a key
    that lives worker_ttl + 60 s. Heartbeats inside RQ's own pipelines (job start, job end) and
    with an explicit timeout are left alone, and so are the job's and the execution's heartbeats.
    """

    HEARTBEAT_EVERY = 5.0
    max_connection_wait_time = 2.0  # RQ's back-off cap while Redis is away (its default: 60 s)

    def __init__(self, *args, stopping: threading.Event | None = None, **kwargs):
        self.stopping = stopping or threading.Event()
        self.job_in_flight: Job | None = None
        self._last_own_heartbeat: float | None = None
        self._state_written: str | None = None
        self.bursting = False
        super().__init__(*args, **kwargs)

    def set_state(self, state: str, pipeline=None) -> None:
        """Write the worker's state only when it changes: RQ sets `idle` twice between two jobs
        (after one, before the next dequeue), one round trip each, for the same value."""
        if pipeline is None and state == self._state_written:
            return
        super().set_state(state, pipeline)
        self._state_written = state

    def heartbeat(self, timeout: int | None = None, pipeline=None):
        if timeout is None and pipeline is None:
            last = self._last_own_heartbeat
            if last is not None and time.monotonic() - last < self.HEARTBEAT_EVERY:
                return
            self._last_own_heartbeat = time.monotonic()
        super().heartbeat(timeout, pipeline)

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None):
        """Block in slices of IDLE_SLICE seconds, so a stop request is seen within one."""
        if timeout is None:  # burst: RQ's non-blocking dequeue
            return super().dequeue_job_and_maintain_ttl(None, max_idle_time)
        while not self.stopping.is_set():
            found = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time=IDLE_SLICE)
            if found is not None:
                return found
        return None

    def work(self, burst: bool = False, *args, **kwargs) -> bool:
        self.bursting = burst  # a drain job run by a burst does not linger (jobs/enqueue.py linger)
        return super().work(burst, *args, **kwargs)

    def execute_job(self, job: Job, queue) -> None:
        self.job_in_flight = job
        # A long job (a drain job) sees the stop request (worker_stopping()) and whether it may linger.
        watch_stop(self.stopping, burst=self.bursting)
        try:
            super().execute_job(job, queue)
        finally:
            watch_stop(None)
        self.job_in_flight = None  # still set if RQ's own bookkeeping failed (Redis went away)

    def subscribe(self) -> None:
        """No pubsub listener thread per worker: the process is stopped by signals, not `rq` commands."""


class ThreadWorker(Worker):
    """A Worker that lives off the main thread: timer-based job timeouts, no signals."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        """Signals belong to the process (WorkerProcess), which runs in the main thread."""


def worker_connection(app: Flask) -> redis.Redis:
    """The RQ workers' own pool: long enough a socket timeout for a blocking dequeue."""
    return app_redis(app.config, **WORKER_POOL)


class WorkerProcess:
    """One `wpotp worker` process: slots of RQ workers, the scheduler, the ticker (see the module doc)."""

    def __init__(self, app: Flask, threads: int, burst: bool = False):
        self.app = app
        self.threads = max(1, threads)
        self.burst = burst
        self.stopping = threading.Event()
        self.stop_timeout = float(app.config["WORKER_STOP_TIMEOUT"])
        self.process_id = f"{socket.gethostname()}.{os.getpid()}.{random_base62(4)}"
        self.connection = worker_connection(app)
        self.workers: dict[int, Worker] = {}
        self.slots: dict[int, threading.Thread] = {}
        self._incarnations = 0
        self._signals = 0
        self._first_signal = 0.0

    # --- running ---------------------------------------------------------------------------

    def run(self) -> None:
        settle_heap()
        self._install_signal_handlers()
        scheduler = Scheduler(self.connection, self.stopping)
        if self.burst:
            scheduler.enqueue_due_once()
        else:
            start_ticker(self.app, self.stopping)
            threading.Thread(target=scheduler.run, name="wpotp-scheduler", daemon=True).start()
        for index in range(self.threads):
            self._start_slot(index)
        metrics.worker_started(self.threads)  # a live gauge: process_gone takes it out at the end
        log.info("worker %s: %d threads on %s%s", self.process_id, self.threads, ",".join(QUEUE_NAMES),
                 " (burst)" if self.burst else "")
        if self.burst:
            for thread in self.slots.values():
                thread.join()
        while not self.burst and not self.stopping.is_set():
            self._beat()
            self._replace_dead_slots()
            self.stopping.wait(ALIVE_EVERY)
        self._finish()

    def _start_slot(self, index: int) -> None:
        thread = threading.Thread(target=self._slot, args=(index,), name=f"rq-{index}", daemon=True)
        self.slots[index] = thread
        thread.start()

    def _slot(self, index: int) -> None:
        """Run RQ workers one after another in this slot until the process stops."""
        with self.app.app_context():
            while not self.stopping.is_set():
                worker = self._new_worker(index)
                try:
                    worker.work(burst=self.burst, logging_level=self.app.config["LOG_LEVEL"])
                except redis.RedisError as exc:
                    log.warning("worker %s lost Redis: %s", worker.name, exc)
                except Exception:
                    log.exception("worker %s stopped on an error", worker.name)
                if self.burst or self.stopping.is_set():
                    return
                log.warning("worker %s stopped unasked; a new one starts once Redis answers", worker.name)
                self._wait_for_redis()
                self._hand_back_interrupted(worker)

    def _new_worker(self, index: int) -> Worker:
        self._incarnations += 1
        worker = ThreadWorker(list(QUEUE_NAMES), connection=self.connection, worker_ttl=20,
                              name=f"{self.process_id}/{index}.{self._incarnations}", stopping=self.stopping)
        self.workers[index] = worker
        return worker

    def _hand_back_interrupted(self, worker: Worker) -> None:
        """The job a stopped worker was inside did not finish as far as RQ knows: queue it again
        (jobs are safe to run twice; one that had done its work finds nothing left to do)."""
        if worker.job_in_flight is not None:
            self._hand_back(worker.job_in_flight, "was interrupted")

    def _hand_back(self, job: Job, why: str) -> None:
        try:
            hand_back(job)
            log.warning("worker %s: job %s %s; handed back", self.process_id, job.id, why)
        except redis.RedisError:
            log.error("worker %s: job %s %s and could not be handed back (Redis away); the sweep rescues it",
                      self.process_id, job.id, why)

    def _wait_for_redis(self) -> None:
        delay = 0.5
        while not self.stopping.is_set():
            try:
                self.connection.ping()
                return
            except redis.RedisError:
                self.stopping.wait(delay)
                delay = min(delay * 2, 5.0)

    def _beat(self) -> None:
        """Say this process is alive, and which RQ workers run its jobs (the sweep's test for a
        killed or replaced worker's jobs; /readyz counts the processes)."""
        try:
            with self.app.app_context():
                # Behind Sentinel: leave a master that a failover replaced within a beat, not when
                # Sentinel gets round to demoting it (redis_url.py); a plain Redis: nothing to do.
                follow_failover(self.connection)
                follow_failover(redis_client.conn)
                note_worker_alive(self.process_id, ALIVE_TTL, [w.name for w in self.workers.values()])
        except redis.RedisError:
            pass  # Redis away: the slots wait for it; the sweep cannot run meanwhile either

    def _replace_dead_slots(self) -> None:
        for index, thread in list(self.slots.items()):
            if not thread.is_alive() and not self.stopping.is_set():
                log.error("worker thread %s died; starting a new one", thread.name)
                self._start_slot(index)

    # --- stopping --------------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # run from a test's thread: the caller stops it by setting `stopping`
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, _frame) -> None:
        now = time.monotonic()
        if self._signals and now - self._first_signal < 1.0:
            return  # the same stop twice (Ctrl-C reaches the whole group, then `make run` passes it on)
        self._signals += 1
        if self._signals == 1:
            self._first_signal = now
            log.info("worker %s: %s, stopping (jobs in flight have %.0f s to finish)", self.process_id,
                     signal.Signals(signum).name, self.stop_timeout)
            self.stopping.set()
        else:
            log.warning("worker %s: second %s, stopping now", self.process_id, signal.Signals(signum).name)
            self.stop_timeout = 0

    def _finish(self) -> None:
        """Give busy slots until the stop timeout, idle ones a moment; hand back what still runs."""
        self.stopping.set()
        started = time.monotonic()
        while any(t.is_alive() for t in self.slots.values()):
            waited = time.monotonic() - started
            if waited >= self.stop_timeout or (waited >= 2 * IDLE_SLICE + 1 and not self._in_flight()):
                break
            time.sleep(0.05)
        left = self._in_flight()
        with self.app.app_context():
            for job in left:
                self._hand_back(job, "did not finish in time")
            with contextlib.suppress(redis.RedisError):
                note_worker_gone(self.process_id)
        metrics.process_gone()
        log.info("worker %s: stopped", self.process_id)
        if left:
            # Threads are still inside those jobs: end the process here rather than wait for them.
            logging.shutdown()
            os._exit(0)

    def _in_flight(self) -> list[Job]:
        return [job for w in self.workers.values() if (job := w.job_in_flight) is not None]


class Scheduler:
    """RQ's scheduler (RQScheduler) driven from a thread of the worker process.

    It enqueues delayed jobs once they are due. One scheduler in the deployment holds each
    queue's lock; the others try again every second, so when a holder stops, another takes
    over within its lock's TTL, and at once when the holder was a dead process on this host.
    """

    def __init__(self, connection: redis.Redis, stopping: threading.Event, interval: int = 1):
        self.rq = RQScheduler(list(QUEUE_NAMES), connection=connection, interval=interval)
        self.stopping = stopping
        self.interval = interval
        self._outage = False

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.tick()
                if self._outage:
                    log.info("scheduler: Redis answers again")
                self._outage = False
            except redis.RedisError as exc:
                if not self._outage:
                    log.warning("scheduler: Redis unavailable (%s); retrying every %d s", exc, self.interval)
                self._outage = True
            except Exception:  # noqa: BLE001  (a thread that dies leaves retries and timers unqueued)
                log.exception("scheduler: tick failed; retrying in %d s", self.interval)
            self.stopping.wait(self.interval)
        with contextlib.suppress(redis.RedisError):
            self.rq.stop()  # releases its locks, so the next scheduler need not wait for them

    def tick(self) -> None:
        if self.rq.acquired_locks != set(QUEUE_NAMES):
            self.rq.register_birth()  # first, so that whoever finds our lock can tell whose it is
            self._clear_stale_locks()
            self.rq.acquire_locks()
        else:
            self.rq.heartbeat()  # refreshes our locks; drops any another scheduler took over
        if self.rq.acquired_locks:
            self.rq.enqueue_scheduled_jobs()

    def enqueue_due_once(self) -> None:
        """Burst mode: enqueue what is due now, then let go of the locks."""
        self._clear_stale_locks()
        if self.rq.acquire_locks():
            try:
                self.rq.enqueue_scheduled_jobs()
            finally:
                self.rq.release_locks()

    def _clear_stale_locks(self) -> None:
        """Release locks whose holder was a scheduler of a process on this host that is gone."""
        conn = self.rq.connection
        for queue in QUEUE_NAMES:
            key = RQScheduler.get_locking_key(queue)
            holder = conn.get(key)
            if holder is None or holder.decode() == self.rq.name:
                continue
            try:
                other = RQScheduler.fetch(holder.decode(), conn)
            except SchedulerNotFound:
                continue  # not registered yet, or expired with its lock
            except (KeyError, ValueError):
                # A hash with only `last_heartbeat`: RQ's heartbeat wrote it just after the holder's
                # death removed the rest. Whose it was cannot be told: its lock expires by itself.
                continue
            pid = int(other.pid or 0)
            dead = other.hostname == socket.gethostname() and pid and (pid == os.getpid() or not _pid_alive(pid))
            if dead and release_lock(conn, key, other.name):
                log.info("scheduler: took over the %s lock from dead process %d", queue, pid)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_workers(app: Flask, threads: int, burst: bool = False) -> None:
    """Run the worker process (the `wpotp worker` command). In burst mode, until the queues are empty."""
    WorkerProcess(app, threads, burst).run()
    if burst:
        # A burst ends when the queues are empty, but a slot's last job may have queued more (a
        # retry, the sandbox's receipts) after the others stopped looking: drain those too.
        queues = [Queue(name, connection=worker_connection(app)) for name in QUEUE_NAMES]
        while any(queue.count for queue in queues):
            WorkerProcess(app, 1, burst=True).run()
