"""CPU time per send, in one process, without the noise of threads: `bench/cpu_per_send.py [--sends 500]`.

The steady phase of bench/api.py shows whether the 2 cores keep up; this shows where each
send's CPU goes. In one process, against PostgreSQL (BENCH_DATABASE_URL, default the local
`wpotp_bench` database, recreated) and Redis db 9 (flushed), with a Graph API double that
answers at once:

1. web: --sends POST /v1/otp/send through the app (Flask's test client: the whole /v1 path
   without gunicorn or sockets), one after another;
2. worker: one wpotp worker (the RQ SimpleWorker `wpotp worker` runs, one thread) in burst
   mode sends them all to the double.

Prints the process CPU time per send of each part and, with --top N, the N functions with
the most cumulative time under cProfile (a second, profiled pass; cProfile's own overhead
inflates the figures, so read them as shares). Asserts nothing; not part of `make test`.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from worker_throughput import REDIS_URL, GraphDouble, database_url, environment, flask  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sends", type=int, default=500)
    parser.add_argument("--top", type=int, default=0, help="print the top N cProfile entries of each part")
    parser.add_argument("--dump", metavar="DIR", help="with --top: also write each part's profile to DIR/<part>.prof")
    args = parser.parse_args()

    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    double = GraphDouble(0.0)
    instance = Path(tempfile.mkdtemp(prefix="wpotp-cpu-"))
    # The same settings as bench/worker_throughput.py (limits raised, the Cloud API to the double).
    env = environment(argparse.Namespace(threads=1), double, instance, database_url(False, instance), mps=1000)
    os.environ.update(env)
    flask(dict(os.environ), "init")
    key = flask(dict(os.environ), "create-key", "--app", "default", "--mode", "live")

    from wpotp import create_app
    from wpotp.extensions import QUEUE_NAMES, get_queue, redis_client
    from wpotp.jobs.worker import Worker

    app = create_app()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    offset = [0]

    def web(count: int) -> None:
        for i in range(count):
            r = client.post("/v1/otp/send", headers=headers, json={"recipient": f"+90533{offset[0] + i:07d}"})
            if r.status_code != 201:
                raise RuntimeError(f"send refused: {r.status_code} {r.get_data(as_text=True)[:200]}")
        offset[0] += count

    def worker(count: int) -> None:
        with app.app_context():
            queues = [get_queue(name) for name in QUEUE_NAMES]
            Worker(queues, connection=redis_client.conn).work(burst=True, logging_level="WARNING")
        if double.count() < count:
            raise RuntimeError(f"only {double.count()} of {count} sends reached the double")

    web(20)  # warm-up: connections, caches, compiled statements
    worker(20)
    print(f"{args.sends} sends, PostgreSQL, one process, no threads")
    for name, part in (("web (POST /v1/otp/send)", web), ("worker (send job)", worker)):
        double.reset()
        started = time.process_time()
        part(args.sends)
        cpu = time.process_time() - started
        print(f"  {name:<26} {1000 * cpu / args.sends:6.2f} ms CPU per send")
    if args.top:
        for name, part in (("web", web), ("worker", worker)):
            double.reset()
            profile = cProfile.Profile(time.process_time)
            profile.runcall(part, args.sends)
            print(f"\n--- {name}: top {args.top} by cumulative time")
            pstats.Stats(profile).sort_stats("cumulative").print_stats(args.top)
            if args.dump:
                profile.dump_stats(os.path.join(args.dump, f"{name}.prof"))
    double.close()


if __name__ == "__main__":
    main()
