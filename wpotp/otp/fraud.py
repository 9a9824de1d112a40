"""The fraud guard against SMS pumping (toll fraud), per app (docs/fraud.md).

`guard(app, recipient, country, channel)` runs on every send and resend, beside the app's
country allow-list, and either returns or raises FraudBlocked (403). In order:

1. geo permissions: the app's allow-list and deny-list for the channel (no Redis);
2. an active automatic block of the recipient's country or prefix;
3. velocity: sends to the country and to the prefix in a fixed window (FRAUD_*_LIMIT);
4. the conversion monitor: sends to the country or prefix that no verify followed, within
   FRAUD_CONVERSION_WINDOW. Past FRAUD_UNVERIFIED_COUNTRY or _PREFIX the country or prefix is blocked
   for FRAUD_BLOCK_SECONDS (pumping's pattern: many sends, no verifies).

Steps 2-4 are one Lua script: one round trip tests every counter and, only when the send
passes, counts it in all of them (a refused send counts nowhere).

The conversion monitor's Redis counters count every send in the window, verified or not: the
verify path stays as it is (one Redis round trip). When one reaches its threshold, the
database says how many of the window's sends to that country or prefix are still unverified
(a verify success is a conversion: its OTP's `verified_at`). At or past the threshold, the
country or prefix is blocked; below it, the counter is set to that number and counting goes
on. So the database is asked once per (threshold - unverified) sends, never per send.

A prefix is the country calling code and the first FRAUD_PREFIX_DIGITS digits of the national
number: +90 55511 for +905551112233 with 5 digits (the default).

A refusal is recorded as an `otp.blocked` event with no OTP (otp_id NULL), committed on its
own: no OTP row is written. It is listed by GET /v1/logs and the console's Fraud guard page,
and sends no webhook (SPEC §6's payload is an OTP's; docs/fraud.md).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import redis
from flask import current_app
from limits import RateLimitItem, parse
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from ..errors import FraudBlocked
from ..extensions import db, limiter, redis_client
from ..models import App, Event, Otp
from ..redis_url import single_server_storage
from ..settings import settings
from ..util import new_id, utcnow

log = logging.getLogger("wpotp.fraud")

CHANNELS = ("whatsapp", "sms", "auto")
# "auto" starts on WhatsApp: it is checked against WhatsApp's lists; its SMS fallback calls the
# guard again with "sms".
_LISTS = {"whatsapp": ("fraud_allow_whatsapp", "fraud_deny_whatsapp"),
          "sms": ("fraud_allow_sms", "fraud_deny_sms"),
          "auto": ("fraud_allow_whatsapp", "fraud_deny_whatsapp")}

# Reasons (details.reason, the event's data.reason).
GEO_DENIED = "geo_denied"
GEO_NOT_ALLOWED = "geo_not_allowed"
REASONS = {1: "{kind}_blocked", 2: "{kind}_velocity", 3: "{kind}_low_conversion"}
EXPLAIN = {
    GEO_DENIED: "The recipient's country is on this app's deny-list for {channel}.",
    GEO_NOT_ALLOWED: "The recipient's country is not on this app's allow-list for {channel}.",
    "country_blocked": "Sends to this country are blocked for now: too many sends without a verify.",
    "prefix_blocked": "Sends to this number range are blocked for now: too many sends without a verify.",
    "country_velocity": "Too many sends to this country; retry later.",
    "prefix_velocity": "Too many sends to this number range; retry later.",
    "country_low_conversion": "Too many sends to this country without a verify: it is blocked for a while.",
    "prefix_low_conversion": "Too many sends to this number range without a verify: it is blocked for a while.",
}


@dataclass(frozen=True)
class Target:
    """What the counters of one send are keyed by."""
    country: str  # ISO region, or "ZZ" when the number has none
    prefix: str  # digits: calling code + the first national digits

    @property
    def prefix_label(self) -> str:
        return label_prefix(self.prefix)


def label_prefix(prefix: str) -> str:
    """`9055511` -> `+90 55511`, for people."""
    cc = calling_code(prefix)
    return f"+{cc} {prefix[len(cc):]}" if cc else f"+{prefix}"


def calling_code(digits: str) -> str:
    """The E.164 country calling code at the start of `digits` (codes are prefix-free)."""
    for n in (1, 2, 3):
        if int(digits[:n] or 0) in COUNTRY_CODE_TO_REGION_CODE:
            return digits[:n]
    return ""


def target_of(recipient: str, country: str | None) -> Target:
    digits = recipient.lstrip("+")
    cc = calling_code(digits)
    return Target(country or "ZZ", digits[:len(cc) + settings().fraud_prefix_digits])


# --- the app's effective settings ------------------------------------------------------------

@lru_cache(maxsize=512)
def regions(text: str) -> frozenset[str]:
    return frozenset(c.strip().upper() for c in (text or "").split(",") if c.strip())


@lru_cache(maxsize=256)
def _rule(text: str) -> RateLimitItem:
    return parse(text)


@dataclass(frozen=True)
class Thresholds:
    enabled: bool
    country_limit: RateLimitItem
    prefix_limit: RateLimitItem
    unverified_country: int
    unverified_prefix: int
    window: int
    block_seconds: int


def thresholds(app: App) -> Thresholds:
    cfg = settings()
    return Thresholds(
        enabled=cfg.fraud_guard if app.fraud_guard is None else bool(app.fraud_guard),
        country_limit=_rule(app.fraud_country_limit or cfg.fraud_country_limit),
        prefix_limit=_rule(app.fraud_prefix_limit or cfg.fraud_prefix_limit),
        unverified_country=app.fraud_unverified_country or cfg.fraud_unverified_country,
        unverified_prefix=app.fraud_unverified_prefix or cfg.fraud_unverified_prefix,
        window=cfg.fraud_conversion_window,
        block_seconds=app.fraud_block_seconds or cfg.fraud_block_seconds)


# --- Redis layout ------------------------------------------------------------------------------

def _key(app_id: str, kind: str, member: str) -> str:
    return f"wpotp:fraud:{app_id}:{kind}:{member}"


def index_key(app_id: str) -> str:
    """A sorted set of the app's blocks (`c:TR`, `p:9055511`), scored by when each ends."""
    return f"wpotp:fraud:{app_id}:blocks"


def _keys(app_id: str, t: Target) -> list[str]:
    c, p = f"c:{t.country}", f"p:{t.prefix}"
    return [_key(app_id, "block", c), _key(app_id, "block", p), _key(app_id, "sent", c), _key(app_id, "sent", p),
            _key(app_id, "unverified", c), _key(app_id, "unverified", p), index_key(app_id)]


# KEYS: block c, block p, sent c, sent p, unverified c, unverified p, index.
# ARGV: country limit, its window, prefix limit, its window, conversion window, block seconds, now,
#       index member c, index member p, unverified threshold c, unverified threshold p.
# Answers {0} (passed and counted), {1 blocked | 2 velocity, 1 country | 2 prefix, seconds left},
# or {4, 1 | 2}: that counter reached its threshold, ask the database (nothing counted).
_GUARD = """
for i = 1, 2 do
    if redis.call('exists', KEYS[i]) == 1 then
        return {1, i, redis.call('ttl', KEYS[i])}
    end
end
for i = 1, 2 do
    local sent = tonumber(redis.call('get', KEYS[i + 2]) or '0')
    if sent >= tonumber(ARGV[2 * i - 1]) then
        return {2, i, redis.call('ttl', KEYS[i + 2])}
    end
end
for i = 1, 2 do
    local unverified = tonumber(redis.call('get', KEYS[i + 4]) or '0')
    if unverified >= tonumber(ARGV[9 + i]) then
        return {4, i}
    end
end
for i = 3, 6 do
    local window = (i <= 4) and ARGV[2 * (i - 2)] or ARGV[5]
    if redis.call('incr', KEYS[i]) == 1 then
        redis.call('expire', KEYS[i], window)
    end
end
return {0}
"""

# KEYS: block, unverified counter, index. ARGV: block seconds, now, index member.
_BLOCK = """
redis.call('set', KEYS[1], 'low_conversion', 'EX', ARGV[1])
redis.call('zadd', KEYS[3], tonumber(ARGV[2]) + tonumber(ARGV[1]), ARGV[3])
redis.call('del', KEYS[2])
return 0
"""


def _conn() -> redis.Redis:
    """The send limits' Redis (RATELIMIT_STORAGE_URI): the guard's counters are rate limits too,
    and a send's checks then all fall before its commit, on the store they share."""
    storage = limiter.storage
    return storage.get_connection() if single_server_storage(storage) else redis_client.conn  # Sentinel: the master


def _script(name: str, source: str):
    """`source` registered on `_conn()`, once per app and connection."""
    conn = _conn()
    key = f"wpotp_fraud_{name}"
    registered = current_app.extensions.get(key)
    if registered is None or registered[0] is not conn:
        registered = current_app.extensions[key] = (conn, conn.register_script(source))
    return registered[1]


# --- the guard ---------------------------------------------------------------------------------

def guard(app: App, recipient: str, country: str | None, channel: str = "whatsapp") -> None:
    """Let this send through (and count it), or record why not and raise FraudBlocked.

    `recipient` is E.164 and `country` its region, as `normalize_recipient` answers them."""
    limits = thresholds(app)
    if not limits.enabled:
        return
    reason = _geo_refusal(app, country, channel)
    t = target_of(recipient, country)
    if reason:
        raise _refuse(app, recipient, t, channel, reason)
    args = [limits.country_limit.amount, limits.country_limit.get_expiry(), limits.prefix_limit.amount,
            limits.prefix_limit.get_expiry(), limits.window, limits.block_seconds, int(time.time()),
            f"c:{t.country}", f"p:{t.prefix}", limits.unverified_country, limits.unverified_prefix]
    keys = _keys(app.id, t)
    answer = _script("guard", _GUARD)(keys, args)
    if int(answer[0]) == 4:
        answer = _check_conversion(app, t, limits, keys, int(answer[1]))
        if answer is None:  # converting well: counted afresh from what the database says
            answer = _script("guard", _GUARD)(keys, args)
            if int(answer[0]) == 4:  # a burst of parallel sends got there first: let this one pass
                return
    if int(answer[0]):
        kind = "country" if int(answer[1]) == 1 else "prefix"
        reason = REASONS[int(answer[0])].format(kind=kind)
        raise _refuse(app, recipient, t, channel, reason, retry_after=max(1, int(answer[2])))


def _check_conversion(app: App, t: Target, limits: Thresholds, keys: list[str], which: int) -> list | None:
    """The counter `which` (1 country, 2 prefix) reached its threshold: block it if the database
    agrees (answers the script's refusal), else set the counter to the unverified sends."""
    country = which == 1
    threshold = limits.unverified_country if country else limits.unverified_prefix
    since = utcnow() - timedelta(seconds=limits.window)
    query = select(func.count()).select_from(Otp).where(Otp.app_id == app.id, Otp.created_at >= since,
                                                        Otp.verified_at.is_(None))
    if country:
        query = query.where(Otp.country.is_(None) if t.country == "ZZ" else Otp.country == t.country)
    else:
        query = query.where(Otp.recipient.like(f"+{t.prefix}%"))
    unverified = db.session.scalar(query) or 0
    db.session.rollback()  # a read: end its transaction before the send's own
    member = f"c:{t.country}" if country else f"p:{t.prefix}"
    if unverified >= threshold:
        _script("block", _BLOCK)([keys[which - 1], keys[which + 3], keys[6]],
                                 [limits.block_seconds, int(time.time()), member])
        return [3, which, limits.block_seconds]
    _conn().set(keys[which + 3], unverified, ex=limits.window)
    return None


def _geo_refusal(app: App, country: str | None, channel: str) -> str | None:
    allow_field, deny_field = _LISTS.get(channel, _LISTS["whatsapp"])
    region = country or "ZZ"
    if region in regions(getattr(app, deny_field) or ""):
        return GEO_DENIED
    allowed = regions(getattr(app, allow_field) or "")
    if allowed and region not in allowed:
        return GEO_NOT_ALLOWED
    return None


def mask(recipient: str, t: Target) -> str:
    """The recipient as the refusal record keeps it: its prefix and last two digits."""
    digits = recipient.lstrip("+")
    hidden = max(0, len(digits) - len(t.prefix) - 2)
    return f"+{t.prefix}{'*' * hidden}{digits[len(t.prefix) + hidden:]}"


def _refuse(app: App, recipient: str, t: Target, channel: str, reason: str,
            retry_after: int | None = None) -> FraudBlocked:
    """Record the refusal (an `otp.blocked` event, no OTP) and answer the error to raise."""
    details: dict = {"reason": reason, "country": t.country, "channel": channel}
    if reason.startswith("prefix_"):
        details["prefix"] = t.prefix_label
    headers = {}
    if retry_after:
        details["retryAfter"] = retry_after
        headers["Retry-After"] = str(retry_after)
    data = {**details, "recipient": mask(recipient, t)}
    try:
        db.session.add(Event(id=new_id("evt"), app_id=app.id, otp_id=None, type="otp.blocked", data=data,
                             created_at=utcnow()))
        db.session.commit()
    except SQLAlchemyError:  # the refusal stands; only its record is lost
        db.session.rollback()
        log.warning("could not record a fraud-guard refusal (%s, %s)", reason, t.country)
    log.info("fraud guard refused a send", extra={"reason": reason, "country": t.country, "app_id": app.id})
    message = EXPLAIN.get(reason, FraudBlocked.message).format(channel=channel)
    return FraudBlocked(message, details=details, headers=headers)


# --- blocks, for the console ---------------------------------------------------------------------

@dataclass(frozen=True)
class Block:
    member: str  # "c:TR" or "p:9055511"
    until: float  # epoch seconds

    @property
    def until_at(self) -> datetime:
        """When it ends, naive UTC like the tables' times."""
        return datetime.fromtimestamp(self.until, UTC).replace(tzinfo=None)

    @property
    def kind(self) -> str:
        return "country" if self.member.startswith("c:") else "prefix"

    @property
    def label(self) -> str:
        value = self.member[2:]
        return value if self.kind == "country" else label_prefix(value)


def current_blocks(app: App) -> list[Block]:
    """The app's blocks in force, soonest to end first (the index drops the ended ones here)."""
    now = time.time()
    with _conn().pipeline() as pipe:
        pipe.zremrangebyscore(index_key(app.id), "-inf", now)
        pipe.zrange(index_key(app.id), 0, 199, withscores=True)
        _, rows = pipe.execute()
    blocks = [Block(m.decode() if isinstance(m, bytes) else m, score) for m, score in rows]
    if not blocks:
        return []
    with _conn().pipeline() as pipe:
        for b in blocks:
            pipe.exists(_key(app.id, "block", b.member))
        alive = pipe.execute()
    return [b for b, ok in zip(blocks, alive, strict=True) if ok]


def unblock(app: App, member: str) -> bool:
    """Lift a block (and forget its unverified count, so the next send does not block it again).
    Returns whether there was one."""
    if not (member.startswith(("c:", "p:")) and 2 < len(member) <= 20 and member[2:].isalnum()):
        return False
    with _conn().pipeline() as pipe:
        pipe.delete(_key(app.id, "block", member))
        pipe.delete(_key(app.id, "unverified", member))
        pipe.zrem(index_key(app.id), member)
        deleted, _forgotten, _removed = pipe.execute()
    return bool(deleted)
