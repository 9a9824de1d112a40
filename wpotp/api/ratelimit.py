"""The RateLimit-* headers of /v1 and the dialects (SPEC §8), from the window the limiter checked.

The window (limit, remaining, reset time) is read from Redis once, when the request is checked,
before the view runs: should Redis fail then, the answer is a 503 and nothing was written. After
the view has committed, nothing may turn its answer into an error, so the headers are written
from what was read then, never from a second Redis call.
"""

from __future__ import annotations

import logging
import time
from typing import NamedTuple

from flask import Response, g

from ..extensions import limiter

log = logging.getLogger("wpotp.api")


class Window(NamedTuple):
    limit: int
    remaining: int
    reset_at: float  # epoch seconds


def read_window_at_check() -> None:
    """The before_request hook of every rate-limited blueprint: it runs right after the
    limiter's check and before the view; a Redis failure propagates as the outage it is (503)."""
    measure_window()


def measure_window() -> Window | None:
    """Read (once per request) the window of the limit this request was counted against."""
    if "rate_window" not in g:
        current = limiter.current_limit
        g.rate_window = None if current is None else \
            Window(current.limit.amount, max(0, current.remaining), current.reset_at)
    return g.rate_window


def rate_limit_headers(response: Response) -> Response:
    """RateLimit-Limit / -Remaining / -Reset (seconds until the window resets) on every answer,
    from the window read at check time. Left out (with a warning) when it could not be read."""
    window = g.get("rate_window")
    if window is None:
        if limiter.current_limit is not None:
            log.warning("RateLimit-* headers left out: the rate-limit window could not be read")
        return response
    response.headers["RateLimit-Limit"] = str(window.limit)
    response.headers["RateLimit-Remaining"] = str(window.remaining)
    response.headers["RateLimit-Reset"] = str(max(0, int(window.reset_at - time.time())))
    return response
