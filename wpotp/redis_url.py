"""Every Redis client of wpotp comes from here: one reader of the URL forms REDIS_URL may take.

- `redis://[[user]:password@]host:port[/db]`, `rediss://...` (TLS), `unix://[[user]:password@]/path?db=N`:
  redis-py's own forms (`redis.Redis.from_url`).
- `redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db]`: Redis behind
  Sentinel. The hosts are the sentinels (give them all), `service_name` the name they monitor the
  master by (`sentinel monitor <service_name> ...`), `db` the database number (default 0). The
  password is the Redis servers' (master and replicas); sentinels that want one of their own take
  it from REDIS_SENTINEL_PASSWORD. This is the form the `limits` library (Flask-Limiter's storage)
  reads, plus the `/db` it lacks: `limiter_storage` turns it into the URI and options it takes.

A Sentinel client asks the sentinels for the master when it connects, and again whenever a
connection fails or the server it reached answers READONLY (a master demoted by a failover):
redis-py's SentinelConnectionPool drops its connections to the old master then, so callers see
one ConnectionError (which they already treat as an outage) and the next call reaches the new master.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import redis
from redis.sentinel import Sentinel, SentinelConnectionPool

SENTINEL_SCHEME = "redis+sentinel"
PLAIN_SCHEMES = ("redis", "rediss", "unix")

# The app's own pool (web requests, jobs' own calls): short timeouts, so an outage is a quick 503.
APP_POOL = {"socket_connect_timeout": 2, "socket_timeout": 5, "health_check_interval": 30}
# The RQ workers' pool: a socket timeout long enough for a blocking dequeue.
WORKER_POOL = {"socket_connect_timeout": 2, "socket_timeout": 15, "health_check_interval": 30}


class RedisUrlError(ValueError):
    """REDIS_URL (or RATELIMIT_STORAGE_URI) is not one of the forms of this module's doc."""


@dataclass(frozen=True)
class SentinelTarget:
    """A parsed `redis+sentinel://` URL."""

    sentinels: list[tuple[str, int]]
    service_name: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def is_sentinel(url: str) -> bool:
    return url.split("://", 1)[0].lower() == SENTINEL_SCHEME


def check_redis_url(url: str) -> None:
    """Raise RedisUrlError unless `url` is a form this module reads (config.py calls it at start)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == SENTINEL_SCHEME:
        parse_sentinel_url(url)
    elif scheme not in PLAIN_SCHEMES:
        raise RedisUrlError(f"{_redacted(url)}: a Redis URL starts with redis://, rediss://, unix:// or "
                            "redis+sentinel://host:port[,host:port]/service_name[/db]")


def parse_sentinel_url(url: str) -> SentinelTarget:
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    sentinels = []
    for location in filter(None, (loc.strip() for loc in netloc.split(","))):
        host, _, port = location.rpartition(":")
        if not host or not port.isdigit():
            raise RedisUrlError(f"{_redacted(url)}: each sentinel is host:port, not {location!r}")
        sentinels.append((host.strip("[]"), int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not sentinels or not 1 <= len(path) <= 2 or (len(path) == 2 and not path[1].isdigit()):
        raise RedisUrlError(f"{_redacted(url)}: the form is redis+sentinel://host:port[,host:port]/service_name[/db]")
    return SentinelTarget(sentinels=sentinels, service_name=unquote(path[0]), db=int(path[1]) if len(path) == 2 else 0,
                          username=unquote(parts.username) if parts.username else None,
                          password=unquote(parts.password) if parts.password else None)


def redis_from_url(url: str, sentinel_password: str | None = None, **pool) -> redis.Redis:
    """A client on its own connection pool; `pool` are redis-py's connection settings
    (socket_timeout, socket_connect_timeout, health_check_interval, ...), the same for every form."""
    if not is_sentinel(url):
        return redis.Redis.from_url(url, **pool)
    target = parse_sentinel_url(url)
    sentinel = Sentinel(target.sentinels, sentinel_kwargs=_sentinel_kwargs(sentinel_password, pool))
    return sentinel.master_for(target.service_name, db=target.db, username=target.username,
                               password=target.password, **pool)


def app_redis(config, **pool) -> redis.Redis:
    """A client on REDIS_URL of this app's config (a Flask config or anything with its keys)."""
    return redis_from_url(config["REDIS_URL"], sentinel_password=config.get("REDIS_SENTINEL_PASSWORD") or None,
                          **pool)


def server_identity(conn) -> tuple:
    """What tells two clients on the same Redis server and database apart from two on different
    ones: host, port, path, db, username, and for a Sentinel pool the service and its sentinels."""
    pool = getattr(conn, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    if not kwargs:
        return (id(conn),)
    plain = tuple(kwargs.get(name) for name in ("host", "port", "path", "db", "username"))
    manager = getattr(pool, "sentinel_manager", None)
    if manager is None:
        return plain
    sentinels = sorted((sk.get("host"), sk.get("port"))
                       for sk in (s.connection_pool.connection_kwargs for s in manager.sentinels))
    return (*plain, pool.service_name, tuple(sentinels))


def limiter_storage(url: str, sentinel_password: str | None = None, **pool) -> tuple[str, dict]:
    """RATELIMIT_STORAGE_URI and RATELIMIT_STORAGE_OPTIONS for Flask-Limiter (the `limits` library).

    A plain URL passes as it is. A Sentinel URL loses its `/db` and credentials, which travel as
    options instead (`limits` would read `/service/2` as the service `service2`, and send the
    servers' password to the sentinels too); every limit is read and written on the master
    (use_replicas=False: a replica may lag behind, and a limit read there could let a burst through).
    """
    if not is_sentinel(url):
        return url, {}
    target = parse_sentinel_url(url)
    hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in target.sentinels)
    options: dict = {"db": target.db, "use_replicas": False,
                     "sentinel_kwargs": _sentinel_kwargs(sentinel_password, pool), **pool}
    if target.username:
        options["username"] = target.username
    if target.password:
        options["password"] = target.password
    return f"{SENTINEL_SCHEME}://{hosts}/{target.service_name}", options


def follow_failover(conn: redis.Redis) -> None:
    """Ask the sentinels where the master is now. A pool still on a master that a failover has
    replaced (before Sentinel demotes it and cuts its clients off, which takes it some seconds)
    drops its idle connections and discards the busy ones as they come back, so the next command
    reaches the new master. A plain Redis (or sentinels that cannot be asked): nothing happens."""
    pool = getattr(conn, "connection_pool", None)
    if isinstance(pool, SentinelConnectionPool):
        with contextlib.suppress(redis.RedisError):
            pool.get_master_address()


def set_replicated(conn: redis.Redis, name: str, value, ex: int, replicas: int, timeout_ms: int) -> None:
    """SET `name`, and return once `replicas` replicas hold it (Redis WAIT, on the same connection:
    WAIT counts the writes of the connection it is sent on). Fewer within `timeout_ms` is a
    ConnectionError, an outage to callers. A master with too few replicas is often one that a
    failover has just replaced: the sentinels are asked again, so the next call reaches the new one."""
    with conn.pipeline(transaction=False) as pipe:
        pipe.set(name, value, ex=ex)
        pipe.execute_command("WAIT", replicas, timeout_ms)
        _ok, acked = pipe.execute()
    if int(acked) < replicas:
        follow_failover(conn)
        raise redis.exceptions.ConnectionError(f"{acked} of {replicas} Redis replicas took a write in {timeout_ms} ms")


def single_server_storage(storage) -> bool:
    """Whether a Flask-Limiter storage is one Redis server (plain or found through Sentinel), where
    a Lua script may touch keys of every limit at once; memory:// and a cluster are not."""
    from limits.storage import RedisSentinelStorage, RedisStorage

    return type(storage) in (RedisStorage, RedisSentinelStorage)


def _sentinel_kwargs(password: str | None, pool: dict) -> dict:
    """How to talk to the sentinels themselves: the same socket timeouts, their own password (or none)."""
    kwargs = {k: v for k, v in pool.items() if k.startswith("socket_")}
    kwargs.update(password=password or None, username=None)
    return kwargs


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url
