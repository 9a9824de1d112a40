"""The request gate of /v1 and the dialects: the API key and the shared API budget (SPEC §8),
checked before the view runs, in one Redis round trip.

`gate(bp)` puts a blueprint behind it (/v1 in wpotp/api/__init__.py, each dialect in
wpotp/compat/__init__.py): `check_request` runs before its views and `rate_limit_headers` after.
The gate reads the presented key's row (one indexed query: revocation holds
on the very next request), counts the request against the budget of the key's app (or the
default), and in the same Redis script reads the configuration epoch the per-process cache is
checked against (wpotp/cache.py), so the rest of the request asks Redis nothing for it.

The window it answers (limit, remaining, reset time) is kept for the RateLimit-* headers: should
Redis fail at the check, the answer is a 503 and nothing was written; after the view has
committed, nothing may turn its answer into an error, so the headers are written from what was
read then, never from a second Redis call.
"""

from __future__ import annotations

import time

from flask import Blueprint, Response, current_app, g

from ..cache import EPOCH_KEY, note_epoch
from ..errors import RateLimited
from ..extensions import client_ip, limiter, limiter_skips, redis_client
from ..otp.limits import Window, budget_identifiers, hit_budget
from ..redis_url import server_identity
from .auth import api_limit_value, key_digest


def gate(bp: Blueprint) -> Blueprint:
    """Count every request routed to `bp` against the shared API budget, with RateLimit-* headers
    on every answer. Flask-Limiter's own middleware is told to skip `bp` (extensions.limiter_skips):
    nothing of its decorators applies there, and it does not even resolve limits for its requests."""
    limiter_skips(bp)
    bp.before_request(check_request)  # before the view writes anything
    bp.after_request(rate_limit_headers)
    return bp


def check_request() -> None:
    """Count this request against its API budget; a 429 RATE_LIMITED when it is spent.

    A Redis failure propagates as the outage it is (503), before the view writes anything."""
    windows, epoch = hit_budget(api_limit_value(), budget_identifiers(key_digest(), client_ip()),
                                EPOCH_KEY if _epoch_rides() else None)
    if epoch is not None:
        note_epoch(epoch)
    window = windows[-1] if windows[-1].breached else windows[0]  # the breached rule, else the smallest
    g.rate_window = window
    if window.breached:
        raise RateLimited(str(window.item), int(window.reset_at - time.time()) + 1)


def _epoch_rides() -> bool:
    """Whether the limiter's storage is the Redis server and database the cache's epoch lives in
    (RATELIMIT_STORAGE_URI defaults to REDIS_URL); decided once per app and storage."""
    storage = limiter.storage
    known = current_app.extensions.get("wpotp_epoch_rides")
    if known is None or known[0] is not storage:
        connection = getattr(storage, "get_connection", None)
        rides = connection is not None and _server(connection()) == _server(redis_client.conn)
        known = current_app.extensions["wpotp_epoch_rides"] = (storage, rides)
    return known[1]


def _server(conn) -> tuple:
    return server_identity(conn)  # a Sentinel pool names its service and sentinels, not a host (redis_url.py)


def measure_window() -> Window | None:
    """The budget window this request was counted in (None before the gate ran, or off /v1)."""
    return g.get("rate_window")


def rate_limit_headers(response: Response) -> Response:
    """RateLimit-Limit / -Remaining / -Reset (seconds until the window resets) on every answer
    the gate counted, from the window it read."""
    window = g.get("rate_window")
    if window is None:
        return response
    response.headers["RateLimit-Limit"] = str(window.item.amount)
    response.headers["RateLimit-Remaining"] = str(max(0, window.remaining))
    response.headers["RateLimit-Reset"] = str(max(0, int(window.reset_at - time.time())))
    return response
