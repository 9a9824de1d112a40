"""CPU per API-key lookup, the read every /v1 and dialect request makes: `bench/key_lookup.py [--rounds 3000]`.

In one process against PostgreSQL (BENCH_DATABASE_URL, default the local `wpotp_bench`
database, recreated) and Redis db 9 (flushed), inside one request context, the same indexed
SELECT by the key's hash four ways, alternated three times so a swing of the box shows:

- session+orm: `Session.execute` and a transient `ApiKey` built from the row (before 2026-12-08);
- session: `Session.execute`, the row only;
- connection+record: the session's Connection and a `LiveKey` record: what `wpotp.api.auth` does;
- dbapi: the driver's cursor with the statement's compiled SQL: the floor under SQLAlchemy.

Prints CPU and wall time per lookup and each one's ratio to session+orm of the same round.
Asserts nothing; not part of `make test`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from worker_throughput import REDIS_URL, GraphDouble, database_url, environment, flask  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3000, help="lookups per variant and pass")
    args = parser.parse_args()

    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    double = GraphDouble(0.0)  # environment() points the Cloud API at it; nothing is sent here
    instance = Path(tempfile.mkdtemp(prefix="wpotp-key-"))
    os.environ.update(environment(argparse.Namespace(threads=1), double, instance, database_url(False, instance),
                                  mps=1000))
    flask(dict(os.environ), "init")
    raw_key = flask(dict(os.environ), "create-key", "--app", "default", "--mode", "live")

    from wpotp import create_app
    from wpotp.api import auth
    from wpotp.extensions import db
    from wpotp.models import ApiKey
    from wpotp.otp.codes import hash_api_key

    app = create_app()
    with app.test_request_context("/v1/otp"):
        digest = hash_api_key(raw_key)
        params = {"digest": digest}
        sql = str(auth._LIVE_KEY.compile(dialect=db.engine.dialect))

        def session_orm():
            row = db.session.execute(auth._LIVE_KEY, params).first()
            fields = row._asdict()
            fields.pop("api_rate_limit")
            return ApiKey(**fields)

        def session():
            return db.session.execute(auth._LIVE_KEY, params).first()

        def connection_record():
            return auth._live_key(digest)

        def dbapi():
            cursor = db.session.connection().connection.dbapi_connection.cursor()
            try:
                cursor.execute(sql, params)
                return cursor.fetchone()
            finally:
                cursor.close()

        variants = (session_orm, session, connection_record, dbapi)
        for variant in variants:
            assert variant() is not None, variant.__name__
        print(f"{args.rounds} lookups per variant and pass, PostgreSQL, one process")
        for round_ in range(1, 4):
            base = None
            for variant in variants:
                cpu, wall = time.process_time(), time.perf_counter()
                for _ in range(args.rounds):
                    variant()
                cpu = (time.process_time() - cpu) / args.rounds * 1e6
                wall = (time.perf_counter() - wall) / args.rounds * 1e6
                base = base or cpu
                print(f"  pass {round_}  {variant.__name__:<18} {cpu:6.0f} us CPU  {wall:6.0f} us wall"
                      f"  {cpu / base:5.2f}x")
        db.session.rollback()
    double.close()


if __name__ == "__main__":
    main()
