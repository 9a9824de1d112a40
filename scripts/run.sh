#!/usr/bin/env bash
# `make run`: database, Redis (if none answers), web (gunicorn) and worker, sandbox provider.
# Prints how to log in and the development test API key (the same one on every run: `wpotp dev-key`).
# Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

if [ -f .env ]; then set -a; source .env; set +a; fi
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
export PORT="${PORT:-8000}" WEB_CONCURRENCY="${WEB_CONCURRENCY:-2}"
export WPOTP_PROVIDER="${WPOTP_PROVIDER:-sandbox}"
FLASK=(.venv/bin/flask --app wsgi)
LOG_DIR=instance/log
mkdir -p "$LOG_DIR"
# /metrics adds up the figures of every gunicorn worker and the worker process from files here
# (docs/operations.md, "Metrics"); emptied at each start, when none of them runs.
export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-instance/metrics}"
rm -f "$PROMETHEUS_MULTIPROC_DIR"/*.db
mkdir -p "$PROMETHEUS_MULTIPROC_DIR"

ensure_redis "$REDIS_URL" instance
pids=()
cleanup() {
  trap - INT TERM EXIT
  echo; echo "Stopping wpotp..."
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${STARTED_REDIS_PID:-}" ]; then kill "$STARTED_REDIS_PID" 2>/dev/null || true; fi
}
trap cleanup EXIT
# Ctrl-C (or SIGTERM) is how you stop it: not an error. The children get the same SIGINT and
# stop on their own; cleanup then waits for them (the worker finishes its sends first).
trap 'exit 0' INT TERM

init_out=$("${FLASK[@]}" wpotp init)
echo "$init_out"
admin_password=""
if grep -q "created admin user" <<<"$init_out"; then admin_password=$(tail -n 1 <<<"$init_out"); fi
# The same test key as the last run (or a new one, with the keys of older runs revoked), not one more
# valid key per start. NEW_DEV_KEY=1 make run revokes it and makes another.
dev_key_args=(--app default --name "make run")
if [ -n "${NEW_DEV_KEY:-}" ]; then dev_key_args+=(--new); fi
key_out=$("${FLASK[@]}" wpotp dev-key "${dev_key_args[@]}")
head -n -2 <<<"$key_out"
test_key=$(tail -n 1 <<<"$key_out")

.venv/bin/gunicorn -c gunicorn.conf.py wsgi:app >>"$LOG_DIR/web.log" 2>&1 &
pids+=($!)
"${FLASK[@]}" wpotp worker >>"$LOG_DIR/worker.log" 2>&1 &
pids+=($!)

base="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do
  if curl -fsS "$base/readyz" >/dev/null 2>&1; then break; fi
  sleep 0.1
done
curl -fsS "$base/readyz" >/dev/null || { echo "wpotp did not become ready; see $LOG_DIR/web.log" >&2; exit 1; }

cat <<BANNER

  wpotp is running at $base  (provider: $WPOTP_PROVIDER; logs: $LOG_DIR/web.log, $LOG_DIR/worker.log)

  Console user: admin@localhost
BANNER
if [ -n "$admin_password" ]; then
  echo "  Password:     $admin_password   (shown once; this is the first run)"
else
  echo "  Password:     set on the first run. To set a new one:"
  echo "                ${FLASK[*]} wpotp create-user --email admin@localhost --role admin"
  echo "                (it asks for the password, so that it stays out of your shell history)"
fi
cat <<BANNER
  Console:      $base/console/

  Test API key (sandbox: codes appear in the sandbox outbox, never on WhatsApp; the same key on
  every run, until you start with NEW_DEV_KEY=1 make run):
    export WPOTP_KEY=$test_key

  Try it:
    curl -s $base/v1/templates -H "Authorization: Bearer \$WPOTP_KEY"
    curl -s -X POST $base/v1/otp/send -H "Authorization: Bearer \$WPOTP_KEY" \\
         -H "Content-Type: application/json" -d '{"recipient": "+905551112233", "code": "482913"}'

  Ctrl-C stops wpotp.
BANNER
stopping=""
trap 'stopping=1' INT TERM
status=0
wait -n "${pids[@]}" || status=$?
# A child that stopped on the same Ctrl-C may be reaped before the trap has run: a clean exit
# (0) or death by SIGINT/SIGTERM (130/143) is a stop, not a failure.
if [ -n "$stopping" ] || [ "$status" -eq 0 ] || [ "$status" -eq 130 ] || [ "$status" -eq 143 ]; then exit 0; fi
echo "A wpotp process stopped (exit status $status); see $LOG_DIR/." >&2
exit 1
