# Shared by scripts/run.sh and scripts/test.sh. Source it; it defines functions only.

redis_answers() {  # redis_answers URL
  .venv/bin/python - "$1" <<'PY' >/dev/null 2>&1
import sys
from wpotp.redis_url import redis_from_url  # every URL form wpotp takes, Sentinel included
redis_from_url(sys.argv[1], socket_connect_timeout=1, socket_timeout=2).ping()
PY
}

# ensure_redis URL DIR: if nothing answers at URL and redis-server exists, start one (no persistence)
# with its pid file in DIR. Sets STARTED_REDIS_PID when it started one.
ensure_redis() {
  local url="$1" dir="$2"
  STARTED_REDIS_PID=""
  if redis_answers "$url"; then return 0; fi
  if [[ "$url" == redis+sentinel://* ]]; then
    echo "Redis behind Sentinel does not answer at $url (no sentinel names a reachable master)." >&2
    return 1
  fi
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "Redis does not answer at $url and redis-server is not installed." >&2
    echo "Install it (Debian/Ubuntu: sudo apt-get install redis-server) or set REDIS_URL." >&2
    return 1
  fi
  local hostport host port
  hostport=$(.venv/bin/python -c "import sys; from urllib.parse import urlparse; u=urlparse(sys.argv[1]); print(u.hostname or '127.0.0.1', u.port or 6379)" "$url")
  read -r host port <<<"$hostport"
  mkdir -p "$dir"
  echo "Starting redis-server on $host:$port (no persistence; pid file $dir/redis.pid)"
  redis-server --daemonize yes --bind "$host" --port "$port" --save "" --appendonly no \
    --pidfile "$(cd "$dir" && pwd)/redis.pid" --logfile "$(cd "$dir" && pwd)/redis.log" >/dev/null
  for _ in $(seq 1 50); do
    if redis_answers "$url"; then STARTED_REDIS_PID=$(cat "$dir/redis.pid" 2>/dev/null || true); return 0; fi
    sleep 0.1
  done
  echo "redis-server did not come up; see $dir/redis.log" >&2
  return 1
}
