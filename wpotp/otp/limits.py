"""Send limits that count messages rather than requests: per recipient per app, per app per day.

They share Flask-Limiter's Redis storage and use a moving window, so "5 per 15 minutes"
means any 15 minutes, not a clock-aligned quarter hour.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from flask import current_app
from limits import RateLimitItem, parse, parse_many
from limits.storage import RedisStorage
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


# Every window tested, then every window hit, in one atomic script: the same list-of-timestamps
# layout as limits' moving window (so get_window_stats and the rate-limit pages read it), one
# round trip instead of two per window, and no send can slip between the test and the hit.
_ACQUIRE_ALL = """
local now = tonumber(ARGV[1])
for i = 1, #KEYS do
    local limit, expiry = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
    local entry = redis.call('lindex', KEYS[i], limit - 1)
    if entry and tonumber(entry) >= now - expiry then
        return i
    end
end
for i = 1, #KEYS do
    local limit, expiry = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
    redis.call('lpush', KEYS[i], now)
    redis.call('ltrim', KEYS[i], 0, limit - 1)
    redis.call('expire', KEYS[i], expiry)
end
return 0
"""


def consume(limits: list[SendLimit]) -> None:
    """Count one send against each limit, or raise RateLimited without counting anything."""
    strategy = _strategy()
    storage = strategy.storage
    if type(storage) is not RedisStorage:  # memory://, or a cluster (keys in different slots)
        return _consume_each(strategy, limits)
    registered = current_app.extensions.get("wpotp_acquire_all")
    if registered is None or registered[0] is not storage:
        registered = current_app.extensions["wpotp_acquire_all"] = (
            storage, storage.get_connection().register_script(_ACQUIRE_ALL))
    script = registered[1]
    keys = [storage.prefixed_key(lim.item.key_for(*lim.identifiers)) for lim in limits]
    args: list[float] = [time.time()]
    for lim in limits:
        args += [lim.item.amount, lim.item.get_expiry()]
    refused = int(script(keys, args))
    if refused:
        raise _limited(strategy, limits[refused - 1])
    return None


def _consume_each(strategy: MovingWindowRateLimiter, limits: list[SendLimit]) -> None:
    """The same, window by window, for other storages (not atomic across windows)."""
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

