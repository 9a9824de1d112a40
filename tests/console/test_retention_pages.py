"""The console's side of retention and of reports by channel: the reports page splits the figures
by channel, and an anonymised OTP says so on its page and in the live log (checked in Chromium)."""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from tests.helpers import make_key
from wpotp.otp.retention import purge
from wpotp.util import utcnow

from .test_otps import seed_otps

DAY = datetime(2026, 3, 10)
SHOTS = os.environ.get("WPOTP_SCREENSHOTS", "")  # a directory to keep the screenshots in (for a look)


def _shot(page, name: str) -> None:
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def test_the_reports_page_splits_the_figures_by_channel(app, logged_in_page, live_server):
    key = make_key(app)
    seed_otps(app, key, 3, at=DAY + timedelta(hours=9), status="VERIFIED", channel="whatsapp",
              sent_at=DAY + timedelta(hours=9), verified_at=DAY + timedelta(hours=9, seconds=20))
    seed_otps(app, key, 1, at=DAY + timedelta(hours=10), status="EXPIRED", channel="whatsapp",
              sent_at=DAY + timedelta(hours=10))
    seed_otps(app, key, 2, at=DAY + timedelta(hours=11), status="VERIFIED", channel="sms",
              sent_at=DAY + timedelta(hours=11), delivered_at=DAY + timedelta(hours=11),
              verified_at=DAY + timedelta(hours=11, seconds=50))
    seed_otps(app, key, 2, at=DAY + timedelta(hours=12), status="FAILED", channel="sms")
    page = logged_in_page("viewer")
    page.goto(live_server.url("/console/reports?from=2026-03-10&to=2026-03-10&interval=day"))
    page.wait_for_selector("#report-chart[data-ready=true]")
    cells = {row: page.locator(f"#channel-{row} td").all_inner_texts() for row in ("whatsapp", "sms")}
    assert cells["whatsapp"][:5] == ["WhatsApp", "4", "3", "75.0 %", "75.0 %"]  # 3 delivered of 4 sent
    assert cells["sms"][:5] == ["SMS", "4", "2", "100.0 %", "50.0 %"]
    assert cells["whatsapp"][5].endswith(" s") and cells["sms"][5].endswith(" s")
    assert page.inner_text("#stat-total") == "8"
    _shot(page, "reports-by-channel")


def test_an_anonymised_otp_says_so_in_the_console(app, logged_in_page, live_server):
    key = make_key(app)
    [old] = seed_otps(app, key, 1, at=utcnow() - timedelta(days=40), status="EXPIRED")
    [fresh] = seed_otps(app, key, 1)
    with app.app_context():
        assert purge().counts["otps_anonymised"] == 1
    page = logged_in_page("viewer")
    page.goto(live_server.url(f"/console/otps/{old}"))
    text = page.inner_text("#anonymised")
    assert "anonymised" in text and "data retention removed the number" in text and "TR" in text
    assert "+90" not in page.content()
    assert "Deleted by data retention." in page.inner_text("#events")
    _shot(page, "otp-anonymised")
    page.goto(live_server.url(f"/console/otps/{fresh}"))
    assert page.locator("#anonymised").count() == 0
    page.goto(live_server.url("/console/otps"))
    page.wait_for_selector(f"#row-{old}")
    assert "anonymised" in page.inner_text(f"#row-{old}")
    assert "anonymised" not in page.inner_text(f"#row-{fresh}")


def test_an_admin_sets_the_apps_retention_period_on_the_settings_page(app, logged_in_page, live_server):
    from wpotp.extensions import db
    from wpotp.models import App, AuditEntry

    key = make_key(app)
    [old] = seed_otps(app, key, 1, at=utcnow() - timedelta(days=10), status="VERIFIED")
    with app.app_context():
        assert purge().counts["otps_anonymised"] == 0  # 10 days: within the default 30
    page = logged_in_page("admin")
    page.goto(live_server.url("/console/settings"))
    assert page.get_attribute("input[name=retention_days]", "placeholder") == "30"
    page.fill("input[name=retention_days]", "0")
    page.click("#settings-form button[type=submit]")
    assert page.locator(".field.has-error").count() == 1  # at least one day
    page.fill("input[name=retention_days]", "7")
    page.click("#settings-form button[type=submit]")
    page.wait_for_selector("text=Saved 1 setting(s)")
    _shot(page, "settings-retention")
    with app.app_context():
        assert db.session.get(App, key.app_id).retention_days == 7
        entry = db.session.query(AuditEntry).filter_by(action="settings.update").one()
        assert entry.details["changes"] == {"retention_days": [None, 7]}
        assert purge().counts["otps_anonymised"] == 1
    page.goto(live_server.url(f"/console/otps/{old}"))
    assert "anonymised" in page.inner_text("#anonymised")
