"""A per-process cache of the rows nearly every request reads and staff rarely change.

Apps, OTP templates and webhook endpoints are read on every /v1 call or send job, and a
database round trip plus the ORM cost more than the rest of a typical request. Each process
keeps them in memory, detached from any session, and checks on each request or job (one
Redis GET, once per request or job; on /v1 and the dialects it rides in the request gate's
round trip, `note_epoch`) that nothing changed since:

- every writer of an App, Template or WebhookEndpoint row calls `bump_epoch()` after its
  commit (and an ORM-enabled bulk UPDATE/DELETE of one, run by hand, bumps it on commit: see
  `watch_bulk_changes`), which sets the Redis key `wpotp:config-epoch` to a new random value,
  so a changed setting is seen by every process on its next request;
- an entry older than CACHE_MAX_AGE seconds is read again anyway, for rows changed outside
  the application (SQL by hand).

API keys are deliberately not cached here: revocation must hold on the very next request
however it is done, SQL by hand included, which no Redis epoch can see. `wpotp.api.auth`
reads the key's row by its hash on every request instead (one indexed query, SPEC §2).

Cached objects are detached and shared between threads: read them, never change them.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from flask import current_app, g, has_app_context, has_request_context
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from .extensions import db, redis_client
from .util import random_base62

log = logging.getLogger("wpotp.cache")
EPOCH_KEY = "wpotp:config-epoch"
CACHE_MAX_AGE = 60.0
_DIRTY = "wpotp_config_changed"
_MISS = object()


class ConfigCache:
    def __init__(self) -> None:
        self.entries: dict[tuple, tuple[str, float, Any]] = {}
        self.lock = threading.Lock()

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()


def _cache() -> ConfigCache:
    ext = current_app.extensions
    cache = ext.get("wpotp_config_cache")
    if cache is None:
        cache = ext.setdefault("wpotp_config_cache", ConfigCache())
    return cache


def current_epoch() -> str | None:
    """The shared epoch, read once per request (a new random one if Redis has none yet).

    None when Redis cannot be asked: then nothing is served from memory (what must work
    without Redis, like the webhook outbox, still reads the database).
    """
    memo = _memo_allowed()
    if memo and "config_epoch" in g:
        return g.config_epoch
    conn = redis_client.conn
    try:
        raw = conn.get(EPOCH_KEY)
        if raw is None:
            conn.set(EPOCH_KEY, random_base62(12), nx=True)
            raw = conn.get(EPOCH_KEY) or b""
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        return None
    epoch = raw.decode() if isinstance(raw, bytes) else str(raw)
    if memo:
        g.config_epoch = epoch
    return epoch


def note_epoch(epoch: str) -> None:
    """The epoch as another Redis round trip of this request read it (the request gate,
    wpotp/api/ratelimit.py, reads it with the API budget): `current_epoch` answers with it
    instead of asking Redis again."""
    if _memo_allowed():
        g.config_epoch = epoch


def _memo_allowed() -> bool:
    """The epoch is read once per request, and once per job (wpotp.jobs marks a job's app
    context); a long-lived app context (a CLI command, a worker's loop) reads it every time."""
    return has_request_context() or (has_app_context() and g.get("wpotp_job", False))


def cached(key: tuple, load: Callable[[Session], Any], keep_misses: bool = False) -> Any:
    """`load()`'s result for `key`, from this process's memory while the epoch holds.

    `load(session)` runs in a short session of its own, so what it returns (an ORM object or
    None) is never an object the caller's session holds; it is detached before it is kept and
    shared. None is kept only with `keep_misses` (for look-ups by app or language, a small set).
    """
    cache = _cache()
    epoch = current_epoch()
    found = cache.entries.get(key, _MISS) if epoch is not None else _MISS
    if found is not _MISS:
        entry_epoch, stored_at, value = found
        if entry_epoch == epoch and time.monotonic() - stored_at < CACHE_MAX_AGE:
            return value
    with Session(db.engine, expire_on_commit=False) as session:
        value = load(session)
        if value is not None:
            session.expunge(value)
        elif not keep_misses:
            return None
    if epoch is None:
        return value
    with cache.lock:
        if len(cache.entries) > 10000:
            cache.entries.clear()
        cache.entries[key] = (epoch, time.monotonic(), value)
    return value


def bump_epoch() -> None:
    """Everything cached anywhere is stale from now on."""
    epoch = random_base62(12)
    try:
        redis_client.conn.set(EPOCH_KEY, epoch)
    except Exception:  # Redis away: entries still age out after CACHE_MAX_AGE
        log.exception("could not publish a configuration change; caches catch up within %ss", CACHE_MAX_AGE)
    if _memo_allowed():
        g.config_epoch = epoch
    with contextlib.suppress(RuntimeError):  # no app context: other processes still see the new epoch
        _cache().clear()


# --- what changes the cached rows ------------------------------------------------------------
#
# The application's writers of App, Template and WebhookEndpoint rows (the console's settings,
# templates and webhooks pages, the CLI, template sync) call `bump_epoch()` after their commit.
# One listener remains, for what no writer of ours can announce: an ORM-enabled bulk UPDATE or
# DELETE of those rows run by hand (a shell, a script, a test) marks its session, and that
# session's commit bumps the epoch. `watch_bulk_changes` registers it, called by create_app.

def _cached_types() -> tuple[type, ...]:
    from .models import App, Template, WebhookEndpoint

    return (App, Template, WebhookEndpoint)


def watch_bulk_changes() -> None:
    """Bump the epoch when a session commits an ORM bulk UPDATE/DELETE of a cached table.
    Process-wide (SQLAlchemy's Session class); calling it again adds nothing."""
    for name, listener in (("do_orm_execute", _note_bulk_changes), ("after_commit", _publish_changes),
                           ("after_rollback", _forget_changes)):
        if not sa_event.contains(Session, name, listener):
            sa_event.listen(Session, name, listener)


def _note_bulk_changes(state) -> None:
    if state.is_update or state.is_delete:
        mapper = state.bind_mapper
        if mapper is not None and issubclass(mapper.class_, _cached_types()):
            state.session.info[_DIRTY] = True


def _publish_changes(session: Session) -> None:
    if session.info.pop(_DIRTY, False):
        bump_epoch()


def _forget_changes(session: Session) -> None:
    session.info.pop(_DIRTY, None)
