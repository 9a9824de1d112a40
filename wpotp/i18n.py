"""The console's languages and time zones (issue 16, SPEC §12), with Flask-Babel.

Language: the signed-in user's own choice (`User.language`), else the one picked on the login
page (kept in the session), else the browser's `Accept-Language` (en or tr), else
`CONSOLE_LANGUAGE`, else English. Time zone: the user's own (`User.timezone`), else
`CONSOLE_TIMEZONE` (UTC by default). Times are stored and computed in naive UTC everywhere;
only the pages turn them into local time (with the UTC time in a tooltip).

The /v1 API never reads any of this: its error messages stay English (they are for developers),
and WhatsApp template texts carry their own languages.

Catalogues live in wpotp/translations/<lang>/LC_MESSAGES/messages.po (the source) and .mo (the
compiled file the server reads, committed; tests/console/test_i18n.py fails when it is stale).
Regenerate them with `make translations` (docs in README's console section).
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from babel import Locale
from babel.numbers import format_decimal as _format_decimal
from flask import Flask, current_app, has_request_context, request, session
from flask_babel import Babel, format_date, format_datetime, format_decimal, get_locale, get_timezone, ngettext
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from markupsafe import Markup

from config import CONSOLE_LANGUAGES, valid_timezone

TRANSLATIONS_DIR = Path(__file__).resolve().parent / "translations"
LANGUAGE_NAMES = {"en": "English", "tr": "Türkçe"}  # each in its own language, as a switch shows them
SESSION_LANGUAGE = "console_language"


def select_locale() -> str:
    if not has_request_context():
        return current_app.config.get("CONSOLE_LANGUAGE") or "en"
    user = current_user if current_user and current_user.is_authenticated else None
    if user is not None and user.language in CONSOLE_LANGUAGES:
        return user.language
    chosen = session.get(SESSION_LANGUAGE)
    if chosen in CONSOLE_LANGUAGES:
        return chosen
    from_browser = request.accept_languages.best_match(CONSOLE_LANGUAGES)
    return from_browser or current_app.config.get("CONSOLE_LANGUAGE") or "en"


def select_timezone() -> str:
    user = current_user if has_request_context() and current_user and current_user.is_authenticated else None
    if user is not None and user.timezone and valid_timezone(user.timezone):
        return user.timezone
    return current_app.config.get("CONSOLE_TIMEZONE") or "UTC"


def language() -> str:
    """The language of this request's pages: "en" or "tr"."""
    return str(get_locale() or "en")


def zone_name() -> str:
    """The IANA name of this request's time zone (e.g. Europe/Istanbul)."""
    return str(get_timezone())


def app_zone() -> zoneinfo.ZoneInfo:
    """The installation's time zone (CONSOLE_TIMEZONE): the reports' day buckets follow it."""
    return zoneinfo.ZoneInfo(current_app.config.get("CONSOLE_TIMEZONE") or "UTC")


def local_time(value: datetime | None, fmt: str = "medium") -> str:
    """A naive-UTC datetime in the user's zone and language; "" for None."""
    return format_datetime(value, fmt) if value else ""


def zoned_time(value: datetime | None, zone: str, fmt: str = "short") -> str:
    """A naive-UTC datetime in the named zone (not the user's: the reports' range is the installation's)."""
    if value is None:
        return ""
    from babel.dates import format_datetime as babel_datetime

    return babel_datetime(value.replace(tzinfo=UTC), fmt, tzinfo=zoneinfo.ZoneInfo(zone), locale=language())


def utc_label(value: datetime) -> str:
    """The same instant in UTC, for the tooltip: 2026-12-03 10:45:12 UTC."""
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def parse_utc(raw: str | None) -> datetime | None:
    """An ISO-8601 string as the API and the reports write them (…Z) -> naive UTC; None if empty or bad."""
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def format_number(value) -> str:
    return _format_decimal(value, locale=language())


def format_percent(value: float | None) -> str:
    """0.8765 -> "%87,6" in Turkish, "87.6 %" in English (one decimal)."""
    if value is None:
        return "—"
    from babel.numbers import format_percent as babel_percent

    lang = language()
    # English keeps the console's "30.0 %" (a space, as ISO 80000 writes it); others their own pattern.
    pattern = "#,##0.0 %" if lang == "en" else Locale.parse(lang).percent_formats[None].pattern.replace(
        "#,##0", "#,##0.0", 1)
    return babel_percent(value, format=pattern, locale=lang)


@lru_cache(maxsize=8)
def _territories(lang: str) -> dict[str, str]:
    return dict(Locale.parse(lang).territories)


def country_name(code: str | None) -> str:
    """ISO 3166 region code -> its name in the page's language ("TR" -> "Türkiye"); the code if unknown."""
    if not code:
        return ""
    return _territories(language()).get(code.upper(), code)


@lru_cache(maxsize=1)
def all_timezones() -> tuple[str, ...]:
    """The zone names a user may pick: the IANA database's, without the legacy aliases."""
    names = {n for n in zoneinfo.available_timezones() if "/" in n and not n.startswith(("Etc/", "SystemV/"))}
    return tuple(sorted(names | {"UTC"}))


# The words a status pill shows. The English keeps the product's own names (the API's statuses,
# the roles, key modes); other languages name them in words.
STATUS_LABELS = {
    "QUEUED": _l("QUEUED"), "SENT": _l("SENT"), "DELIVERED": _l("DELIVERED"), "READ": _l("READ"),
    "VERIFIED": _l("VERIFIED"), "FAILED": _l("FAILED"), "EXPIRED": _l("EXPIRED"), "CANCELED": _l("CANCELED"),
    "admin": _l("admin"), "viewer": _l("viewer"), "test": _l("test"), "live": _l("live"),
    "active": _l("active"), "revoked": _l("revoked"), "on": _l("on"), "off": _l("off"), "ok": _l("ok"),
    "failed": _l("failed"), "retry": _l("retry"), "pending": _l("pending"), "succeeded": _l("succeeded"),
    "given_up": _l("given_up"), "verified": _l("verified"), "invalid_code": _l("invalid_code"),
    "too_many_attempts": _l("too_many_attempts"), "otp_expired": _l("otp_expired"),
    "otp_already_verified": _l("otp_already_verified"), "otp_canceled": _l("otp_canceled"),
    "unknown": _l("unknown"), "anonymised": _l("anonymised"),
}


def status_label(status) -> str:
    """A status, role, mode or result in the page's language; anything else (an HTTP code) as it is."""
    key = str(status)
    return str(STATUS_LABELS[key]) if key in STATUS_LABELS else key


def _one_rule(amount: int, multiples: int, unit: str) -> str:
    n = format_number(amount)
    if multiples == 1:
        per = {"second": _l("%(n)s per second"), "minute": _l("%(n)s per minute"), "hour": _l("%(n)s per hour"),
               "day": _l("%(n)s per day"), "month": _l("%(n)s per month"), "year": _l("%(n)s per year")}
        return str(per[unit]) % {"n": n}
    every = {
        "second": ngettext("%(n)s per %(num)s second", "%(n)s per %(num)s seconds", multiples, n=n),
        "minute": ngettext("%(n)s per %(num)s minute", "%(n)s per %(num)s minutes", multiples, n=n),
        "hour": ngettext("%(n)s per %(num)s hour", "%(n)s per %(num)s hours", multiples, n=n),
        "day": ngettext("%(n)s per %(num)s day", "%(n)s per %(num)s days", multiples, n=n),
        "month": ngettext("%(n)s per %(num)s month", "%(n)s per %(num)s months", multiples, n=n),
        "year": ngettext("%(n)s per %(num)s year", "%(n)s per %(num)s years", multiples, n=n),
    }
    return every[unit]


def limit_words(rule: str | None) -> str:
    """A rate-limit rule in words of the page's language: "5/15minutes;10/day" -> "5 per 15 minutes,
    10 per day" ("15 dakikada 5, günde 10"). A rule that does not parse is shown as written."""
    if not rule:
        return ""
    from limits import parse_many

    try:
        items = parse_many(rule)
    except ValueError:
        return rule
    return ", ".join(_one_rule(item.amount, item.multiples, item.GRANULARITY.name) for item in items)


def init_babel(app: Flask) -> None:
    Babel(app, locale_selector=select_locale, timezone_selector=select_timezone,
          default_translation_directories=str(TRANSLATIONS_DIR))
    app.jinja_env.globals.update(
        local_time=local_time, zoned_time=zoned_time, utc_label=utc_label, parse_utc=parse_utc,
        format_number=format_number,
        format_percent=format_percent, country_name=country_name, page_language=language, zone_name=zone_name,
        language_names=LANGUAGE_NAMES, status_label=status_label, format_date=format_date,
        format_decimal=format_decimal, limit_words=limit_words, format_datetime=format_datetime,
    )
    app.jinja_env.filters["status_label"] = status_label
    app.jinja_env.filters["data"] = data_text


def data_text(value) -> Markup:
    """A name the users chose (an app's, say) inside translated wording: marked translate="no"."""
    return Markup('<span translate="no">%s</span>') % value
