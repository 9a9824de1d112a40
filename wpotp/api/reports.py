"""/v1/reports and /v1/rate-limits (SPEC §5): the JSON twins of the console's pages."""

from __future__ import annotations

from flask import jsonify
from pydantic import Field

from ..errors import InvalidPhone, ValidationError
from ..extensions import client_ip
from ..models import App
from ..otp.phones import normalize_recipient
from ..reports.limits import rate_limit_status
from ..reports.usage import default_range, usage_report
from ..util import parse_iso, utcnow
from . import bp
from .auth import key_digest, require_key
from .schemas import Strict, Text, parse_query


class ReportQuery(Strict):
    model_config = Strict.model_config | {"strict": False}
    from_: Text | None = Field(None, alias="from", max_length=40)
    to: Text | None = Field(None, max_length=40)
    interval: str = Field("day", pattern=r"^(day|hour)$")


class RateLimitQuery(Strict):
    model_config = Strict.model_config | {"strict": False}
    recipient: Text | None = Field(None, max_length=32)


def _invalid(field: str, problem: str) -> ValidationError:
    return ValidationError(f"Invalid query parameters: {field}.", details={"fields": {field: problem}})


@bp.get("/reports")
def reports():
    _key, app = require_key()
    return jsonify(report_for(app.id, parse_query(ReportQuery)))


def report_for(app_id: str, q: ReportQuery) -> dict:
    """The usage report for a parsed query (shared with the compat dialects' reports).

    `from` (inclusive) and `to` (exclusive) are ISO-8601 (UTC unless they carry an offset).
    Defaults: `to` now, `from` the start of the 7th day (24th hour) back, so 7 (24) buckets."""
    times = {}
    for name, raw in (("from", q.from_), ("to", q.to)):
        if raw:
            try:
                times[name] = parse_iso(raw)
            except ValueError:
                raise _invalid(name, "expected an ISO-8601 timestamp") from None
    end = times.get("to") or utcnow()
    try:
        start = times.get("from") or default_range(q.interval, end)[0]
    except OverflowError:  # 7 days (24 hours) before `to` is before the year 1
        raise _invalid("to", "too early: the default range would start before the year 1") from None
    if end <= start:
        raise _invalid("to" if "to" in times else "from", "must be after from")
    span = {"day": (90, "at most 90 days by day"), "hour": (7, "at most 7 days by hour")}[q.interval]
    if (end - start).total_seconds() > span[0] * 86400:
        raise _invalid("from" if "from" in times else "to", span[1])
    try:
        return usage_report(app_id, start, end, q.interval)
    except ValueError as exc:  # check_range's verdict, should the checks above ever drift from it
        raise _invalid("from", str(exc)) from None
    except OverflowError:  # whole buckets around the range reach past the year 9999 (or before 1)
        raise _invalid("to" if "to" in times else "from", "too close to the end of the calendar") from None


@bp.get("/rate-limits")
def rate_limits():
    _key, app = require_key()
    return jsonify({"data": rate_limits_for(app, parse_query(RateLimitQuery))})


def rate_limits_for(app: App, q: RateLimitQuery) -> list[dict]:
    """Each limit that applies to the caller: its API request limit (this key from this IP), the
    app's daily send cap and, with `recipient`, that number's send limits. Shared with the compat
    dialects, whose requests spend the same budgets."""
    recipient = None
    if q.recipient is not None:
        try:
            recipient = normalize_recipient(q.recipient)[0]
        except InvalidPhone as exc:
            raise InvalidPhone(details={"fields": {"recipient": "expected E.164, like +905551112233"},
                                        **exc.details}) from None
    return rate_limit_status(app, recipient, key_digest(), client_ip())
