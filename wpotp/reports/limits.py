"""Rate-limit status (SPEC §8): what each limit allows, what is left, when it frees up.

Reads the very counters the limits are enforced with, without counting anything:

- `api`: the shared API budget the request gate hits (wpotp/api/ratelimit.py), read with the
  same items and identifiers (`budget_rules`, `budget_identifiers`) through Flask-Limiter's
  fixed-window strategy.
- `recipient` and `app_daily`: the moving-window send limits of wpotp/otp/limits.py, read with
  the same RateLimitItems and identifiers that `consume_send` hits.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import current_app
from limits import RateLimitItem
from limits.strategies import RateLimiter
from sqlalchemy import func, select

from ..extensions import db, limiter
from ..models import App, Otp
from ..otp.limits import _strategy, app_daily_limit, budget_identifiers, budget_rules, send_limits
from ..util import iso


def api_limit_rule(app: App) -> str:
    """The API request limit of `app`'s keys: the same rule `api_limit_value` gives the gate."""
    return app.api_rate_limit or current_app.config["API_RATE_LIMIT"]


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
        identifiers = budget_identifiers(api_key_digest, ip)
        for item in budget_rules(api_limit_rule(app)):
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
