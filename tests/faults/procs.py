"""Real processes for the fault suite: a private Redis server the test may stop, and `wpotp worker`
processes (optionally under a supervisor loop, as systemd's Restart=always would run them).

The private Redis is the test's own (a free port, a temp dir), so stopping it never disturbs
the Redis the rest of the suite, or another test run, uses.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
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

    def __init__(self, directory: Path, persistent: bool = True, args: tuple[str, ...] = ()):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.persistent = persistent
        self.args = args  # more redis-server options, e.g. ("--replicaof", host, port)
        self.proc: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=1, socket_timeout=2)

    def start(self) -> RedisServer:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--save", "", "--appendonly", "yes" if self.persistent else "no", "--appendfsync", "always", *self.args]
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


class SentinelSet:
    """Redis behind Sentinel, all the test's own: a master, `replicas` replicas of it and `sentinels`
    sentinels (`redis-server --sentinel`), each on a free port under `directory`. `url()` is the
    REDIS_URL wpotp takes for it; `failover()` asks the sentinels to promote a replica. Two
    replicas, as docs/operations.md asks: after a failover the new master still has one (the old
    master rejoins as a replica only some seconds later), so REDIS_MIN_REPLICAS=1 keeps holding."""

    SERVICE = "wpotp"

    def __init__(self, directory: Path, sentinels: int = 1, replicas: int = 2):
        self.dir = directory
        self.master = RedisServer(directory / "master")
        follow = ("--replicaof", "127.0.0.1", str(self.master.port))
        self.replicas = [RedisServer(directory / f"replica-{n}", args=follow) for n in range(replicas)]
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.sentinel_procs: list[subprocess.Popen] = []

    def url(self, db: int = 0) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.SERVICE}/{db}"

    def sentinel(self, index: int = 0) -> redis.Redis:
        return redis.Redis(port=self.sentinel_ports[index], socket_connect_timeout=1, socket_timeout=2)

    def master_port(self) -> int:
        _host, port = self.sentinel().execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.SERVICE)
        return int(port)

    def servers(self) -> dict[int, RedisServer]:
        return {server.port: server for server in (self.master, *self.replicas)}

    def start(self) -> SentinelSet:
        self.master.start()
        for replica in self.replicas:
            replica.start()
        for replica in self.replicas:
            wait_until(lambda r=replica: r.client().info("replication").get("master_link_status") == "up", 20,
                       what="the replicas to sync")
        quorum = len(self.sentinel_ports) // 2 + 1
        for index, port in enumerate(self.sentinel_ports):
            conf = self.dir / f"sentinel-{index}.conf"  # a sentinel rewrites its file: one each, writable
            conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                            f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.master.port} {quorum}\n"
                            f"sentinel down-after-milliseconds {self.SERVICE} 1000\n"
                            f"sentinel failover-timeout {self.SERVICE} 10000\n")
            log = (self.dir / f"sentinel-{index}.log").open("ab")
            self.sentinel_procs.append(subprocess.Popen(["redis-server", str(conf), "--sentinel"], stdout=log,
                                                        stderr=subprocess.STDOUT))
        for index in range(len(self.sentinel_ports)):
            wait_until(lambda i=index: self._knows_replicas(i), 60, what=f"sentinel {index} to find the replicas")
        return self

    def _knows_replicas(self, index: int) -> bool:
        try:
            replicas = self.sentinel(index).execute_command("SENTINEL", "REPLICAS", self.SERVICE)
        except redis.RedisError:
            return False
        healthy = [r for r in map(_fields, replicas)
                   if r.get("master-link-status") == "ok" and "s_down" not in r.get("flags", "")]
        return len(healthy) == len(self.replicas)

    def failover(self) -> int:
        """SENTINEL FAILOVER (no agreement asked); returns the new master's port once it acts as one."""
        old = self.master_port()
        self.sentinel().execute_command("SENTINEL", "FAILOVER", self.SERVICE)
        new = wait_until(lambda: (port := self.master_port()) != old and port, 30, what="the sentinels to switch")
        wait_until(lambda: self.servers()[new].client().info("replication").get("role") == "master", 30,
                   what="the replica to become master")
        return new

    def stop(self) -> None:
        for proc in self.sentinel_procs:
            proc.kill()
            proc.wait(timeout=10)
        self.sentinel_procs = []
        for server in (self.master, *self.replicas):
            server.__exit__()

    def __enter__(self) -> SentinelSet:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


def _fields(replica) -> dict[str, str]:
    """One entry of SENTINEL REPLICAS (redis-py answers a dict of bytes) as text."""
    items = replica.items() if isinstance(replica, dict) else zip(replica[::2], replica[1::2], strict=False)
    return {(k.decode() if isinstance(k, bytes) else str(k)): (v.decode() if isinstance(v, bytes) else str(v))
            for k, v in items}


PGBOUNCER = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None)


class PgBouncer:
    """A pgbouncer of the test's own in front of one PostgreSQL database, in transaction mode, on a
    free port; `url` is DATABASE_URL through it. Its server connections are handed out round robin
    (server_round_robin), so consecutive transactions of one client land on different ones.

    The pool must not be smaller than the transactions open at once plus the second connection a
    request or job may take meanwhile (the configuration cache reads on a session of its own):
    with fewer, two threads can each hold one and wait for another (docs/operations.md).

    pgbouncer refuses to run as root: as root it is started with `-u nobody`, from a folder of
    its own that nobody may write (pytest's tmp folders are root's alone)."""

    def __init__(self, database_url: str, pool_size: int = 8):
        from sqlalchemy import make_url

        self.target = make_url(database_url)
        self.port = free_port()
        self.url = self.target.set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)
        self.dir = Path(tempfile.mkdtemp(prefix="wpotp-pgbouncer-"))
        user = self.target.username or "postgres"
        (self.dir / "userlist.txt").write_text(f'"{user}" "{self.target.password or ""}"\n')
        (self.dir / "pgbouncer.ini").write_text(
            f"[databases]\n{self.target.database} = host={self.target.host or '127.0.0.1'} "
            f"port={self.target.port or 5432} dbname={self.target.database}\n"
            f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.dir / 'userlist.txt'}\nadmin_users = {user}\n"
            f"pool_mode = transaction\nserver_round_robin = 1\ndefault_pool_size = {pool_size}\nmax_client_conn = 200\n"
            f"logfile = {self.dir / 'pgbouncer.log'}\npidfile = {self.dir / 'pgbouncer.pid'}\n")
        self.args = [PGBOUNCER, str(self.dir / "pgbouncer.ini")]
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            for path in (self.dir, *self.dir.iterdir()):
                os.chown(path, nobody.pw_uid, nobody.pw_gid)
            self.args[1:1] = ["-u", "nobody"]
        self.proc: subprocess.Popen | None = None

    def show(self, what: str) -> list[dict[str, str]]:
        """SHOW <what> on pgbouncer's admin console (simple query protocol: psql, not psycopg)."""
        user = self.target.username or "postgres"
        out = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", user, "-d", "pgbouncer",
                              "-AF", "\t", "-c", f"SHOW {what}"], capture_output=True, text=True, timeout=10,
                             env={**os.environ, "PGPASSWORD": self.target.password or ""}, check=True).stdout
        header, *rows = [line.split("\t") for line in out.splitlines() if line and not line.startswith("(")]
        return [dict(zip(header, row, strict=False)) for row in rows]

    def __enter__(self) -> PgBouncer:
        self.proc = subprocess.Popen(self.args, stdout=(self.dir / "stdout.log").open("ab"), stderr=subprocess.STDOUT)
        wait_until(self._answers, 15, what=f"pgbouncer on port {self.port}")
        return self

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"pgbouncer exited: {self.log()}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.dir.glob("*.log"))

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


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
    """One worker process, in a process group of its own: the lean worker `wpotp worker` hands its
    process to (`python -m wpotp.jobs.main`), started directly. Starting it through the flask CLI
    (`via_cli=True`, as an operator's shell does) loads the web app first and costs the box ~0.9 s
    more CPU per start, which the fault suite pays dozens of times; test_lean_worker.py checks that
    handover."""

    def __init__(self, env: dict[str, str], log_path: Path, threads: int = 4, via_cli: bool = False):
        self.log_path = log_path
        command = ["-m", "flask", "--app", "wsgi", "wpotp", "worker"] if via_cli else ["-m", "wpotp.jobs.main"]
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *command, "--threads", str(threads)],
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

    def stop_gracefully(self, timeout: float = 15) -> str:
        """SIGTERM, as systemd stops it: it must exit with 0 within `timeout` seconds without
        handing back a job it could not finish in time. Returns its log."""
        self.signal(signal.SIGTERM)
        assert self.proc.wait(timeout=timeout) == 0, self.log()
        log = self.log()
        assert "did not finish in time" not in log, log
        return log

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


class WebProc:
    """One web instance: gunicorn on wsgi:app with gunicorn.conf.py, on a free port, in a process
    group of its own. `env` as for a worker (worker_env): the same database, secrets and Redis."""

    def __init__(self, env: dict[str, str], log_path: Path, workers: int = 1, threads: int = 4):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {**env, "PORT": str(self.port), "BIND_HOST": "127.0.0.1", "WEB_CONCURRENCY": str(workers),
               "WEB_THREADS": str(threads)}
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                                         cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def ready(self, timeout: float = 30) -> WebProc:
        import requests

        def answers() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"gunicorn exited: {self.log()[-3000:]}")
            try:
                return requests.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_until(answers, timeout, what=f"gunicorn on port {self.port}")
        return self

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

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
