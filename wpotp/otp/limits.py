"""Send limits that count messages rather than requests: per recipient per app, per app per day.

They share Flask-Limiter's Redis storage and use a moving window, so "5 per 15 minutes"
means any 15 minutes, not a clock-aligned quarter hour.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from flask import current_app
from limits import RateLimitItem, parse, parse_many
from limits.strategies import MovingWindowRateLimiter

from ..errors import RateLimited
from ..extensions import limiter
from ..models import App


@dataclass
class SendLimit:
    name: str  # "recipient" or "app_daily"
    item: RateLimitItem
    identifiers: tuple[str, ...]

    def describe(self) -> str:
        return str(self.item)


def _strategy() -> MovingWindowRateLimiter:
    ext = current_app.extensions
    strategy = ext.get("wpotp_send_limiter")
    if strategy is None:
        strategy = ext["wpotp_send_limiter"] = MovingWindowRateLimiter(limiter.storage)
    return strategy


def app_daily_limit(app: App) -> SendLimit:
    cap = app.daily_send_cap or current_app.config["APP_DAILY_SEND_CAP"]
    return SendLimit("app_daily", parse(f"{cap}/day"), ("send-app", app.id))


def send_limits(app: App, recipient: str) -> list[SendLimit]:
    recipient_rule = app.recipient_rate_limit or current_app.config["RECIPIENT_RATE_LIMIT"]
    limits = [SendLimit("recipient", item, ("send-recipient", app.id, recipient))
              for item in parse_many(recipient_rule)]
    limits.append(app_daily_limit(app))
    return limits


def consume_send(app: App, recipient: str) -> None:
    """Count one OTP message to `recipient` (recipient windows and the app's daily cap)."""
    consume(send_limits(app, recipient))


def consume(limits: list[SendLimit]) -> None:
    """Count one send against each limit, or raise RateLimited without counting anything.

    Every window is tested first so a refused send does not eat into the others; the
    hits themselves are atomic in Redis, so two racing sends cannot both take the last slot.
    """
    strategy = _strategy()
    for lim in limits:
        if not strategy.test(lim.item, *lim.identifiers):
            raise _limited(strategy, lim)
    for lim in limits:
        if not strategy.hit(lim.item, *lim.identifiers):
            raise _limited(strategy, lim)


def _limited(strategy: MovingWindowRateLimiter, lim: SendLimit) -> RateLimited:
    stats = strategy.get_window_stats(lim.item, *lim.identifiers)
    retry_after = int(stats.reset_time - time.time()) + 1
    who = "this recipient" if lim.name == "recipient" else "this app"
    return RateLimited(lim.describe(), retry_after, f"Too many sends to {who}: {lim.describe()}.")

