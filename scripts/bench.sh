#!/usr/bin/env bash
# `make bench`: the API and worker benchmark (bench/api.py) on this machine, against a bare
# Flask ceiling under the same gunicorn configuration. Needs PostgreSQL and Redis; installs
# wrk (Debian's package) and starts the services when they are missing and this is allowed.
# Extra arguments go to bench/api.py (`make bench ARGS="--duration 20"`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v wrk >/dev/null 2>&1; then
  echo "Installing wrk (the load generator) from Debian's packages"
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq wrk >/dev/null \
    || { as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq wrk >/dev/null; }
fi
if [ -z "${BENCH_DATABASE_URL:-}" ] && ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -n "$(ls /etc/postgresql 2>/dev/null)" ]; then
    as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
  else
    echo "PostgreSQL does not answer on 127.0.0.1:5432; start it or set BENCH_DATABASE_URL." >&2
    exit 1
  fi
fi
BENCH_REDIS_URL="${BENCH_REDIS_URL:-redis://127.0.0.1:6379/9}"
export BENCH_REDIS_URL
ensure_redis "$BENCH_REDIS_URL" instance
set +e
.venv/bin/python -u bench/api.py "$@"
status=$?
set -e
if [ -n "${STARTED_REDIS_PID:-}" ]; then kill "$STARTED_REDIS_PID" 2>/dev/null || true; fi
exit $status
