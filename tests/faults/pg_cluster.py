"""A private PostgreSQL cluster for a test that must stop and start its database server.

The shared server (TEST_DATABASE_URL) is never touched: initdb makes a throw-away cluster in a
temporary directory owned by `postgres`, on a free port of 127.0.0.1, with durability off
(fsync) since it lives for one test. The PostgreSQL binaries are found under
/usr/lib/postgresql/<version>/bin (the newest version), run as `postgres` through runuser.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

PG_ROOT = Path("/usr/lib/postgresql")


def pg_bin_dir() -> Path | None:
    """The bin directory of the newest PostgreSQL installed, or None."""
    found = [p.parent for p in PG_ROOT.glob("*/bin/pg_ctl") if re.fullmatch(r"\d+(\.\d+)?", p.parent.parent.name)]
    return max(found, key=lambda p: float(p.parent.name), default=None)


def unavailable_reason() -> str | None:
    """Why a private cluster cannot be made here, or None when it can."""
    if not os.environ.get("TEST_DATABASE_URL"):
        return "TEST_DATABASE_URL is not set (PostgreSQL tests are off)"
    if pg_bin_dir() is None:
        return f"no PostgreSQL binaries under {PG_ROOT}"
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        return "a private cluster is started as `postgres` through runuser, which needs root"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no `postgres` user"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateCluster:
    """`with PrivateCluster() as pg:` -> pg.url (database `wpotp`); pg.stop(), pg.start()."""

    def __init__(self) -> None:
        self.bin = pg_bin_dir()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="wpotp-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/wpotp"
        self.running = False

    def _run(self, tool: str, *args: str) -> None:
        cmd = ["runuser", "-u", "postgres", "--", str(self.bin / tool), *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed: {done.stdout}{done.stderr}{self._log_tail()}")

    def _log_tail(self) -> str:
        return self.log.read_text()[-2000:] if self.log.exists() else ""

    def __enter__(self) -> PrivateCluster:
        postgres = pwd.getpwnam("postgres")
        os.chown(self.root, postgres.pw_uid, postgres.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        self.start()
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "wpotp")
        return self

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
                   "-c full_page_writes=off -c max_connections=100")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """`fast` ends every session at once (open transactions roll back); `immediate` is a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")
        self.running = False

    def __exit__(self, *exc) -> None:
        try:
            if self.running:
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
