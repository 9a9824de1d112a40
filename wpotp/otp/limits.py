"""The limits of SPEC §8 that live in Redis, on Flask-Limiter's storage (`limiter.storage`).

- Send limits count messages rather than requests: per recipient per app, per app per day.
  They use a moving window, so "5 per 15 minutes" means any 15 minutes, not a clock-aligned
  quarter hour.
- The API budget counts requests, per API-key hash + client IP across /v1 and every dialect:
  Flask-Limiter's fixed window (its `RATELIMIT_STRATEGY`), hit by the request gate
  (wpotp/api/ratelimit.py) in one round trip that also answers the window for the headers.

Both keep the layout of `limits`' own strategies (its public `RateLimitItem.key_for` and the
storage's key prefix), so `get_window_stats` and the rate-limit pages read the very counters
that are enforced.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from flask import current_app
from limits import RateLimitItem, parse, parse_many
from limits.strategies import MovingWindowRateLimiter, RateLimiter

from ..errors import RateLimited
from ..extensions import limiter
from ..models import App
from ..redis_url import single_server_storage
from ..settings import settings


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
    cap = app.daily_send_cap or settings().app_daily_send_cap
    return SendLimit("app_daily", parse(f"{cap}/day"), ("send-app", app.id))


def send_limits(app: App, recipient: str) -> list[SendLimit]:
    recipient_rule = app.recipient_rate_limit or settings().recipient_rate_limit
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
    if not single_server_storage(storage):  # memory://, or a cluster (keys in different slots)
        return _consume_each(strategy, limits)
    script = _script("wpotp_acquire_all", _ACQUIRE_ALL)
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


# --- the API budget: requests per API-key hash + client IP (SPEC §8) ---------------------------

class Window(NamedTuple):
    """One rule's window after this request was counted."""
    item: RateLimitItem
    remaining: int
    reset_at: int  # epoch seconds, as Flask-Limiter's RequestLimit.reset_at

    @property
    def breached(self) -> bool:
        return self.remaining < 0


@lru_cache(maxsize=256)
def budget_rules(rule: str) -> tuple[RateLimitItem, ...]:
    """The items of a limit string, smallest window first (the order Flask-Limiter checks them)."""
    return tuple(sorted(parse_many(rule)))


def budget_identifiers(api_key_digest: str, ip: str) -> tuple[str, ...]:
    """What the API budget's counters are keyed by (`RateLimitItem.key_for`)."""
    return ("api", api_key_digest, ip)


# Flask-Limiter's fixed window, rule by rule as it checks them (smallest window first, stopping
# at the first breach), with each counter's TTL in the same answer; and, when asked, the
# configuration epoch (wpotp/cache.py) too: the whole gate of a request in one round trip.
_HIT_BUDGET = """
local n = tonumber(ARGV[1])
local out = {false}
if #KEYS > n then
    out[1] = redis.call('get', KEYS[n + 1])
end
for i = 1, n do
    local count = redis.call('incrby', KEYS[i], 1)
    if count == 1 then
        redis.call('expire', KEYS[i], ARGV[i + 1])
    end
    out[#out + 1] = count
    out[#out + 1] = redis.call('ttl', KEYS[i])
    if count > tonumber(ARGV[n + i + 1]) then
        break
    end
end
return out
"""


def hit_budget(rule: str, identifiers: tuple[str, ...], epoch_key: str | None = None) \
        -> tuple[list[Window], str | None]:
    """Count one request against each rule of `rule`, as Flask-Limiter's fixed window does
    (a refused request counts too; the rules after the first breached one are not hit).

    Returns the windows of the rules hit (the last one breached when the request is refused)
    and, with `epoch_key`, that key's value read in the same round trip (None if unset)."""
    items = budget_rules(rule)
    storage = limiter.storage
    if not single_server_storage(storage):  # memory://, or a cluster (keys in different slots)
        return _hit_each(limiter.limiter, items, identifiers), None
    keys = [storage.prefixed_key(item.key_for(*identifiers)) for item in items]
    if epoch_key is not None:
        keys.append(epoch_key)
    args = [len(items), *(item.get_expiry() for item in items), *(item.amount for item in items)]
    epoch, *counts = _script("wpotp_hit_budget", _HIT_BUDGET)(keys, args)
    now = time.time()
    windows = [Window(item, item.amount - int(count), int(max(int(ttl), 0) + now + 1))
               for item, count, ttl in zip(items, counts[::2], counts[1::2], strict=False)]
    return windows, epoch.decode() if isinstance(epoch, bytes) else epoch


def _hit_each(strategy: RateLimiter, items: tuple[RateLimitItem, ...], identifiers: tuple[str, ...]) \
        -> list[Window]:
    """The same through the limiter's own strategy, for other storages (several round trips)."""
    windows = []
    for item in items:
        allowed = strategy.hit(item, *identifiers)
        stats = strategy.get_window_stats(item, *identifiers)
        windows.append(Window(item, int(stats.remaining) if allowed else -1, int(stats.reset_time + 1)))
        if not allowed:
            break
    return windows


def _script(name: str, source: str):
    """`source` registered on the limiter's storage connection, once per app and storage."""
    storage = limiter.storage
    registered = current_app.extensions.get(name)
    if registered is None or registered[0] is not storage:
        registered = current_app.extensions[name] = (storage, storage.get_connection().register_script(source))
    return registered[1]
