"""API-key authentication (SPEC §2): one keyed-hash lookup per request, cached on `g`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from flask import current_app, g, request
from sqlalchemy import select, update

from ..cache import cached
from ..errors import Unauthorized
from ..extensions import client_ip, db
from ..models import ApiKey, App
from ..otp.codes import hash_api_key
from ..util import utcnow

KEY_PREFIXES = ("wpotp_live_", "wpotp_test_")
_MISSING = object()
_LAST_USED: dict[str, datetime] = {}  # key id -> when this process last wrote its last_used_at

# Compat dialects carry the key elsewhere (a query parameter, Basic auth, a header pair). Each
# registers how to find it under its blueprint's name; the limiter, the lookup and the logs
# then treat every dialect's key exactly like a native one.
KEY_EXTRACTORS: dict[str, Callable[[], str | None]] = {}


def native_key() -> str | None:
    """`Authorization: Bearer <key>`, else `X-API-Key: <key>` (SPEC §2)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("X-API-Key", "").strip() or None


def presented_key() -> str | None:
    """The API key this request carries, by the rules of the blueprint it is routed to."""
    if "presented_key" not in g:
        extractor = KEY_EXTRACTORS.get(request.blueprint or "", native_key)
        g.presented_key = extractor()
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


def lookup_key() -> ApiKey | None:
    """The live (not revoked) key presented with this request, or None."""
    found = g.get("api_key", _MISSING)
    if found is _MISSING:
        digest = key_digest()
        found = None
        if digest != "anonymous":
            found = cached(("api_key", digest), lambda s: s.scalars(
                select(ApiKey).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))).first())
        g.api_key = found
    return found


def key_app(key: ApiKey) -> App:
    return cached(("app", key.app_id), lambda s: s.get(App, key.app_id))


def require_key() -> tuple[ApiKey, App]:
    key = lookup_key()
    if key is None:
        raise Unauthorized()
    app = key_app(key)
    _touch(key)
    return key, app


def _touch(key: ApiKey) -> None:
    """Keep `last_used_at` to the minute without a write on every request.

    The cached key's own `last_used_at` is not refreshed by this write (it must not invalidate
    every process's cache each minute), so this process remembers its last write itself.
    """
    now = utcnow()
    last = max(filter(None, (key.last_used_at, _LAST_USED.get(key.id))), default=None)
    if last is not None and now - last <= timedelta(minutes=1):
        return
    _LAST_USED[key.id] = now
    db.session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now)
                       .execution_options(synchronize_session=False, wpotp_keeps_config_cache=True))
    db.session.commit()


def api_limit_key() -> str:
    return f"api:{key_digest()}:{client_ip()}"


def api_limit_value() -> str:
    key = lookup_key()
    if key is not None:
        app = key_app(key)
        if app is not None and app.api_rate_limit:
            return app.api_rate_limit
    return current_app.config["API_RATE_LIMIT"]
