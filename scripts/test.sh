#!/usr/bin/env bash
# `make test`: lint, then the whole suite on SQLite (and PostgreSQL when TEST_DATABASE_URL is set)
# against real Redis (TEST_REDIS_URL, default db 15; started here if none answers), spread over the
# cores by pytest-xdist (TEST_WORKERS, default two per core, since many tests wait on a process or a
# clock: 368 s against 462 s with one per core, 2026-12-07; worker N uses the Redis db N below).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

TEST_REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"
ensure_redis "$TEST_REDIS_URL" instance
.venv/bin/ruff check .
if [ -n "${TEST_DATABASE_URL:-}" ]; then echo "Databases: SQLite and $TEST_DATABASE_URL"; else echo "Databases: SQLite (set TEST_DATABASE_URL to add PostgreSQL)"; fi
set +e
.venv/bin/pytest -n "${TEST_WORKERS:-$(( $(nproc) * 2 ))}" --dist worksteal "$@"
status=$?
set -e
if [ -n "${STARTED_REDIS_PID:-}" ]; then kill "$STARTED_REDIS_PID" 2>/dev/null || true; fi
exit $status
