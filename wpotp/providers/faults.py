"""Configuration faults seen by providers (a revoked token, a missing permission).

The last one per provider is kept in Redis for a day, so /readyz (and later the console)
can say what the operator has to fix, with no need to read worker logs.
"""

from __future__ import annotations

import json

from ..extensions import redis_client
from ..util import iso, utcnow

KEY = "wpotp:provider-fault:{name}"


def note_config_fault(provider: str, reason: str) -> None:
    redis_client.conn.set(KEY.format(name=provider), json.dumps({"reason": reason[:300], "at": iso(utcnow())}),
                          ex=86400)


def last_config_fault(provider: str) -> dict | None:
    raw = redis_client.conn.get(KEY.format(name=provider))
    return json.loads(raw) if raw else None
