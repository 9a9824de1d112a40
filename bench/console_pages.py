"""The console's heavy reads on a million OTPs (issue 5's benchmark): reports and the live log.

    .venv/bin/python bench/console_pages.py [--rows 1000000] [--runs 20] [--reuse]

What it does, in one run on this machine:
1. Drops and creates the PostgreSQL database BENCH_DATABASE_URL (default: the local
   `wpotp_bench_console`), runs `flask wpotp init` on it (the migrations, the default app, its
   templates, an admin user), makes API keys for the app `default` and a second app `other`.
2. Seeds --rows OTPs for `default` (plus a tenth as many for `other`, interleaved, so the
   app_id filters matter) with one INSERT ... SELECT over generate_series: spread over the
   last 90 days in creation order (as a live table is), a realistic status mix (most
   VERIFIED, a quarter EXPIRED, some FAILED and CANCELED, the last ten minutes still active)
   with timestamps to match, nine countries, recurring recipients, half with a reference.
   Only the `otps` rows: no events, verify attempts or send attempts (neither the reports nor
   the live log read them). Then VACUUM ANALYZE, as autovacuum would do on a live table.
3. Times, over --runs runs each (after two warm-up runs), median and p95:
   a. usage_report for the last 30 days and the last 7 days by day (and 24 h by hour), cold
      (the report cache forgotten before each run: every bucket from the table) and warm
      (settled days from the cache, the live day from the table), against a baseline:
      `SELECT count(*) FROM otps WHERE app_id = ? AND created_at in the same window`, the
      cheapest query that touches the same rows (an index-only scan).
   b. the live log query, wpotp.otp.queries.list_otps: the newest page of 50, a page 45 days
      deep by cursor, filtered by a common status (FAILED), a rare one (QUEUED) and a
      recipient, against a baseline: the same 51 (created_at, id) pairs read from the index
      alone; and the deep page with the extra index bound proposed for list_otps.
   c. top_recipients over the last 24 hours and 15 minutes (the rate-limit page's "top consumers").
   d. once the console has them (console.reports, console.otps, ... in app.view_functions),
      the whole pages through a logged-in test client: query, template and all.
   Goals: reports <= 300 ms, live log <= 100 ms.

Report rollups (issue 17; wpotp/reports/rollups.py): after seeding, the rollup is brought up to
date (as the worker's sweep would, PASS_HOURS a pass; the backfill is timed), and each report
range of (a) is timed cold twice: "without rollups" (REPORT_ROLLUPS off: every bucket from the
`otps` table, as before) and "with rollups" (rolled hours from `report_rollups`, the last hour or
so and today's tail from the table). A fifth of the seeded OTPs went by SMS, so the reports'
split by channel has two channels to count.

Run it (on a quiet machine: the seeding and the 1M-row scans load the database for minutes):

    BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/wpotp_bench_console \
        .venv/bin/python bench/console_pages.py --rows 1000000 --runs 20

A quick check that it works: `--rows 20000 --runs 3`.

Redis: REDIS_URL db 8 (read only by the pages; not flushed). Not part of `make test`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/wpotp_bench_console"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8")
GOALS_MS = {"report": 300, "log": 100}

# Countries by share, with a mobile prefix each (the numbers only need to look right).
COUNTRIES = [("TR", 0.40, "+90532"), ("DE", 0.15, "+49151"), ("BR", 0.12, "+55119"), ("US", 0.10, "+1202"),
             ("GB", 0.08, "+44741"), ("IN", 0.06, "+91981"), ("NG", 0.04, "+23480"), ("FR", 0.03, "+33612"),
             ("ID", 0.02, "+62812")]


def fresh_database(url: str) -> None:
    import sqlalchemy

    admin = sqlalchemy.create_engine(url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    name = url.rsplit("/", 1)[1]
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()


def environment(db_url: str, instance: Path) -> dict:
    env = dict(os.environ)
    env.update(DATABASE_URL=db_url, WPOTP_INSTANCE_DIR=str(instance), REDIS_URL=REDIS_URL, LOG_LEVEL="WARNING",
               WPOTP_ENV="development", WPOTP_PROVIDER="sandbox")
    return env


def flask_init(env: dict) -> None:
    subprocess.run([str(ROOT / ".venv/bin/flask"), "--app", "wsgi", "wpotp", "init"], env=env, cwd=ROOT,
                   check=True, capture_output=True, text=True)


def _case(thresholds: list[tuple[str, float]], var: str) -> str:
    """CASE WHEN var < t1 THEN v1 WHEN var < t1+t2 THEN v2 ... ELSE last END."""
    parts, acc = [], 0.0
    for value, share in thresholds[:-1]:
        acc += share
        parts.append(f"WHEN {var} < {acc:.4f} THEN {value}")
    return f"CASE {' '.join(parts)} ELSE {thresholds[-1][0]} END"


def seed_sql(total: int) -> str:
    country = _case([(f"'{c}'", share) for c, share, _ in COUNTRIES], "rc")
    prefix = _case([(f"'{p}'", share) for _, share, p in COUNTRIES], "rc")
    status = _case([("'VERIFIED'", 0.64), ("'EXPIRED'", 0.26), ("'FAILED'", 0.06), ("'CANCELED'", 0.04)], "rs")
    live = _case([("'QUEUED'", 0.1), ("'SENT'", 0.2), ("'DELIVERED'", 0.2), ("'READ'", 0.5)], "r3")
    sec = "* interval '1 second'"
    return f"""
    INSERT INTO otps (id, app_id, api_key_id, mode, provider, channel, recipient, country, reference, template_id,
        language, code_hash, code_length, status, attempts, max_attempts, generation, ttl_seconds,
        provider_message_id, error, expires_at, created_at, last_sent_at, sent_at, delivered_at, read_at,
        verified_at, failed_at, canceled_at, expired_at)
    SELECT id, app_id, api_key_id, 'live', CASE WHEN g %% 5 = 0 THEN 'twilio' ELSE 'cloud_api' END,
        CASE WHEN g %% 5 = 0 THEN 'sms' ELSE 'whatsapp' END, recipient, country,
        CASE WHEN r2 < 0.5 THEN 'order-' || g END, %(template)s, 'en', code_hash, 6, status,
        CASE WHEN status = 'VERIFIED' AND r2 < 0.1 THEN 1 ELSE 0 END, 5,
        CASE WHEN r1 > 0.95 THEN 2 ELSE 1 END, 300,
        CASE WHEN sent_at IS NOT NULL THEN 'wamid.' || g END,
        CASE WHEN status = 'FAILED' THEN '131026: message undeliverable' END,
        c + interval '300 seconds', c, c, sent_at, delivered_at,
        CASE WHEN status = 'READ' OR (status = 'VERIFIED' AND r3 < 0.8) OR (status = 'EXPIRED' AND r3 < 0.4)
             THEN coalesce(delivered_at, sent_at) + (1 + r3 * 20) {sec} END,
        CASE WHEN status = 'VERIFIED' THEN c + (5 + rv * rv * 170) {sec} END,
        CASE WHEN status = 'FAILED' THEN c + interval '5 seconds' END,
        CASE WHEN status = 'CANCELED' THEN c + interval '40 seconds' END,
        CASE WHEN status = 'EXPIRED' THEN c + interval '300 seconds' END
    FROM (
        SELECT *,
            CASE WHEN status = 'QUEUED' OR (status = 'FAILED' AND r1 < 0.7) THEN NULL
                 ELSE c + (0.5 + r1 * 2.5) {sec} END AS sent_at,
            CASE WHEN (status = 'VERIFIED' AND r2 < 0.9) OR (status = 'EXPIRED' AND r2 < 0.75)
                   OR status IN ('DELIVERED', 'READ') OR (status = 'CANCELED' AND r2 < 0.5)
                 THEN c + (3.5 + r2 * 4) {sec} END AS delivered_at
        FROM (
            SELECT *, CASE WHEN c > %(live_after)s AND raw_status IN ('EXPIRED', 'VERIFIED') THEN {live}
                           ELSE raw_status END AS status
            FROM (
                SELECT g, r1, r2, r3, rv, rc,
                    'otp_' || substr(md5(g::text || 'otp'), 1, 20) AS id,
                    CASE WHEN g %% 11 = 0 THEN %(other_app)s ELSE %(app)s END AS app_id,
                    CASE WHEN g %% 11 = 0 THEN %(other_key)s ELSE %(key)s END AS api_key_id,
                    {prefix} || lpad(((g::bigint * 7919) %% 150000)::text, 7, '0') AS recipient,
                    {country} AS country,
                    md5(g::text) || md5((g + 1)::text) AS code_hash,
                    {status} AS raw_status,
                    %(start)s + (g::float8 / {total}) * interval '90 days' + random() * interval '2 seconds'
                        - interval '2 seconds' AS c
                FROM (SELECT g, random() AS r1, random() AS r2, random() AS r3, random() AS rv, random() AS rc,
                             random() AS rs
                      FROM generate_series(1, {total}) AS g) AS rnd
            ) AS base
        ) AS with_status
    ) AS timed
    """


def seed(app, rows: int) -> tuple[str, dict[str, float]]:
    """Insert `rows` OTPs of app `default` (and rows/10 of `other`); returns (default's id, seconds by step)."""
    from sqlalchemy import select
    from sqlalchemy.schema import CreateIndex

    from tests.helpers import make_key
    from wpotp.extensions import db
    from wpotp.models import Otp, Template
    from wpotp.util import utcnow

    main = make_key(app, "default", mode="live")
    other = make_key(app, "other", mode="live")
    total = rows + rows // 10  # every 11th row is `other`'s
    with app.app_context():
        template = db.session.scalars(select(Template.id).where(Template.is_default.is_(True))).first() \
            or db.session.scalars(select(Template.id)).first()
        now = utcnow()
        params = {"template": template, "app": main.app_id, "key": main.key_id, "other_app": other.app_id,
                  "other_key": other.key_id, "start": now - timedelta(days=90),
                  "live_after": now - timedelta(minutes=10)}
        # Bulk-load as a restore would: the secondary indexes are built once after the insert (the
        # same definitions, from the model), and foreign keys are not checked row by row (every
        # row points at the app, key and template made above).
        indexes = [CreateIndex(ix).compile(dialect=db.engine.dialect) for ix in Otp.__table__.indexes]
        times = {}
        started = time.perf_counter()
        raw = db.engine.raw_connection()
        try:
            with raw.cursor() as cur:
                cur.execute("SET session_replication_role = replica")
                for ix in Otp.__table__.indexes:
                    cur.execute(f'DROP INDEX IF EXISTS "{ix.name}"')
                cur.execute(seed_sql(total), params)
                times["insert"] = time.perf_counter() - started
                for ddl in indexes:
                    cur.execute(str(ddl))
                cur.execute("SET session_replication_role = DEFAULT")
                times["indexes"] = time.perf_counter() - started - times["insert"]
            raw.commit()
            raw.driver_connection.autocommit = True
            with raw.cursor() as cur:
                cur.execute("VACUUM (ANALYZE) otps")
            raw.driver_connection.autocommit = False
        finally:
            raw.close()
        times["total"] = time.perf_counter() - started
        return main.app_id, times


def timed(fn: Callable[[], object], runs: int, after: Callable[[], None] | None = None) -> list[float]:
    for _ in range(2):
        fn()
        if after:
            after()
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
        if after:
            after()
    return out


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def line(label: str, values: list[float], base: list[float] | None, goal: str | None) -> str:
    med = statistics.median(values) * 1000
    text = f"  {label:<44} median {med:8.1f} ms   p95 {p95(values) * 1000:8.1f} ms"
    if base:
        text += f"   x{med / (statistics.median(base) * 1000):6.1f} baseline"
    if goal:
        text += f"   {'ok' if med <= GOALS_MS[goal] else 'OVER'} (goal {GOALS_MS[goal]} ms)"
    return text


def bench_functions(app, app_id: str, runs: int) -> None:
    from sqlalchemy import and_, or_, select, text

    from wpotp.extensions import db
    from wpotp.models import Otp
    from wpotp.otp.queries import OtpFilter, encode_cursor, list_otps
    from wpotp.reports.limits import top_recipients
    from wpotp.reports.usage import default_range, floor_to, forget_reports, usage_report
    from wpotp.util import utcnow

    def reset() -> None:
        db.session.rollback()
        db.session.expunge_all()

    count_sql = text("SELECT count(*) FROM otps WHERE app_id = :a AND created_at >= :s AND created_at < :e")
    ids_sql = text("SELECT created_at, id FROM otps WHERE app_id = :a ORDER BY created_at DESC, id DESC LIMIT 51")

    with app.app_context():
        now = utcnow()
        windows = {
            "90 days by day": (floor_to(now, "day") - timedelta(days=89), now, "day"),
            "30 days by day": (floor_to(now, "day") - timedelta(days=29), now, "day"),
            "7 days by day": (*default_range("day", now), "day"),
            "7 days by hour": (floor_to(now, "hour") - timedelta(days=7) + timedelta(hours=1), now, "hour"),
            "24 hours by hour": (*default_range("hour", now), "hour"),
            "30 days ago, one whole day": (floor_to(now, "day") - timedelta(days=30),
                                           floor_to(now, "day") - timedelta(days=29), "day"),
        }
        print("a. usage_report (cold: the report cache forgotten, without rollups = every bucket from the table,")
        print("   with rollups = rolled hours from report_rollups; warm: settled buckets from the report cache)")

        def forget() -> None:
            reset()
            forget_reports(app_id)

        def report(start, end, interval, rollups: bool):
            app.config["REPORT_ROLLUPS"] = rollups
            try:
                return usage_report(app_id, start, end, interval)
            finally:
                app.config["REPORT_ROLLUPS"] = True

        for label, (start, end, interval) in windows.items():
            rows = db.session.execute(count_sql, {"a": app_id, "s": start, "e": end}).scalar()
            base = timed(lambda s=start, e=end: db.session.execute(count_sql, {"a": app_id, "s": s, "e": e}).scalar(),
                         runs, reset)
            forget()
            same = report(start, end, interval, False) == (forget() or report(start, end, interval, True))
            without = timed(lambda s=start, e=end, i=interval: report(s, e, i, False), runs, forget)
            cold = timed(lambda s=start, e=end, i=interval: report(s, e, i, True), runs, forget)
            warm = timed(lambda s=start, e=end, i=interval: report(s, e, i, True), runs, reset)
            print(f"  {label}: {rows} OTPs; the report from rollups {'equals' if same else 'DIFFERS FROM'} "
                  "the one from the table")
            print(line("  cold, without rollups", without, base, "report"))
            print(line("  cold, with rollups", cold, base, "report"))
            print(line("  warm (report cache)", warm, base, "report"))
            print(line("  baseline count(*) over the window", base, None, None))

        print("b. live log: list_otps, 50 a page")
        deep = db.session.execute(text(
            "SELECT created_at, id FROM otps WHERE app_id = :a AND created_at < :t ORDER BY created_at DESC, id DESC"
            " LIMIT 1"), {"a": app_id, "t": now - timedelta(days=45)}).one()
        deep_cursor = encode_cursor(deep.created_at, deep.id)
        busy = top_recipients(app_id, now - timedelta(days=1), limit=1)[0]["recipient"]
        base = timed(lambda: db.session.execute(ids_sql, {"a": app_id}).all(), runs, reset)
        cases = {
            "newest page": (OtpFilter(), None),
            "a page 45 days deep (cursor)": (OtpFilter(), deep_cursor),
            "status=FAILED, newest page": (OtpFilter(status="FAILED"), None),
            "status=QUEUED (rare), newest page": (OtpFilter(status="QUEUED"), None),
            "recipient=<a busy number>, newest page": (OtpFilter(recipient=busy), None),
        }
        for label, (flt, cursor) in cases.items():
            got = timed(lambda f=flt, c=cursor: list_otps(app_id, f, 50, c), runs, reset)
            print(line(label, got, base, "log"))

        def bounded_deep_page() -> list:
            """The cursor page as list_otps builds it, plus `created_at <= cursor time`: a bound
            PostgreSQL can use in the index (it cannot use the OR alone, so it walks every newer row)."""
            at, row_id = deep.created_at, deep.id
            query = (select(Otp).where(Otp.app_id == app_id, Otp.created_at <= at,
                                       or_(Otp.created_at < at, and_(Otp.created_at == at, Otp.id < row_id)))
                     .order_by(Otp.created_at.desc(), Otp.id.desc()).limit(51))
            return db.session.scalars(query).all()

        got = timed(bounded_deep_page, runs, reset)
        print(line("(proposed) 45 days deep, with created_at <= bound", got, base, "log"))
        print(line("  baseline: the 51 (created_at, id) from the index", base, None, None))

        print("c. top_recipients")
        got = timed(lambda: top_recipients(app_id, now - timedelta(days=1)), runs, reset)
        print(line("last 24 hours", got, None, None))
        got = timed(lambda: top_recipients(app_id, now - timedelta(minutes=15)), runs, reset)
        print(line("last 15 minutes", got, None, None))


def bench_pages(app, app_id: str, runs: int) -> None:
    from sqlalchemy import select

    from wpotp.extensions import db
    from wpotp.models import User
    from wpotp.otp.queries import encode_cursor
    from wpotp.reports.usage import forget_reports
    from wpotp.util import utcnow

    have = [name for name in ("console.overview", "console.reports", "console.otps", "console.rate_limits")
            if name in app.view_functions]
    if not {"console.reports", "console.otps"} & set(have):
        print("d. console pages: not built yet (no console.reports / console.otps); skipped")
        return
    def forget() -> None:
        with app.app_context():
            forget_reports(app_id)

    with app.app_context():
        user = db.session.scalars(select(User).where(User.role == "admin")).first()
        user_id = user.id
        now = utcnow()
        deep = encode_cursor(now - timedelta(days=45), "otp_zzzzzzzzzzzzzzzzzzzz")
    client = app.test_client()
    with client.session_transaction() as sess:  # what a successful login leaves in the session
        sess["_user_id"] = user_id
        sess["_fresh"] = True
    first = (now - timedelta(days=29)).date().isoformat()
    pages = {
        "console.overview": [("overview (today's report)", "/console/", "report")],
        "console.reports": [("reports, last 30 days by day (cold)", f"/console/reports?from={first}", "report"),
                            ("reports, last 30 days by day", f"/console/reports?from={first}&interval=day", "report"),
                            ("reports, default (7 days)", "/console/reports", "report"),
                            ("reports.csv, last 30 days", f"/console/reports.csv?from={first}", "report")],
        "console.otps": [("live log, newest", "/console/otps", "log"),
                         ("live log, status=FAILED", "/console/otps?status=FAILED", "log"),
                         ("live log, 45 days deep", f"/console/otps?cursor={deep}", "log")],
        "console.rate_limits": [("rate limits (top consumers)", "/console/rate-limits", None)],
    }
    print("d. console pages through a logged-in test client")
    for endpoint in have:
        for label, url, goal in pages[endpoint]:
            r = client.get(url)
            if r.status_code != 200:
                print(f"  {label:<44} answered {r.status_code}: {r.get_data(as_text=True)[:200]!r}")
                continue
            got = timed(lambda u=url: client.get(u), runs, forget if label.endswith("(cold)") else None)
            print(line(label, got, None, goal))


def roll_up_all(app) -> None:
    """Bring the report rollup up to date, pass after pass, as the worker's sweeps would."""
    from wpotp.reports.rollups import roll_up

    with app.app_context():
        started, hours, passes = time.perf_counter(), 0, 0
        while True:
            done = roll_up()
            passes += 1
            hours += done["rollup_hours"]
            if not done["rollup_hours"]:
                break
    print(f"rollup: {hours} hours rolled up in {passes} passes, {time.perf_counter() - started:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="OTPs of the measured app")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--reuse", action="store_true", help="keep the seeded database of an earlier run")
    args = parser.parse_args()

    db_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    instance = Path(tempfile.mkdtemp(prefix="wpotp-bench-console-"))
    env = environment(db_url, instance)
    os.environ.update(env)
    from wpotp import create_app

    if args.reuse:
        app = create_app()
        from sqlalchemy import select

        from wpotp.extensions import db
        from wpotp.models import App

        with app.app_context():
            app_id = db.session.scalars(select(App.id).where(App.name == "default")).one()
        print(f"database: {db_url.split('@')[-1]} (reused)")
    else:
        fresh_database(db_url)
        flask_init(env)
        app = create_app()
        app_id, took = seed(app, args.rows)
        print(f"database: {db_url.split('@')[-1]}  seeded {args.rows} OTPs (+{args.rows // 10} of another app) "
              f"in {took['total']:.1f} s (insert {took['insert']:.1f} s, indexes {took['indexes']:.1f} s, "
              f"then VACUUM ANALYZE)")
    app.logger.setLevel("WARNING")
    roll_up_all(app)
    import logging

    logging.getLogger("wpotp.request").setLevel(logging.WARNING)
    print(f"runs: {args.runs} each after 2 warm-ups; times in ms; goals: reports <= {GOALS_MS['report']} ms, "
          f"live log <= {GOALS_MS['log']} ms")
    bench_functions(app, app_id, args.runs)
    bench_pages(app, app_id, args.runs)


if __name__ == "__main__":
    main()
