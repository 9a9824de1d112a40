"""Small helpers used everywhere: ids, UTC time, the API's timestamp format."""

from __future__ import annotations

import gc
import secrets
import string
from datetime import UTC, datetime

BASE62 = string.digits + string.ascii_letters


def random_base62(length: int) -> str:
    # One draw of random bytes, kept only below 248 (= 4 x 62) so every character is equally likely.
    out: list[str] = []
    while len(out) < length:
        out.extend(BASE62[b % 62] for b in secrets.token_bytes(length + 8) if b < 248)
    return "".join(out[:length])


def new_id(prefix: str, length: int = 20) -> str:
    """`otp_4kQ...`: a prefix that says what it is, and ~119 bits of randomness."""
    return f"{prefix}_{random_base62(length)}"


def utcnow() -> datetime:
    """Naive UTC, the form every timestamp column stores (SQLite keeps no zone)."""
    return datetime.now(UTC).replace(tzinfo=None)


def iso(value: datetime | None) -> str | None:
    """`2026-05-17T12:05:00.000Z`: UTC with milliseconds, as SPEC §5 shows."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    # The year by hand: strftime's %Y drops the leading zeros of years before 1000 on glibc.
    return f"{value.year:04d}-" + value.strftime("%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_iso(value: str) -> datetime:
    """Parse an ISO-8601 timestamp (or a date) into naive UTC. Raises ValueError, also for a
    time whose UTC value falls outside the calendar (0001-01-01T00:00:00+01:00)."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is not None:
        try:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:
            raise ValueError(f"{value!r} is outside the years 1-9999 in UTC") from None
    return parsed


def settle_heap() -> None:
    """Once a process has started (app built, modules imported): take every object alive now out
    of the garbage collector's reach (gc.freeze), so a full collection scans only what requests
    and jobs made since. Without it, a full collection in a busy worker or gunicorn process went
    through the whole start-up heap: pauses of 100-250 ms every few seconds under load
    (docs/performance.md).

    Also caps glibc's malloc arenas at two before the process starts its threads: by default
    each thread that meets contention gets an arena of its own (up to eight per core), and each
    keeps freed memory to itself, which a worker of 16 threads paid for in RSS."""
    gc.collect()
    gc.freeze()
    _cap_malloc_arenas(2)


def _cap_malloc_arenas(count: int) -> None:
    """mallopt(M_ARENA_MAX, count) where the C library is glibc; a no-op anywhere else, and
    when the operator set MALLOC_ARENA_MAX themselves (glibc reads it at start, and theirs wins)."""
    import contextlib
    import ctypes
    import os
    import platform

    if os.environ.get("MALLOC_ARENA_MAX") or platform.libc_ver()[0] != "glibc":
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(-8, count)  # -8 is M_ARENA_MAX in <malloc.h>
