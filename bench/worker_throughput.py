"""Worker throughput against a Graph API double with a set latency (issue 3's benchmark).

    .venv/bin/python bench/worker_throughput.py [--messages 800] [--latency 0.15] [--threads 16]

What it does, in one run on this machine:
1. Starts a local HTTP double of Meta's POST /{phone-number-id}/messages that answers after
   --latency seconds, and records when each request arrived and for which recipient.
2. Baseline: a plain client with the same concurrency as the workers (threads x processes)
   POSTing straight to the double: the ceiling this latency allows.
3. For 1 and 2 worker processes (`flask wpotp worker --threads N`), two views:
   - the worker alone: queues --messages OTPs through the API, then starts the workers and
     times the provider requests (first to last the double saw): msg/s, and the ratio to
     the baseline;
   - the path users run: the workers already up, --messages OTPs sent through the API from
     16 client threads while the workers send; the same msg/s, and how long the sends took
     to answer (p50, p99, slowest: a send stalled behind the workers' writes shows here).
4. Accept -> provider request latency at a steady --rate sends/s with 2 workers: p50, p99.
5. The cap: WHATSAPP_MPS=--cap, the most provider requests that arrived in any 1 s window.

Uses PostgreSQL at BENCH_DATABASE_URL (default: the local `wpotp_bench` database, created
if missing) or SQLite with --sqlite, and Redis db 9 (flushed). Not part of `make test`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
# The fraud guard stays on in every bench (its script is part of a send's cost), with thresholds no
# bench reaches: a bench's recipients are one number range that never verifies.
BENCH_FRAUD = dict(FRAUD_COUNTRY_LIMIT="100000000/hour", FRAUD_PREFIX_LIMIT="100000000/hour",
                   FRAUD_UNVERIFIED_PREFIX="100000000", FRAUD_UNVERIFIED_COUNTRY="100000000")


DOUBLE = """
import json, sys, threading, time, redis
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
latency, redis_url = float(sys.argv[1]), sys.argv[2]
# Blocking, not redis-py 8's default pool of at most 100 that raises past it: a worker tier with
# hundreds of sends in flight made the double answer 500 ("Too many connections").
r = redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(redis_url, max_connections=64, timeout=None))
counter = iter(range(1, 10**9))
lock = threading.Lock()

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The headers and the body leave in two writes: with Nagle's algorithm on, the second waits
    # for the client's delayed ACK of the first (about 40 ms on Linux) on every keep-alive request.
    disable_nagle_algorithm = True

    def do_POST(self):
        arrived = time.time()
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        r.rpush("bench:arrivals", f"{arrived} {body.get('to', '')}")
        with lock:
            n = next(counter)
        time.sleep(latency)
        out = json.dumps({"messaging_product": "whatsapp", "contacts": [{"wa_id": body.get("to")}],
                          "messages": [{"id": f"wamid.bench{n}.{body.get('to')}"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
        self.wfile.flush()
        r.rpush("bench:answered", f"{time.time()} wamid.bench{n}.{body.get('to')}")  # for receipts (bench/api.py)

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
server.request_queue_size = 512
print(server.server_address[1], flush=True)
server.serve_forever()
"""


class GraphDouble:
    """Meta's /messages in its own process (so it does not share a GIL with what it measures):
    answers after `latency` seconds and records (arrival time, recipient) in Redis."""

    def __init__(self, latency: float):
        import redis

        self.redis = redis.Redis.from_url(REDIS_URL)
        self.proc = subprocess.Popen([sys.executable, "-c", DOUBLE, str(latency), REDIS_URL],
                                     stdout=subprocess.PIPE, text=True)
        self.url = f"http://127.0.0.1:{self.proc.stdout.readline().strip()}"

    @property
    def arrivals(self) -> list[tuple[float, str]]:
        rows = [raw.decode().split(" ", 1) for raw in self.redis.lrange("bench:arrivals", 0, -1)]
        return [(float(t), to) for t, to in rows]

    def wamids(self, start: int) -> list[str]:
        """The message ids the double answered, in arrival order, from the `start`-th on."""
        return [raw.decode().split(" ", 1)[1] for raw in self.redis.lrange("bench:answered", start, -1)]

    def reset(self) -> None:
        self.redis.delete("bench:arrivals", "bench:answered")

    def count(self) -> int:
        return self.redis.llen("bench:arrivals")

    def close(self) -> None:
        self.proc.terminate()


def database_url(use_sqlite: bool, instance: Path) -> str:
    if use_sqlite:
        return f"sqlite:///{instance / 'bench.db'}"
    url = os.environ.get("BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/wpotp_bench")
    import sqlalchemy

    admin = sqlalchemy.create_engine(url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    name = url.rsplit("/", 1)[1]
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url


def environment(args, double: GraphDouble, instance: Path, db_url: str, mps: int) -> dict:
    env = dict(os.environ)
    env.update(
        WPOTP_INSTANCE_DIR=str(instance), DATABASE_URL=db_url, REDIS_URL=REDIS_URL, LOG_LEVEL="WARNING",
        WPOTP_PROVIDER="cloud_api", WHATSAPP_GRAPH_URL=double.url, WHATSAPP_PHONE_NUMBER_ID="1234567890",
        WHATSAPP_TOKEN="bench-token", WHATSAPP_APP_SECRET="bench-secret", WHATSAPP_VERIFY_TOKEN="bench-verify",
        WHATSAPP_MPS=str(mps), APP_DAILY_SEND_CAP="10000000", RECIPIENT_RATE_LIMIT="1000/minute",
        API_RATE_LIMIT="1000000/minute", WORKER_THREADS=str(args.threads), SEND_RETRY_DELAYS="1,2",
        **BENCH_FRAUD,
    )
    return env


def flask(env: dict, *argv: str) -> str:
    out = subprocess.run([str(ROOT / ".venv/bin/flask"), "--app", "wsgi", "wpotp", *argv], env=env, cwd=ROOT,
                         check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def start_workers(env: dict, count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([str(ROOT / ".venv/bin/flask"), "--app", "wsgi", "wpotp", "worker"], env=env,
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(count)]


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for w in workers:
        w.terminate()
    for w in workers:
        try:
            w.wait(timeout=30)
        except subprocess.TimeoutExpired:
            w.kill()


def recipients(start: int, count: int) -> list[str]:
    """Distinct valid Turkish mobile numbers."""
    return [f"+90532{start + i:07d}" for i in range(count)]


class Api:
    """Submits sends through the app in this process (its own app instance, the real /v1 path)."""

    def __init__(self, env: dict, key: str):
        os.environ.update(env)
        from wpotp import create_app

        self.app = create_app()
        self.headers = {"Authorization": f"Bearer {key}"}
        self.local = threading.local()

    def send(self, recipient: str) -> float:
        client = getattr(self.local, "client", None) or self.app.test_client()
        self.local.client = client
        r = client.post("/v1/otp/send", headers=self.headers, json={"recipient": recipient})
        if r.status_code != 201:
            raise RuntimeError(f"send refused: {r.status_code} {r.get_data(as_text=True)[:200]}")
        return time.time()

    def prefill(self, numbers: list[str]) -> None:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(self.send, numbers))


def wait_for(double: GraphDouble, count: int, timeout: float) -> None:
    deadline = time.time() + timeout
    while double.count() < count and time.time() < deadline:
        time.sleep(0.05)
    if double.count() < count:
        raise RuntimeError(f"only {double.count()} of {count} provider requests arrived within {timeout} s")


def baseline(double: GraphDouble, concurrency: int, total: int) -> float:
    double.reset()
    session_local = threading.local()

    def one(i: int) -> None:
        sess = getattr(session_local, "s", None) or requests.Session()
        session_local.s = sess
        sess.post(f"{double.url}/v23.0/1/messages", json={"to": str(i)}, timeout=30)

    started = time.time()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(total)))
    return total / (time.time() - started)


def throughput(api: Api, env: dict, double: GraphDouble, processes: int, total: int, offset: int) -> float:
    api.prefill(recipients(offset, total))
    double.reset()
    workers = start_workers(env, processes)
    try:
        wait_for(double, total, timeout=total / 2 + 60)
    finally:
        stop_workers(workers)
    times = sorted(t for t, _ in double.arrivals)
    return (len(times) - 1) / (times[-1] - times[0])


def through_api(api: Api, env: dict, double: GraphDouble, processes: int, total: int, offset: int,
                clients: int = 16) -> tuple[float, list[float]]:
    """The path users run: workers already up, sends arriving through the API from `clients`
    threads while the workers send. Returns the provider-request rate (first to last request
    the double saw) and how long each send took to answer (sorted)."""
    workers = start_workers(env, processes)
    answers: list[float] = []
    try:
        time.sleep(3)  # let the workers come up
        double.reset()

        def one(number: str) -> None:
            started = time.time()
            api.send(number)
            answers.append(time.time() - started)

        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(one, recipients(offset, total)))
        wait_for(double, total, timeout=total / 2 + 60)
    finally:
        stop_workers(workers)
    times = sorted(t for t, _ in double.arrivals)
    return (len(times) - 1) / (times[-1] - times[0]), sorted(answers)


def latency(api: Api, env: dict, double: GraphDouble, rate: float, seconds: float, offset: int) -> list[float]:
    workers = start_workers(env, 2)
    try:
        time.sleep(3)  # let the workers come up
        double.reset()
        numbers = recipients(offset, int(rate * seconds))
        accepted: dict[str, float] = {}
        start = time.time()
        for i, number in enumerate(numbers):
            time.sleep(max(0.0, start + i / rate - time.time()))
            accepted[number.lstrip("+")] = api.send(number)
        wait_for(double, len(numbers), timeout=60)
    finally:
        stop_workers(workers)
    return sorted(arrived - accepted[to] for arrived, to in double.arrivals if to in accepted)


def busiest_second(double: GraphDouble) -> int:
    times = sorted(t for t, _ in double.arrivals)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - 1.0:
            j += 1
        best = max(best, i - j + 1)
    return best


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=800)
    parser.add_argument("--latency", type=float, default=0.15)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--rate", type=float, default=50.0, help="sends/s for the latency phase")
    parser.add_argument("--cap", type=int, default=20, help="WHATSAPP_MPS for the cap phase")
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--phases", default="throughput,latency,cap",
                        help="comma-separated: throughput (both views), latency, cap")
    args = parser.parse_args()

    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    double = GraphDouble(args.latency)
    instance = Path(tempfile.mkdtemp(prefix="wpotp-bench-"))
    db_url = database_url(args.sqlite, instance)
    env = environment(args, double, instance, db_url, mps=100000)
    flask(env, "init")
    key = flask(env, "create-key", "--app", "default", "--mode", "live")
    api = Api(env, key)
    print(f"database: {db_url.split('@')[-1]}  provider latency: {args.latency * 1000:.0f} ms  "
          f"threads per worker: {args.threads}  messages: {args.messages}")

    phases = set(args.phases.split(","))
    offset = 0
    for processes in (1, 2) if "throughput" in phases else ():
        ceiling = baseline(double, args.threads * processes, args.messages)
        rate = throughput(api, env, double, processes, args.messages, offset)
        offset += args.messages
        print(f"{processes} worker process(es), pre-filled queue: {rate:7.1f} msg/s   baseline (plain client, "
              f"{args.threads * processes} in flight): {ceiling:7.1f} req/s   ratio {rate / ceiling:.2f}")
        rate, answers = through_api(api, env, double, processes, args.messages, offset)
        offset += args.messages
        print(f"{processes} worker process(es), sends through the API meanwhile (16 clients): {rate:7.1f} msg/s   "
              f"ratio {rate / ceiling:.2f}   send answered p50 {pct(answers, 0.5):.0f} ms, "
              f"p99 {pct(answers, 0.99):.0f} ms, slowest {answers[-1] * 1000:.0f} ms")

    if "latency" in phases:
        lat = latency(api, env, double, args.rate, 10, offset)
        offset += int(args.rate * 10)
        print(f"accept -> provider request at {args.rate:.0f} sends/s, 2 workers: p50 {pct(lat, 0.5):.1f} ms   "
              f"p99 {pct(lat, 0.99):.1f} ms   (n={len(lat)}, mean {statistics.mean(lat) * 1000:.1f} ms)")

    if "cap" in phases:
        capped = environment(args, double, instance, db_url, mps=args.cap)
        api.prefill(recipients(offset, args.cap * 8))
        double.reset()
        workers = start_workers(capped, 2)
        try:
            wait_for(double, args.cap * 8, timeout=60)
        finally:
            stop_workers(workers)
        print(f"cap WHATSAPP_MPS={args.cap}, 2 workers: most provider requests in any 1 s window: "
              f"{busiest_second(double)}")
    double.close()


if __name__ == "__main__":
    main()
