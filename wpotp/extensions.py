"""Flask extensions and shared clients, created unbound; `create_app` binds them."""

from __future__ import annotations

import redis
from flask import Blueprint, Flask, current_app, request
from flask_limiter import Limiter
from flask_login import LoginManager
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from rq import Queue
from sqlalchemy import MetaData

from .logs import TracedQueue
from .redis_url import APP_POOL, app_redis

# Stable constraint names so Alembic migrations read the same on SQLite and PostgreSQL.
naming = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(metadata=MetaData(naming_convention=naming))
login_manager = LoginManager()
csrf = CSRFProtect()


def client_ip() -> str:
    """The caller's address; proxies are trusted only as far as TRUSTED_PROXIES says (ProxyFix)."""
    return request.remote_addr or "unknown"


limiter = Limiter(key_func=client_ip)


def limiter_skips(bp: Blueprint) -> Blueprint:
    """Flask-Limiter leaves requests routed to `bp` alone: neither counted nor even looked at.

    `limiter.exempt(bp)` alone still has Flask-Limiter work out, on every request, which limits
    exist and that the blueprint is exempt from them (about a tenth of a send's CPU in one
    process); the request filter below answers first. For /v1 and the dialects (their own gate,
    wpotp/api/ratelimit.py), provider webhooks, health checks and /metrics."""
    limiter.exempt(bp)
    bp.limiter_skips = True  # type: ignore[attr-defined]  (read by _limiter_skips_request)
    return bp


@limiter.request_filter
def _limiter_skips_request() -> bool:
    name = request.blueprint
    bp = current_app.blueprints.get(name) if name else None
    return getattr(bp, "limiter_skips", False)


def init_limiter(app: Flask) -> None:
    """`limiter.init_app(app)`, without the storage options an earlier app of this process left:
    Flask-Limiter merges each app's RATELIMIT_STORAGE_OPTIONS into its one Limiter's, so a
    Sentinel app's options (redis_url.limiter_storage) would reach a later plain-Redis app."""
    limiter._storage_options.clear()
    limiter.init_app(app)

QUEUE_NAMES = ("otp", "default", "webhooks")


class RedisHolder:
    """One Redis connection pool per app, reachable as `redis_client.conn`."""

    def init_app(self, app: Flask) -> None:
        app.extensions["wpotp_redis"] = app_redis(app.config, **APP_POOL)  # any REDIS_URL form (redis_url.py)

    @property
    def conn(self) -> redis.Redis:
        return current_app.extensions["wpotp_redis"]


redis_client = RedisHolder()


def get_queue(name: str = "default") -> Queue:
    """An RQ queue whose jobs carry the current request id (wpotp.logs.TracedQueue)."""
    return TracedQueue(name, connection=redis_client.conn)


def job_queue():
    """The app's queue port (jobs/port.py, built by create_app): how services hand work to workers."""
    return current_app.extensions["wpotp.queue"]
