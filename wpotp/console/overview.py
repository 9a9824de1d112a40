"""The console's landing page: today's sends, the rates, the queues and the provider's state."""

from __future__ import annotations

from datetime import datetime, timedelta

import redis
from flask import current_app, render_template

from config import provider_problems

from ..extensions import QUEUE_NAMES, get_queue
from ..i18n import app_zone
from ..jobs.enqueue import send_list_depth
from ..providers.faults import last_config_fault
from ..reports.usage import usage_report
from ..util import utcnow
from . import bp
from .auth import current_console_app
from .reports import to_local, to_utc


def queue_depths() -> dict[str, int | None]:
    """Jobs waiting per RQ queue; None when Redis does not answer (the page still renders)."""
    depths: dict[str, int | None] = {}
    for name in QUEUE_NAMES:
        try:
            depths[name] = get_queue(name).count
        except redis.exceptions.RedisError:
            depths[name] = None
    return depths


def send_list() -> dict[str, int] | None:
    """The batch send path's list (SEND_BATCH): sends waiting for a drain job and sends claimed by
    one running now; None when Redis does not answer."""
    try:
        return send_list_depth(2 * current_app.config["PROVIDER_TIMEOUT"] + 30)
    except redis.exceptions.RedisError:
        return None


def provider_state() -> dict:
    """The provider live keys use: its settings' problems and the last configuration fault seen."""
    name = current_app.config["WPOTP_PROVIDER"]
    problems = provider_problems(current_app.config, name)
    try:
        fault = last_config_fault(name)
    except redis.exceptions.RedisError:
        fault = None
    return {"name": name, "complete": not problems, "problems": problems, "fault": fault}


@bp.get("/")
def overview():
    app = current_console_app()
    zone = app_zone()
    day = to_local(utcnow(), zone).date()  # today in the installation's time zone (CONSOLE_TIMEZONE)
    start = to_utc(datetime(day.year, day.month, day.day), zone)
    end = to_utc(datetime(day.year, day.month, day.day) + timedelta(days=1), zone)
    today = usage_report(app.id, start, end, "day", delivery=True)
    return render_template("console/overview.html", app=app, today=today, day=day, day_zone=str(zone),
                           figures=today["delivery"],
                           queues=queue_depths(), sends=send_list(), provider=provider_state())
