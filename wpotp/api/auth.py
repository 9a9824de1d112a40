"""API-key authentication (SPEC §2): one keyed-hash lookup per request, cached on `g`.

The key's row is read from the database on every request (one indexed Core SELECT by
`key_hash`), never from the per-process cache: a key revoked in any way (the console, the
CLI, an `UPDATE api_keys ...` by hand) is refused on the very next request in every process.
The same SELECT reads the API rate limit of the key's app, which the request gate
(wpotp/api/ratelimit.py) needs before it reads the cache's epoch; the rest of the app, which
staff change far less urgently, comes from `wpotp.cache`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Blueprint, current_app, g, request
from sqlalchemy import bindparam, select, update

from ..cache import cached
from ..errors import Unauthorized
from ..extensions import db
from ..models import ApiKey, App
from ..otp.codes import hash_api_key
from ..util import utcnow

KEY_PREFIXES = ("wpotp_live_", "wpotp_test_")
_MISSING = object()
_KEYS = ApiKey.__table__
_APPS = App.__table__
_KEY_COLUMNS = (_KEYS.c.id, _KEYS.c.app_id, _KEYS.c.name, _KEYS.c.mode, _KEYS.c.prefix, _KEYS.c.created_at,
                _KEYS.c.last_used_at)

# Built once: a statement built per request costs more than its execution (SQLAlchemy computes a
# fresh statement's cache key each time; a kept one memoizes it).
_LIVE_KEY = (select(*_KEY_COLUMNS, _APPS.c.api_rate_limit).join_from(_KEYS, _APPS, _KEYS.c.app_id == _APPS.c.id)
             .where(_KEYS.c.key_hash == bindparam("digest"), _KEYS.c.revoked_at.is_(None)))


@dataclass(frozen=True, slots=True)
class LiveKey:
    """The presented key's row as this request read it: a plain record, not an ApiKey (building
    a transient ORM object cost about a fifth of the lookup), which no session can add or flush."""

    id: str
    app_id: str
    name: str
    mode: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None


KeyExtractor = Callable[[], str | None]  # where a request carries its API key, or None


def native_key() -> str | None:
    """`Authorization: Bearer <key>`, else `X-API-Key: <key>` (SPEC §2)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("X-API-Key", "").strip() or None


def carries_key(bp: Blueprint, extractor: KeyExtractor) -> Blueprint:
    """Say where requests routed to `bp` carry their API key; a blueprint that says nothing
    carries it natively (`native_key`).

    Compat dialects carry the key elsewhere (a query parameter, Basic auth, a header pair): each
    passes its extractor when it builds its blueprint, and the limiter, the lookup and the logs
    then treat every dialect's key exactly like a native one.
    """
    bp.key_extractor = extractor  # type: ignore[attr-defined]  (read back by _extractor)
    return bp


def _extractor() -> KeyExtractor:
    """The extractor of the blueprint this request is routed to, through the app it is registered on."""
    bp = current_app.blueprints.get(request.blueprint) if request.blueprint else None
    return getattr(bp, "key_extractor", native_key)


def presented_key() -> str | None:
    """The API key this request carries, by the rules of the blueprint it is routed to."""
    if "presented_key" not in g:
        g.presented_key = _extractor()()
    return g.presented_key


def key_digest() -> str:
    """The keyed hash of whatever key was presented (or `anonymous`)."""
    if "api_key_digest" not in g:
        raw = presented_key()
        # Keys are ASCII: anything else (a lone surrogate in a JSON access_token) cannot be one,
        # and could not even be hashed.
        g.api_key_digest = hash_api_key(raw) if raw and raw.startswith(KEY_PREFIXES) and len(raw) < 200 \
            and raw.isascii() else "anonymous"
    return g.api_key_digest


def lookup_key() -> LiveKey | None:
    """The live (not revoked) key presented with this request, or None."""
    found = g.get("api_key", _MISSING)
    if found is _MISSING:
        digest = key_digest()
        found, g.api_key_rule = (None, None) if digest == "anonymous" else _live_key(digest)
        g.api_key = found
    return found


def _live_key(digest: str) -> tuple[LiveKey | None, str | None]:
    """One indexed Core query by the key's hash (unique index), on the session's connection
    (the Session's own execute adds its ORM dispatch), always as fresh as the database, whoever
    changed the row. With the key, its app's own API rate limit (None: the default)."""
    row = db.session.connection().execute(_LIVE_KEY, {"digest": digest}).first()
    if row is None:
        return None, None
    *fields, rule = row
    return LiveKey(*fields), rule


def key_app(key: LiveKey) -> App:
    return cached(("app", key.app_id), lambda s: s.get(App, key.app_id))


def require_key() -> tuple[LiveKey, App]:
    key = lookup_key()
    if key is None:
        raise Unauthorized()
    app = key_app(key)
    _touch(key)
    return key, app


def _touch(key: LiveKey) -> None:
    """Keep `last_used_at` to the minute without a write on every request (the row read for
    this request says when it was last written)."""
    now = utcnow()
    if key.last_used_at is not None and now - key.last_used_at <= timedelta(minutes=1):
        return
    db.session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now)
                       .execution_options(synchronize_session=False))
    db.session.commit()


def api_limit_value() -> str:
    """The API budget of this request: its key's app's own, else API_RATE_LIMIT (also for
    requests without a live key, counted per IP as `anonymous`)."""
    lookup_key()
    return g.get("api_key_rule") or current_app.config["API_RATE_LIMIT"]
