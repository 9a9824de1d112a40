"""The worker process `wpotp worker` runs: `python -m wpotp.jobs.main [--burst] [--threads N]`.

`flask --app wsgi wpotp worker` loads the whole web app (and every Flask CLI plugin) before it
knows which command it runs. Serving jobs needs none of the API, the dialects or the console,
so the command hands its process over to this module (`os.execve`: the same PID, signals and
standard streams, what systemd, `make run` and a container runtime watch), which builds the
app with `create_app(serve_http=False)`: about 10 MB less memory per worker process
(docs/performance.md). The app's settings come from the environment either way (Config.from_env,
the `.env` file included).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent  # where wpotp/ and config.py are
MAX_THREADS = 256  # --threads' bound, here and in the `wpotp worker` command


def exec_lean_worker(burst: bool, threads: int | None) -> None:
    """Replace this process with `python -m wpotp.jobs.main` and the same options; never returns."""
    argv = [sys.executable, "-m", "wpotp.jobs.main", *(["--burst"] if burst else []),
            *(["--threads", str(threads)] if threads else [])]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)  # noqa: S606  (our own interpreter and module, no shell)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="wpotp worker", description="An RQ worker on every queue, with the "
                                     "scheduler and the periodic-job ticker.")
    parser.add_argument("--burst", action="store_true", help="work until the queues are empty, then stop")
    parser.add_argument("--threads", type=int, default=None, help="jobs in flight at once (default: WORKER_THREADS)")
    args = parser.parse_args(argv)
    if args.threads is not None and not 1 <= args.threads <= MAX_THREADS:
        parser.error(f"--threads must be between 1 and {MAX_THREADS}")

    from wpotp import create_app
    from wpotp.jobs.worker import run_workers

    app = create_app(serve_http=False)
    with app.app_context():
        run_workers(app, args.threads or app.config["WORKER_THREADS"], burst=args.burst)


if __name__ == "__main__":
    main()
