"""The live OTP log, an OTP's timeline and the verify attempts (SPEC §10).

The log pages with the same keyset cursor as `GET /v1/otp` and polls, through htmx, a
partial that returns only the rows newer than the newest one shown, so new OTPs appear at
the top without a reload. Every page does a fixed number of queries, whatever it shows.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from flask import abort, current_app, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import and_, or_, select

from ..errors import InvalidPhone, ValidationError
from ..extensions import db
from ..i18n import zone_name
from ..models import Event, Otp, OtpStatus, SendAttempt, Template, VerifyAttempt, WebhookAttempt, WebhookDelivery
from ..otp.phones import normalize_recipient
from ..otp.queries import OtpFilter, decode_cursor, encode_cursor, filtered_otps, list_attempts, list_otps
from ..otp.service import OTP_ID
from ..util import parse_iso, utcnow
from . import bp
from .auth import current_console_app

PAGE_SIZE = 50
LIVE_BATCH = 100
WATCH_LIMIT = 200  # rows shown whose status a poll follows (static/js/otps.js MAX_WATCHED)
# A row is written with its created_at a moment before its transaction commits. The live poll
# leaves the newest second alone so a row that commits late is still picked up on a later poll
# instead of falling behind a newer row that was already shown.
LIVE_SETTLE = timedelta(seconds=1)
# Sorts before every real id, so (t, FLOOR_ID) as a cursor means "everything created after t".
FLOOR_ID = "otp_0"
FILTER_FIELDS = ("status", "recipient", "reference", "from", "to")
ATTEMPT_RESULTS = ("verified", "invalid_code", "too_many_attempts", "otp_expired", "otp_already_verified",
                   "otp_canceled")
# The webhooks pages' POST route that redelivers one delivery (by `delivery_id`), by either name.
REDELIVER_ENDPOINTS = ("console.webhook_redeliver", "console.redeliver_webhook")


@dataclass
class LogQuery:
    """The log's filters as typed (`args`, echoed in links and the form) and as parsed (`flt`)."""

    args: dict[str, str]
    flt: OtpFilter = field(default_factory=OtpFilter)
    errors: dict[str, str] = field(default_factory=dict)


def parse_log_query(source) -> LogQuery:
    args = {name: source.get(name, "").strip()[:128] for name in FILTER_FIELDS}
    args = {name: value for name, value in args.items() if value}
    query = LogQuery(args)
    status = args.get("status")
    if status:
        if status in OtpStatus.__members__:
            query.flt.status = status
        else:
            query.errors["status"] = _("unknown status")
    if args.get("recipient"):
        try:
            query.flt.recipient = normalize_recipient(args["recipient"])[0]
        except InvalidPhone:
            query.errors["recipient"] = _("expected an E.164 number, like +905551112233")
    query.flt.reference = args.get("reference") or None
    for name in ("from", "to"):
        if args.get(name):
            try:
                bound = parse_day_or_time(args[name], end=name == "to")
            except ValueError:
                query.errors[name] = _("expected a date (YYYY-MM-DD) or an ISO-8601 time")
                continue
            setattr(query.flt, "created_from" if name == "from" else "created_to", bound)
    return query


def parse_day_or_time(raw: str, end: bool) -> datetime:
    """A bound in UTC. A bare date is a day of the reader's time zone (the one the page shows
    times in); as the end bound it takes in that whole day."""
    value = parse_iso(raw)
    if len(raw) == 10:
        if end:
            value += timedelta(days=1)
        zone = ZoneInfo(zone_name())
        value = value.replace(tzinfo=zone).astimezone(UTC).replace(tzinfo=None)
    return value


def newer_otps(app_id: str, flt: OtpFilter, after: tuple[datetime, str] | None, until: datetime) -> list[Otp]:
    """Up to LIVE_BATCH rows newer than `after` and created by `until`, newest first: the oldest
    of them, so none is skipped when more wait."""
    query = filtered_otps(app_id, flt).where(Otp.created_at <= until)
    if after is not None:
        at, row_id = after
        query = query.where(Otp.created_at >= at,  # an index range bound (see otp/queries.py)
                            or_(Otp.created_at > at, and_(Otp.created_at == at, Otp.id > row_id)))
    rows = db.session.scalars(query.order_by(Otp.created_at, Otp.id).limit(LIVE_BATCH)).all()
    return list(reversed(rows))


def live_cursor(newest: Otp | None, settled: datetime) -> str:
    """Where the next poll starts: after the newest row shown, and never before `settled`.

    Every matching row created by `settled` has been looked at (shown on the page, or answered
    by a poll that was not cut short), so the next poll need not scan it again: with a rare
    filter on a big table the newest match may be months old, and each poll would otherwise
    walk every row since.
    """
    floor = (settled, FLOOR_ID)
    if newest is not None and (newest.created_at, newest.id) > floor:
        return encode_cursor(newest.created_at, newest.id)
    return encode_cursor(*floor)


@bp.get("/otps")
def otps():
    app = current_console_app()
    query = parse_log_query(request.args)
    cursor = request.args.get("cursor") or None
    first_page = cursor is None
    settled = utcnow() - LIVE_SETTLE
    flt = query.flt
    if first_page:  # the newest page holds back what the polls hold back, so they carry on where it stops
        bound = settled + timedelta(microseconds=1)  # created_to excludes; the polls take created_at <= settled
        flt = replace(flt, created_to=min(flt.created_to, bound) if flt.created_to else bound)
    rows, next_cursor = [], None
    if not query.errors:
        try:
            rows, next_cursor = list_otps(app.id, flt, PAGE_SIZE, cursor)
        except ValidationError:
            query.errors["cursor"] = _("this page link is out of date; start again from the newest")
    return render_template(
        "console/otps.html", rows=rows, query=query, statuses=list(OtpStatus), first_page=first_page,
        live=first_page and not query.errors, after=live_cursor(rows[0] if rows else None, settled),
        next_url=url_for("console.otps", **query.args, cursor=next_cursor) if next_cursor else None,
    ), 400 if query.errors else 200


@bp.get("/otps/rows")
def otp_rows():
    """The live log's poll: rows newer than `after` (empty: every matching row), newest first, and
    the moved `after` marker (out of band). A bad query answers 204: nothing to swap."""
    app = current_console_app()
    query = parse_log_query(request.args)
    if query.errors:
        return "", 204
    raw_after = request.args.get("after", "")
    try:
        after = decode_cursor(raw_after) if raw_after else None
    except ValidationError:
        return "", 204
    until = utcnow() - LIVE_SETTLE
    rows = newer_otps(app.id, query.flt, after, until)
    # A full batch may leave more rows: the next poll goes on from its newest, not from `until`.
    full = len(rows) == LIVE_BATCH
    marker = encode_cursor(rows[0].created_at, rows[0].id) if full else live_cursor(rows[0] if rows else None, until)
    changed = moved_otps(app.id, parse_shown(request.args.get("shown", "")))
    return render_template("console/_otp_rows.html", rows=rows, after=marker, oob=True, changed=changed)


def parse_shown(raw: str) -> dict[str, str]:
    """The poll's `shown`: "otp_id:STATUS:attempts,..." of the rows on the page that may still
    change -> {otp id: "STATUS:attempts"}. At most WATCH_LIMIT; anything malformed is skipped."""
    shown: dict[str, str] = {}
    for item in raw[:WATCH_LIMIT * 64].split(","):
        otp_id, _, state = item.partition(":")
        if OTP_ID.match(otp_id) and len(state) <= 24:
            shown[otp_id] = state
        if len(shown) >= WATCH_LIMIT:
            break
    return shown


def moved_otps(app_id: str, shown: dict[str, str]) -> list[Otp]:
    """The rows of `shown` (this app's only) whose status or attempts differ from what the page
    shows: one query, whatever their number (none when nothing is watched)."""
    if not shown:
        return []
    rows = db.session.scalars(select(Otp).where(Otp.app_id == app_id, Otp.id.in_(list(shown)))).all()
    return [otp for otp in rows if f"{otp.status}:{otp.attempts}" != shown[otp.id]]


@bp.get("/otps/<otp_id>")
def otp_detail(otp_id: str):
    app = current_console_app()
    otp = db.session.get(Otp, otp_id) if OTP_ID.match(otp_id) else None
    if otp is None or otp.app_id != app.id:
        abort(404)
    events = db.session.scalars(select(Event).where(Event.otp_id == otp.id)
                                .order_by(Event.created_at, Event.id)).all()
    sends = db.session.scalars(select(SendAttempt).where(SendAttempt.otp_id == otp.id)
                               .order_by(SendAttempt.created_at, SendAttempt.id)).all()
    return render_template(
        "console/otp_detail.html", otp=otp, events=events, sends=sends, attempts=list_attempts(otp.id),
        template=db.session.get(Template, otp.template_id), deliveries=webhook_deliveries(events),
        event_types={e.id: e.type for e in events},
        redeliver_endpoint=next((e for e in REDELIVER_ENDPOINTS if e in current_app.view_functions), None),
    )


def webhook_deliveries(events: list[Event]) -> list[tuple[WebhookDelivery, list[WebhookAttempt]]]:
    """Every delivery of these events, oldest first, each with its attempts in order (two queries)."""
    if not events:
        return []
    deliveries = db.session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.event_id.in_([e.id for e in events]))
        .order_by(WebhookDelivery.created_at, WebhookDelivery.id)).all()
    if not deliveries:
        return []
    by_delivery: dict[str, list[WebhookAttempt]] = {d.id: [] for d in deliveries}
    for attempt in db.session.scalars(
            select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(list(by_delivery)))
            .order_by(WebhookAttempt.number, WebhookAttempt.id)):
        by_delivery[attempt.delivery_id].append(attempt)
    return [(d, by_delivery[d.id]) for d in deliveries]


# --- attempts across the app ---------------------------------------------------------------------

def encode_attempt_cursor(attempt: VerifyAttempt) -> str:
    raw = f"{attempt.created_at.isoformat()}|{attempt.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_attempt_cursor(cursor: str) -> tuple[datetime, int]:
    """Raises ValueError for anything this page did not hand out."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise ValueError("not a cursor") from None
    stamp, _, row_id = raw.partition("|")
    return parse_iso(stamp), int(row_id)


def list_app_attempts(app_id: str, result: str | None, limit: int,
                      cursor: str | None) -> tuple[list[VerifyAttempt], str | None]:
    """Newest first, keyset-paged on (created_at, id): ix_verify_attempts_app_created serves it."""
    query = select(VerifyAttempt).where(VerifyAttempt.app_id == app_id)
    if result:
        query = query.where(VerifyAttempt.result == result)
    if cursor:
        at, row_id = decode_attempt_cursor(cursor)
        query = query.where(or_(VerifyAttempt.created_at < at,
                                and_(VerifyAttempt.created_at == at, VerifyAttempt.id < row_id)))
    rows = db.session.scalars(query.order_by(VerifyAttempt.created_at.desc(), VerifyAttempt.id.desc())
                              .limit(limit + 1)).all()
    next_cursor = encode_attempt_cursor(rows[limit - 1]) if len(rows) > limit else None
    return list(rows[:limit]), next_cursor


@bp.get("/attempts")
def attempts():
    app = current_console_app()
    result = request.args.get("result", "").strip()
    error = None
    if result and result not in ATTEMPT_RESULTS:
        error, result = _("unknown result"), ""
    rows, next_cursor = [], None
    try:
        rows, next_cursor = list_app_attempts(app.id, result or None, PAGE_SIZE, request.args.get("cursor") or None)
    except ValueError:
        error = _("this page link is out of date; start again from the newest")
    filters = {"result": result} if result else {}
    return render_template(
        "console/attempts.html", rows=rows, result=result, results=ATTEMPT_RESULTS, error=error,
        next_url=url_for("console.attempts", **filters, cursor=next_cursor) if next_cursor else None,
    ), 400 if error else 200
