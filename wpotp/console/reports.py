"""Reports (a chart of sends by status, the rates, countries, CSV export) and rate-limit status.

Both only shape what wpotp/reports computes; `GET /v1/reports` and `GET /v1/rate-limits`
answer from the same functions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import Response, current_app, render_template, request, url_for

from ..errors import InvalidPhone
from ..models import App
from ..otp.phones import normalize_recipient
from ..reports.limits import api_limit_rule, rate_limit_status, top_recipients
from ..reports.usage import INTERVALS, MAX_SPAN, check_range, default_range, usage_csv, usage_report
from ..util import utcnow
from . import bp
from .auth import current_console_app
from .otps import parse_day_or_time

TOP_WINDOWS = (("last 15 minutes", timedelta(minutes=15)), ("last 24 hours", timedelta(days=1)))


@dataclass
class ReportRange:
    """The range picker's values as typed (`args`) and as the report takes them."""

    args: dict[str, str]
    interval: str = "day"
    start: datetime | None = None
    end: datetime | None = None
    errors: list[str] = field(default_factory=list)


def parse_range(source) -> ReportRange:
    """`from`/`to` as dates (both days included) or ISO times, UTC; the last 7 days by default."""
    args = {name: source.get(name, "").strip()[:40] for name in ("from", "to", "interval")}
    picked = ReportRange({k: v for k, v in args.items() if v})
    picked.interval = args["interval"] or "day"
    if picked.interval not in INTERVALS:
        picked.errors.append("The interval must be day or hour.")
        picked.interval = "day"
    start, end = default_range(picked.interval)
    try:
        if args["from"]:
            start = parse_day_or_time(args["from"], end=False)
        if args["to"]:
            end = parse_day_or_time(args["to"], end=True)
        check_range(start, end, picked.interval)
    except ValueError as exc:
        picked.errors.append(_explain(exc, picked.interval))
    picked.start, picked.end = start, end
    return picked


def _explain(exc: ValueError, interval: str) -> str:
    text = str(exc)
    if "after" in text:
        return "The end of the range must come after its start."
    if "at most" in text:
        return f"A report by {interval} covers at most {MAX_SPAN[interval].days} days."
    return "Dates are YYYY-MM-DD (or an ISO-8601 time), in UTC."


def _form_values(picked: ReportRange) -> dict[str, str]:
    """What the picker shows: the dates asked for, or those of the default range."""
    last_day = (picked.end - timedelta(microseconds=1)).date() if picked.end else None
    return {
        "from": picked.args.get("from") or (picked.start.date().isoformat() if picked.start else ""),
        "to": picked.args.get("to") or (last_day.isoformat() if last_day else ""),
        "interval": picked.interval,
    }


@bp.get("/reports")
def reports():
    app = current_console_app()
    picked = parse_range(request.args)
    report = None if picked.errors else usage_report(app.id, picked.start, picked.end, picked.interval)
    values = _form_values(picked)
    return render_template(
        "console/reports.html", report=report, picked=picked, values=values, intervals=list(INTERVALS),
        csv_url=url_for("console.reports_csv", **values),
    ), 400 if picked.errors else 200


@bp.get("/reports.csv")
def reports_csv():
    app = current_console_app()
    picked = parse_range(request.args)
    if picked.errors:
        return Response(" ".join(picked.errors) + "\n", status=400, mimetype="text/plain")
    report = usage_report(app.id, picked.start, picked.end, picked.interval)
    last_day = (picked.end - timedelta(microseconds=1)).date()
    name = f"wpotp-{_slug(app.name)}-{picked.start.date()}-{last_day}-{picked.interval}.csv"
    return Response(usage_csv(report), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:40] or "app"


@bp.get("/rate-limits")
def rate_limits():
    app = current_console_app()
    raw = request.args.get("recipient", "").strip()[:40]
    recipient, error, recipient_limits = None, None, None
    if raw:
        try:
            recipient = normalize_recipient(raw)[0]
        except InvalidPhone:
            error = "Expected an E.164 number, like +905551112233."
        else:
            recipient_limits = [s for s in rate_limit_status(app, recipient) if s["name"] == "recipient"]
    now = utcnow()
    top = [(label, top_recipients(app.id, now - window)) for label, window in TOP_WINDOWS]
    return render_template(
        "console/rate_limits.html", limits=rate_limit_status(app), rules=limit_rules(app), top=top, searched=raw,
        recipient=recipient, recipient_limits=recipient_limits, error=error,
    ), 400 if error else 200


def limit_rules(app: App) -> dict[str, str]:
    """The rules in force for `app`, as written in its settings or the global configuration."""
    cfg = current_app.config
    cap = app.daily_send_cap or cfg["APP_DAILY_SEND_CAP"]
    return {"api": api_limit_rule(app), "recipient": app.recipient_rate_limit or cfg["RECIPIENT_RATE_LIMIT"],
            "app_daily": f"{cap} per day", "login": cfg["LOGIN_RATE_LIMIT"]}
