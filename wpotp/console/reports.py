"""Reports (a chart of sends by status, the rates, countries, CSV export) and rate-limit status.

Both only shape what wpotp/reports computes; `GET /v1/reports` and `GET /v1/rate-limits`
answer from the same functions. Two things are the console's own: day buckets follow the
installation's time zone (CONSOLE_TIMEZONE; wpotp/reports counts UTC days, so a local day is
summed from UTC hours), and the page's delivery rate counts the OTPs that failed before a
provider took them against it, so it agrees with the failures shown beside it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from flask import Response, current_app, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ..errors import InvalidPhone
from ..i18n import app_zone, status_label
from ..models import App, OtpStatus
from ..otp.phones import normalize_recipient
from ..reports.limits import api_limit_rule, rate_limit_status, top_recipients
from ..reports.usage import (
    INTERVALS,
    MAX_SPAN,
    check_range,
    usage_csv,
    usage_report,
)
from ..util import iso, parse_iso, utcnow
from . import bp
from .auth import current_console_app

TOP_WINDOWS = ((_l("Last 15 minutes"), timedelta(minutes=15)), (_l("Last 24 hours"), timedelta(days=1)))
INTERVAL_LABELS = {"day": _l("day"), "hour": _l("hour")}


@dataclass
class ReportRange:
    """The range picker's values as typed (`args`) and as the report takes them (naive UTC)."""

    args: dict[str, str]
    interval: str = "day"
    start: datetime | None = None
    end: datetime | None = None
    errors: list[str] = field(default_factory=list)


def to_utc(local: datetime, zone: ZoneInfo) -> datetime:
    """A naive wall-clock time in `zone` -> naive UTC."""
    return local.replace(tzinfo=zone).astimezone(UTC).replace(tzinfo=None)


def to_local(utc: datetime, zone: ZoneInfo) -> datetime:
    """Naive UTC -> an aware time in `zone`."""
    return utc.replace(tzinfo=UTC).astimezone(zone)


def parse_bound(raw: str, end: bool, zone: ZoneInfo) -> datetime:
    """A bare date is a day in `zone` (the end bound takes in that whole day); an ISO time is
    read as written (UTC when it names no offset)."""
    if len(raw) == 10:
        day = datetime.strptime(raw, "%Y-%m-%d")
        return to_utc(day + timedelta(days=1) if end else day, zone)
    return parse_iso(raw)


def default_local_range(interval: str, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The last 7 days of `zone` (today included) by day, the last 24 whole hours by hour."""
    now = utcnow()
    if interval == "hour":
        return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=23), now
    today = to_local(now, zone).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
    return to_utc(today - timedelta(days=6), zone), now


def parse_range(source) -> ReportRange:
    """`from`/`to` as dates (both days included, in CONSOLE_TIMEZONE) or ISO times; the last 7 days by default."""
    zone = app_zone()
    args = {name: source.get(name, "").strip()[:40] for name in ("from", "to", "interval")}
    picked = ReportRange({k: v for k, v in args.items() if v})
    picked.interval = args["interval"] or "day"
    if picked.interval not in INTERVALS:
        picked.errors.append(_("The interval must be day or hour."))
        picked.interval = "day"
    start, end = default_local_range(picked.interval, zone)
    try:
        if args["from"]:
            start = parse_bound(args["from"], False, zone)
        if args["to"]:
            end = parse_bound(args["to"], True, zone)
        check_range(start, end, picked.interval)
    except ValueError as exc:
        picked.errors.append(_explain(exc, picked.interval))
    picked.start, picked.end = start, end
    return picked


def _explain(exc: ValueError, interval: str) -> str:
    text = str(exc)
    if "after" in text:
        return _("The end of the range must come after its start.")
    if "at most" in text:
        if interval == "hour":
            return _("A report by hour covers at most %(days)s days.", days=MAX_SPAN[interval].days)
        return _("A report by day covers at most %(days)s days.", days=MAX_SPAN[interval].days)
    return _("Dates are YYYY-MM-DD (or an ISO-8601 time).")


def _form_values(picked: ReportRange) -> dict[str, str]:
    """What the picker shows: the dates asked for, or those of the default range (in the app's zone)."""
    zone = app_zone()
    first = to_local(picked.start, zone).date() if picked.start else None
    last = to_local(picked.end - timedelta(microseconds=1), zone).date() if picked.end else None
    return {
        "from": picked.args.get("from") or (first.isoformat() if first else ""),
        "to": picked.args.get("to") or (last.isoformat() if last else ""),
        "interval": picked.interval,
    }


# --- the report in the app's time zone ----------------------------------------------------------------

def zoned_report(app_id: str, start: datetime, end: datetime, interval: str, zone: ZoneInfo) -> dict:
    """usage_report, with each bucket's `label` in `zone` and, by day outside UTC, the buckets
    being the days of `zone` (summed from UTC hours, 7 days per call: a zone whose offset is not
    whole hours puts the half hour around midnight in the neighbouring day)."""
    report = usage_report(app_id, start, end, interval, delivery=True)
    if interval == "day" and _has_offset(zone, start, end):
        report["buckets"] = _local_days(app_id, start, end, zone)
    for bucket in report["buckets"]:
        at = to_local(parse_iso(bucket["start"]), zone) if "label" not in bucket else None
        if at is not None:
            bucket["label"] = at.strftime("%Y-%m-%d") if interval == "day" else at.strftime("%m-%d %H:%M")
    report["timezone"] = str(zone)
    return report


def _has_offset(zone: ZoneInfo, start: datetime, end: datetime) -> bool:
    return any(to_local(t, zone).utcoffset() != timedelta(0) for t in (start, end))


def _local_days(app_id: str, start: datetime, end: datetime, zone: ZoneInfo) -> list[dict]:
    days: dict[str, dict] = {}
    at = start
    while at < end:
        upto = min(end, at + MAX_SPAN["hour"])
        for bucket in usage_report(app_id, at, upto, "hour")["buckets"]:
            local = to_local(parse_iso(bucket["start"]), zone)
            key = local.strftime("%Y-%m-%d")
            slot = days.setdefault(key, {"start": iso(to_utc(datetime.strptime(key, "%Y-%m-%d"), zone)),
                                         "label": key})
            _add_counts(slot, bucket)
        at = upto
    return list(days.values())


def _add_counts(into: dict, bucket: dict) -> None:
    """Add a bucket's counts into `into`, whatever their nesting ("total", "byStatus", and any
    other split wpotp/reports gives a bucket, such as per channel); its start and label stay."""
    for name, value in bucket.items():
        if name in ("start", "label"):
            continue
        if isinstance(value, dict):
            _add_counts(into.setdefault(name, {}), value)
        elif isinstance(value, int) and not isinstance(value, bool):  # counts; a rate would not add up
            into[name] = into.get(name, 0) + value


@bp.get("/reports")
def reports():
    app = current_console_app()
    picked = parse_range(request.args)
    zone = app_zone()
    report, figures = None, None
    if not picked.errors:
        report = zoned_report(app.id, picked.start, picked.end, picked.interval, zone)
        figures = report["delivery"]  # the same counts as the report's (rollups included): no second scan
    values = _form_values(picked)
    return render_template(
        "console/reports.html", report=report, figures=figures, picked=picked, values=values,
        intervals=list(INTERVALS), interval_labels=INTERVAL_LABELS, report_zone=str(zone),
        status_names={s.value: status_label(s.value) for s in OtpStatus},
        range_from=picked.start, range_to=picked.end,
        csv_url=url_for("console.reports_csv", **values),
    ), 400 if picked.errors else 200


@bp.get("/reports.csv")
def reports_csv():
    app = current_console_app()
    picked = parse_range(request.args)
    if picked.errors:
        return Response(" ".join(picked.errors) + "\n", status=400, mimetype="text/plain")
    report = zoned_report(app.id, picked.start, picked.end, picked.interval, app_zone())
    values = _form_values(picked)
    name = f"wpotp-{_slug(app.name)}-{values['from']}-{values['to']}-{picked.interval}.csv"
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
            error = _("Expected an E.164 number, like +905551112233.")
        else:
            recipient_limits = [s for s in rate_limit_status(app, recipient) if s["name"] == "recipient"]
    now = utcnow()
    top = [(label, top_recipients(app.id, now - window)) for label, window in TOP_WINDOWS]
    shown = {r["recipient"] for _label, items in top for r in items} | ({recipient} if recipient else set())
    return render_template(
        "console/rate_limits.html", limits=rate_limit_status(app), rules=limit_rules(app), top=top, searched=raw,
        recipient=recipient, recipient_limits=recipient_limits, error=error, exhausted=exhausted(app, shown),
    ), 400 if error else 200


def exhausted(app: App, recipients: set[str]) -> set[str]:
    """Those of `recipients` with no send left under some per-recipient rule now (Redis reads only)."""
    return {r for r in recipients
            if any(s["remaining"] == 0 for s in rate_limit_status(app, r) if s["name"] == "recipient")}


def limit_rules(app: App) -> dict[str, str]:
    """The rules in force for `app`, as written in its settings or the global configuration."""
    cfg = current_app.config
    cap = app.daily_send_cap or cfg["APP_DAILY_SEND_CAP"]
    return {"api": api_limit_rule(app), "recipient": app.recipient_rate_limit or cfg["RECIPIENT_RATE_LIMIT"],
            "app_daily": f"{cap}/day", "login": cfg["LOGIN_RATE_LIMIT"]}
