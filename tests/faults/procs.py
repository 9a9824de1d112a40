"""Real processes for the fault suite: a private Redis server the test may stop, and `wpotp worker`
processes (optionally under a supervisor loop, as systemd's Restart=always would run them).

The private Redis is the test's own (a free port, a temp dir), so stopping it never disturbs
the Redis the rest of the suite, or another test run, uses.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout: float, every: float = 0.1, what: str = "condition"):
    """Poll `check()` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


class RedisServer:
    """A redis-server of the test's own. `persistent` keeps its data across a restart (AOF,
    fsync always), as a production Redis should; without it a restart loses everything."""

    def __init__(self, directory: Path, persistent: bool = True):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.persistent = persistent
        self.proc: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=1, socket_timeout=2)

    def start(self) -> RedisServer:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--save", "", "--appendonly", "yes" if self.persistent else "no", "--appendfsync", "always"]
        self.proc = subprocess.Popen(args, stdout=(self.dir / "redis.log").open("ab"), stderr=subprocess.STDOUT)
        wait_until(self._answers, 10, what=f"redis-server on port {self.port}")
        return self

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def stop(self, nosave: bool = False) -> None:
        """SHUTDOWN (with an AOF, what was written survives; `nosave` on a plain Redis loses it all)."""
        if self.proc is None:
            return
        with contextlib.suppress(redis.RedisError):  # redis-py may see the connection close as an error
            self.client().shutdown(nosave=nosave)
        self.proc.wait(timeout=10)
        self.proc = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def worker_env(app, redis_url: str, **settings) -> dict[str, str]:
    """The environment of a `wpotp worker` process on the same database and secrets as `app`."""
    cfg = app.config
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WPOTP_", "WHATSAPP_", "GATEWAY_"))}
    env.update({
        "WPOTP_ENV": "development", "WPOTP_INSTANCE_DIR": str(cfg["INSTANCE_DIR"]),
        "SECRET_KEY": cfg["SECRET_KEY"], "OTP_HASH_KEY": cfg["OTP_HASH_KEY"],
        "DATABASE_URL": cfg["SQLALCHEMY_DATABASE_URI"], "REDIS_URL": redis_url, "RATELIMIT_STORAGE_URI": redis_url,
        "SANDBOX_RECEIPT_DELAY": "0", "LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1",
    })
    env.update({k: ",".join(map(str, v)) if isinstance(v, list | tuple) else str(v) for k, v in settings.items()})
    return env


class WorkerProc:
    """One `flask --app wsgi wpotp worker` process, in a process group of its own."""

    def __init__(self, env: dict[str, str], log_path: Path, threads: int = 4):
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "flask", "--app", "wsgi", "wpotp", "worker", "--threads", str(threads)],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, signum: int, group: bool = False) -> None:
        try:
            if group:
                os.killpg(self.proc.pid, signum)
            else:
                self.proc.send_signal(signum)
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        if self.alive():
            self.signal(signal.SIGKILL, group=True)
        self.proc.wait(timeout=30)

    def children(self) -> list[int]:
        """Pids whose parent is this process (from /proc)."""
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                found.append(int(stat.parent.name))
        return found

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class Supervisor:
    """Keeps one worker running: starts a new one whenever it exits (systemd's Restart=always)."""

    def __init__(self, env: dict[str, str], log_dir: Path, threads: int = 4):
        self.env, self.log_dir, self.threads = env, log_dir, threads
        self.procs: list[WorkerProc] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def current(self) -> WorkerProc:
        with self._lock:
            return self.procs[-1]

    def _spawn(self) -> None:
        proc = WorkerProc(self.env, self.log_dir / f"worker-{len(self.procs) + 1}.log", self.threads)
        with self._lock:
            self.procs.append(proc)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.current.proc.wait()
            if not self._stop.is_set():
                time.sleep(0.2)
                self._spawn()

    def __enter__(self) -> Supervisor:
        self._spawn()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for proc in self.procs:
            proc.stop()
        self._thread.join(timeout=10)

    def logs(self) -> str:
        return "\n".join(f"--- {p.log_path.name} (pid {p.pid})\n{p.log()}" for p in self.procs)
