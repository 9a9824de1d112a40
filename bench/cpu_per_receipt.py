"""CPU time per receipt, inline vs the receipt queue: `bench/cpu_per_receipt.py [--otps 300] [--batch 100]`.

Like bench/cpu_per_send.py: one process, no threads, PostgreSQL (BENCH_DATABASE_URL, default the
local `wpotp_bench` database, recreated; --sqlite for SQLite) and Redis (BENCH_REDIS_URL, default
db 9, flushed), the Cloud API pointed at a Graph double that answers at once. --otps OTPs are
sent (not measured); then the three receipts Meta posts for each (sent, delivered, read), one
signed POST /webhooks/whatsapp each, through the app (Flask's test client):

1. inline (RECEIPT_BATCH=0): each receipt applied in its web request;
2. batch (RECEIPT_BATCH=--batch): the web request verifies and queues it; one wpotp worker (the
   RQ SimpleWorker `wpotp worker` runs) in burst mode drains the queue in batches.

Prints the process CPU per receipt of the web and worker parts of each, their sum and the ratios
(batch / inline). PostgreSQL's and Redis's own CPU is not in these figures. With --top N, a second,
profiled pass of the batch path's web requests prints the N functions with the most cumulative
time under cProfile (read them as shares: cProfile inflates the figures). Asserts nothing.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import hmac
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from worker_throughput import REDIS_URL, GraphDouble, database_url, environment, flask  # noqa: E402

STATUSES = ("sent", "delivered", "read")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--otps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--top", type=int, default=0, help="profile the batch path's web requests: top N")
    args = parser.parse_args()

    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    double = GraphDouble(0.0)
    instance = Path(tempfile.mkdtemp(prefix="wpotp-cpu-"))
    env = environment(argparse.Namespace(threads=1), double, instance, database_url(args.sqlite, instance), mps=1000)
    os.environ.update(env)
    flask(dict(os.environ), "init")
    key = flask(dict(os.environ), "create-key", "--app", "default", "--mode", "live")

    from wpotp import create_app
    from wpotp.extensions import QUEUE_NAMES, get_queue, redis_client
    from wpotp.jobs.receipt_queue import RECEIPT_QUEUE
    from wpotp.jobs.worker import Worker

    app = create_app()
    client = app.test_client()
    statements = [0]
    redis_commands = [0]

    from redis.client import Pipeline
    from sqlalchemy import event

    from wpotp.extensions import db

    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", lambda *a: statements.__setitem__(0, statements[0] + 1))
    # Redis commands sent by this process (a pipeline's commands counted one by one).
    original_execute, original_pipe = redis.Redis.execute_command, Pipeline.execute

    def counted(self, *args, **kwargs):
        redis_commands[0] += 1
        return original_execute(self, *args, **kwargs)

    def counted_pipe(self, *args, **kwargs):
        redis_commands[0] += len(self.command_stack)
        return original_pipe(self, *args, **kwargs)

    redis.Redis.execute_command, Pipeline.execute = counted, counted_pipe
    headers = {"Authorization": f"Bearer {key}"}
    offset = [0]

    def work() -> None:
        with app.app_context():
            queues = [get_queue(name) for name in QUEUE_NAMES]
            Worker(queues, connection=redis_client.conn).work(burst=True, logging_level="WARNING")

    def sent_otps(count: int) -> list[str]:
        seen = len(double.wamids(0))
        for i in range(count):
            r = client.post("/v1/otp/send", headers=headers, json={"recipient": f"+90533{offset[0] + i:07d}"})
            if r.status_code != 201:
                raise RuntimeError(f"send refused: {r.status_code} {r.get_data(as_text=True)[:200]}")
        offset[0] += count
        work()
        return double.wamids(seen)

    def bodies(wamids: list[str]) -> list[tuple[bytes, dict]]:
        out = []
        t = int(time.time())
        for status in STATUSES:
            for wamid in wamids:
                body = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
                    "field": "messages", "value": {"messaging_product": "whatsapp", "statuses": [{
                        "id": wamid, "status": status, "timestamp": str(t), "recipient_id": "1"}]}}]}]}).encode()
                signature = "sha256=" + hmac.new(b"bench-secret", body, hashlib.sha256).hexdigest()
                out.append((body, {"Content-Type": "application/json", "X-Hub-Signature-256": signature}))
        return out

    def post(calls) -> None:
        for body, hdrs in calls:
            r = client.post("/webhooks/whatsapp", data=body, headers=hdrs)
            if r.status_code != 200:
                raise RuntimeError(f"webhook refused: {r.status_code}")

    def run(batch: int, count: int) -> dict:
        app.config["RECEIPT_BATCH"] = batch
        calls = bodies(sent_otps(count))
        statements[0] = redis_commands[0] = 0
        started = time.process_time()
        post(calls)
        web = time.process_time() - started
        web_counts = statements[0], redis_commands[0]
        statements[0] = redis_commands[0] = 0
        started = time.process_time()
        work()
        worker = time.process_time() - started
        worker_counts = statements[0], redis_commands[0]
        with app.app_context():
            left = redis_client.conn.llen(RECEIPT_QUEUE)
        if left:
            raise RuntimeError(f"{left} receipts left in the queue")
        n = len(calls)
        return {"web": 1000 * web / n, "worker": 1000 * worker / n, "receipts": n,
                "sql": (web_counts[0] + worker_counts[0]) / n, "redis": (web_counts[1] + worker_counts[1]) / n}

    run(0, 20)  # warm-up: connections, caches, compiled statements, both paths
    run(args.batch, 20)
    inline = run(0, args.otps)
    batch = run(args.batch, args.otps)
    database = "SQLite" if args.sqlite else "PostgreSQL"
    print(f"{inline['receipts']} receipts ({args.otps} OTPs x {len(STATUSES)}), {database}, one process, no threads")
    print(f"  {'':<22}{'web':>8}{'worker':>9}{'total':>9}   ms CPU per receipt;{'SQL':>6}{'Redis':>7} per receipt")
    for name, r in (("inline", inline), (f"batch ({args.batch})", batch)):
        print(f"  {name:<22}{r['web']:8.2f}{r['worker']:9.2f}{r['web'] + r['worker']:9.2f}"
              f"{'':<22}{r['sql']:6.2f}{r['redis']:7.2f}")
    total = (batch["web"] + batch["worker"]) / (inline["web"] + inline["worker"])
    print(f"  ratio batch/inline: web {batch['web'] / inline['web']:.2f}, total {total:.2f}")
    if args.top:
        app.config["RECEIPT_BATCH"] = args.batch
        calls = bodies(sent_otps(args.otps))
        profile = cProfile.Profile()
        profile.runcall(post, calls)
        print(f"\nweb requests of the batch path under cProfile, top {args.top} by cumulative time:")
        pstats.Stats(profile, stream=sys.stdout).sort_stats("cumulative").print_stats(args.top)
        work()
    double.close()


if __name__ == "__main__":
    main()
