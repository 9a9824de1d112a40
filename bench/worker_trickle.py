"""The workers' CPU per send at a steady rate below saturation, lingering drain jobs on and off:
`bench/worker_trickle.py [--rate 50] [--sends 1000] [--rounds 2]`.

bench/api.py's steady phase runs the whole stack on the 2 cores, so its per-OTP split moves with
everything else on the box. This holds the rest still: sends are made in this process through the
app (Flask's test client, the real /v1 path, its CPU not counted) at --rate per second; 2 `wpotp
worker` processes send them to the Graph API double (another process, answering in --latency s);
no receipts are posted. Each round starts fresh workers with DRAIN_LINGER_MS=2000 (on) and =0
(off), alternating, and prints the worker processes' CPU (utime + stime from /proc, over the
window from the first send to the last provider request) per send, how many drain jobs ran, and
the wait from the 201 to the provider request. With --profile DIR, py-spy samples each worker
process through each round (DIR/<on|off>-<pid>.txt, raw folded stacks; `bench/profile_top.py DIR on`
reads them). Asserts nothing; not part of `make test`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from worker_throughput import (  # noqa: E402
    REDIS_URL,
    Api,
    GraphDouble,
    database_url,
    environment,
    flask,
    recipients,
    start_workers,
    stop_workers,
    wait_for,
)

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--sends", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--latency", type=float, default=0.15)
    parser.add_argument("--profile", type=Path, metavar="DIR", help="py-spy each worker process (raw stacks)")
    args = parser.parse_args()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)

    import redis

    conn = redis.Redis.from_url(REDIS_URL)
    conn.flushdb()
    double = GraphDouble(args.latency)
    instance = Path(tempfile.mkdtemp(prefix="wpotp-trickle-"))
    env = environment(argparse.Namespace(threads=16), double, instance, database_url(False, instance), mps=1000)
    flask(env, "init")
    key = flask(env, "create-key", "--app", "default", "--mode", "live")
    api = Api(env, key)
    api.send(recipients(0, 1)[0])  # warm-up of this process's app (no worker yet: it waits in the list)
    offset = 1
    print(f"{args.sends} sends at {args.rate:g}/s per round, 2 worker processes x 16 threads, "
          f"Graph double answering in {1000 * args.latency:.0f} ms, PostgreSQL")
    results: dict[str, list[tuple[float, int, float]]] = {"on": [], "off": []}
    for _round in range(args.rounds):
        for mode, linger in (("on", "2000"), ("off", "0")):
            workers = start_workers({**env, "DRAIN_LINGER_MS": linger}, 2)
            wait_for(double, double.count(), 5)
            time.sleep(3)  # up, idle, the warm-up send (if any) drained
            double.reset()
            conn.delete(*conn.keys("rq:job:drain-*") or ["-"])
            spy = str(Path(sys.executable).parent / "py-spy")
            spies = [subprocess.Popen([spy, "record", "--gil", "--subprocesses", "-r", "200", "-f", "raw",
                                       "-o", str(args.profile / f"{mode}-{w.pid}.txt"), "-p", str(w.pid)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                     for w in workers] if args.profile else []
            before = sum(cpu_seconds(w.pid) for w in workers)
            accepted = {}
            started = time.monotonic()
            for i, number in enumerate(recipients(offset, args.sends)):
                pause = started + i / args.rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                accepted[number[1:]] = api.send(number)
            wait_for(double, args.sends, 60)
            cpu = sum(cpu_seconds(w.pid) for w in workers) - before
            jobs = len([k for k in conn.keys("rq:job:drain-*") if k.count(b":") == 2])
            stop_workers(workers)
            for spy in spies:  # each ends with its worker and writes its file
                spy.wait(timeout=30)
            waits = sorted(1000 * (at - accepted[to]) for at, to in double.arrivals if to in accepted)
            offset += args.sends
            results[mode].append((1000 * cpu / args.sends, jobs, statistics.median(waits)))
            print(f"  lingering {mode:<3}  workers {1000 * cpu / args.sends:5.2f} ms CPU per send   "
                  f"drain jobs {jobs:5d}   201 -> provider p50 {statistics.median(waits):6.1f} ms "
                  f"p99 {waits[int(0.99 * (len(waits) - 1))]:6.1f} ms")
    on = statistics.median(r[0] for r in results["on"])
    off = statistics.median(r[0] for r in results["off"])
    print(f"median workers CPU per send: on {on:.2f} ms, off {off:.2f} ms, ratio on/off {on / off:.2f}")
    double.close()


if __name__ == "__main__":
    main()
