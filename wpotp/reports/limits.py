"""Rate-limit status (SPEC §8): what each limit allows, what is left, when it frees up.

Reads the very counters the limits are enforced with, without counting anything:

- `api`: Flask-Limiter's shared limit on the /v1 blueprint (wpotp/api/__init__.py). Flask-Limiter
  4.1 keys a shared limit by (RATELIMIT_KEY_PREFIX, key_func(), scope): see
  `Limiter.__evaluate_limits`, where the scope of a shared limit is the bare scope name.
- `recipient` and `app_daily`: the moving-window send limits of wpotp/otp/limits.py, read with
  the same RateLimitItems and identifiers that `consume_send` hits.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import current_app
from limits import RateLimitItem, parse_many
from limits.strategies import RateLimiter
from sqlalchemy import func, select

from ..extensions import db, limiter
from ..models import App, Otp
from ..otp.limits import _strategy, app_daily_limit, send_limits
from ..util import iso

API_SCOPE = "api"


def api_limit_rule(app: App) -> str:
    """The API request limit of `app`'s keys: the same rule `api_limit_value` gives Flask-Limiter."""
    return app.api_rate_limit or current_app.config["API_RATE_LIMIT"]


def api_limit_identifiers(api_key_digest: str, ip: str) -> tuple[str, ...]:
    """What Flask-Limiter passes to its strategy for the shared "api" limit of this caller."""
    key = f"api:{api_key_digest}:{ip}"  # wpotp.api.auth.api_limit_key
    prefix = current_app.config.get("RATELIMIT_KEY_PREFIX", "")
    return (prefix, key, API_SCOPE) if prefix else (key, API_SCOPE)


def _status(name: str, strategy: RateLimiter, item: RateLimitItem, identifiers: tuple[str, ...]) -> dict:
    stats = strategy.get_window_stats(item, *identifiers)  # reads; never consumes
    reset_at = datetime.fromtimestamp(stats.reset_time, UTC).replace(tzinfo=None)
    return {"name": name, "limit": str(item), "window": item.get_expiry(),
            "remaining": max(0, int(stats.remaining)), "resetAt": iso(reset_at)}


def rate_limit_status(app: App, recipient: str | None = None, api_key_digest: str | None = None,
                      ip: str | None = None) -> list[dict]:
    """Each limit that applies, smallest window first within a kind:
    `{"name": "api" | "recipient" | "app_daily", "limit": "120 per 1 minute", "window": seconds,
    "remaining": n, "resetAt": iso}`.

    - `api` (one entry per rule of the limit string) only when both the key digest and the IP
      are given; it is a fixed window that starts with the first request, so an unused window
      resets "now".
    - `recipient` (one per rule of RECIPIENT_RATE_LIMIT or the app's own) only with a recipient
      (E.164, as stored); moving windows: `resetAt` is when the oldest counted send leaves
      the window, i.e. when one more send is allowed again.
    - `app_daily` always.
    """
    out: list[dict] = []
    if api_key_digest and ip:
        identifiers = api_limit_identifiers(api_key_digest, ip)
        for item in sorted(parse_many(api_limit_rule(app))):
            out.append(_status("api", limiter.limiter, item, identifiers))
    sends = _strategy()
    limits = send_limits(app, recipient) if recipient else [app_daily_limit(app)]
    for lim in limits:
        out.append(_status(lim.name, sends, lim.item, lim.identifiers))
    return out


def top_recipients(app_id: str, since: datetime, limit: int = 10) -> list[dict]:
    """The recipients with the most sends since `since` (naive UTC): `[{"recipient", "sends", "otps"}]`,
    most sends first (ties by number).

    `sends` counts each OTP's first send and its resends (its `generation`), as the recipient
    limits do; `otps` counts the OTPs. Counted over OTPs created since `since`.
    """
    sends = func.sum(Otp.generation).label("sends")
    rows = db.session.execute(
        select(Otp.recipient, sends, func.count().label("otps"))
        .where(Otp.app_id == app_id, Otp.created_at >= since)
        .group_by(Otp.recipient)
        .order_by(sends.desc(), Otp.recipient)
        .limit(limit)
    )
    return [{"recipient": r.recipient, "sends": int(r.sends), "otps": int(r.otps)} for r in rows]
