"""The WHATSAPP_MPS cap, held in Redis so it binds every worker process together.

A sliding log of send start times: a send may start only while fewer than MPS sends started
in the last window, checked and recorded in one Lua call at the moment of dispatch, on
Redis's clock (so workers on different hosts agree). The window is 1 s plus a small margin,
so the jitter between dispatch and the request reaching Meta cannot push more than MPS
requests into any second at Meta's end.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from flask import current_app

from .. import metrics
from ..extensions import redis_client
from ..util import random_base62

KEY = "wpotp:throttle:{name}"
STOP_CHECK_EVERY = 0.1  # seconds between looks at a stop request while waiting for a slot

# Returns 0 when the send may start now (and records it), else microseconds to wait.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - window))
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], string.format('%.0f', now), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.floor(window / 1000) + 1000)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
"""


def try_take(name: str, per_second: int) -> float:
    """Take a send slot if one is free: 0.0 when taken, else the seconds until one may free up."""
    script = current_app.extensions.get("wpotp_throttle_script")
    if script is None:
        script = current_app.extensions["wpotp_throttle_script"] = redis_client.conn.register_script(_TAKE)
    # 1 s plus a margin (WHATSAPP_MPS_MARGIN_MS, 50 by default) for dispatch-to-arrival jitter.
    window_us = 1_000_000 + 1000 * current_app.config["WHATSAPP_MPS_MARGIN_MS"]
    wait_us = script(keys=[KEY.format(name=name)], args=[per_second, window_us, random_base62(12)])
    return int(wait_us) / 1_000_000


class SlotWaitStopped(Exception):
    """wait_for_slot gave up: the worker is stopping (no slot was taken, no send started)."""


def wait_for_slot(name: str, per_second: int | None = None, stopping: Callable[[], bool] | None = None) -> float:
    """Block until this process may start one send; returns the seconds waited.

    With `stopping` (a drain job's view of its worker's stop request), the wait is cut into
    slices of at most STOP_CHECK_EVERY seconds and raises SlotWaitStopped once it says so."""
    rate = per_second or current_app.config["WHATSAPP_MPS"]
    waited = 0.0
    while True:
        if stopping is not None and stopping():
            raise SlotWaitStopped()
        wait = try_take(name, rate)
        if wait <= 0:
            metrics.throttle_wait(name, waited)
            return waited
        # Waiters wake spread out a little, so they do not all ask Redis at the same instant.
        pause = wait + (hash(random_base62(4)) % 20) / 1000
        if stopping is not None:
            pause = min(pause, STOP_CHECK_EVERY)
        time.sleep(pause)
        waited += pause
