"""The WHATSAPP_MPS cap, held in Redis so it binds every worker process together.

A GCRA ("virtual scheduling") limiter: each send reserves the next free slot, slots are
1/MPS seconds apart, and the caller sleeps until its slot. Redis's own clock is used, so
workers on different hosts agree. Sends therefore start at most MPS times in any second.
"""

from __future__ import annotations

import time

from flask import current_app

from ..extensions import redis_client

KEY = "wpotp:throttle:{name}"

# Returns how many microseconds the caller must wait before its slot.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.floor((next_tat - now) / 1000) + 1000)
return {string.format('%.0f', tat), string.format('%.0f', now)}
"""


def reserve_slot(name: str, per_second: int) -> tuple[int, int]:
    """Reserve the next send slot: (slot time, Redis time now), both in microseconds."""
    script = current_app.extensions.get("wpotp_throttle_script")
    if script is None:
        script = current_app.extensions["wpotp_throttle_script"] = redis_client.conn.register_script(_RESERVE)
    slot, now = script(keys=[KEY.format(name=name)], args=[int(1_000_000 / per_second)])
    return int(slot), int(now)


def wait_for_slot(name: str, per_second: int | None = None) -> float:
    """Block until this process may start one send; returns the seconds waited."""
    slot, now = reserve_slot(name, per_second or current_app.config["WHATSAPP_MPS"])
    wait = (slot - now) / 1_000_000
    if wait > 0:
        time.sleep(wait)
    return wait
