"""Issue 16's rough edges: each seen on a page, each checked where it shows."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, update

from tests.helpers import make_key
from wpotp.cache import bump_epoch
from wpotp.extensions import db
from wpotp.models import AuditEntry, Otp, Template

from .conftest import create_user, form_token
from .test_otps import number, seed_otps, send_otp

DAY = datetime(2026, 3, 10)


@pytest.fixture
def admin(console_client, admin_user):
    return console_client(admin_user)


def post(client, path: str, **fields):
    return client.post(path, data={"csrf_token": form_token(client), **fields})


# --- the users page on a phone -----------------------------------------------------------------------

def test_the_users_and_audit_pages_fit_a_390_px_phone(app, live_server, logged_in_page):
    for i in range(3):
        create_user(app, f"someone.with.a.long.address{i}@example-company.com.tr", "viewer")
    with app.app_context():
        db.session.add(AuditEntry(actor="cli", action="settings.update", target="app_x",
                                  details={"changes": {"allowed_countries": ["", "TR,DE,US,GB,FR,NL"]}}))
        db.session.commit()
    for lang in ("en-US", "tr-TR"):
        page = logged_in_page("admin", viewport={"width": 390, "height": 844}, locale=lang)
        for path in ("/console/users", "/console/audit"):
            page.goto(live_server.url(path))
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, (lang, path, overflow)
            # Nothing of the table hides past the right edge: every cell's box ends on screen.
            widest = page.evaluate("Math.max(...[...document.querySelectorAll('tbody td')].map("
                                   "td => td.getBoundingClientRect().right))")
            assert widest <= 390, (lang, path, widest)


# --- rate limits in words, and a recipient with nothing left -------------------------------------------

def test_a_recipient_with_nothing_left_is_highlighted_and_rules_read_as_words(app, client, admin):
    key = make_key(app, recipient_rate_limit="2/15minutes;10/day")
    for _ in range(2):
        otp = send_otp(client, key, number(1))
        client.post(f"/v1/otp/{otp['id']}/cancel", headers=key.headers)
    send_otp(client, key, number(2))
    html = admin.get("/console/rate-limits", query_string={"recipient": number(1)}).get_data(as_text=True)
    assert "2 per 15 minutes, 10 per day" in html and "2/15minutes" not in html
    assert 'id="recipient-exhausted"' in html
    assert re.search(r'<tr class="limit-recipient exhausted">\s*<td>Sends to one recipient</td>\s*'
                     r'<td>2 per 15 minutes</td>\s*<td>0 <span class="badge badge-exhausted">', html)
    top = html.split('id="top-consumers"')[1]
    assert re.search(r'<tr class="exhausted">\s*<td><a class="mono" href="[^"]+">\+905551110001</a>', top)
    assert '<tr>\n        <td><a class="mono" href="/console/rate-limits?recipient=%2B905551110002"' in top

    turkish = admin.get("/console/rate-limits", query_string={"recipient": number(1)},
                        headers={"Accept-Language": "tr-TR"}).get_data(as_text=True)
    assert "15 dakikada 2, günde 10" in turkish and "hak kalmadı" in turkish


# --- the reports page ------------------------------------------------------------------------------------

def seed_day(app, key):
    """DAY in UTC: 2 delivered (one read), 1 verified, 2 failed before a provider took them, 1 failed after."""
    sent = {"sent_at": DAY + timedelta(hours=10)}
    seed_otps(app, key, 1, at=DAY + timedelta(hours=10), status="DELIVERED", delivered_at=DAY + timedelta(hours=10),
              **sent)
    seed_otps(app, key, 1, at=DAY + timedelta(hours=11), status="READ", read_at=DAY + timedelta(hours=11), **sent)
    seed_otps(app, key, 1, at=DAY + timedelta(hours=12), status="VERIFIED", verified_at=DAY + timedelta(hours=12),
              **sent)
    seed_otps(app, key, 2, at=DAY + timedelta(hours=13), status="FAILED", country="DE")
    seed_otps(app, key, 1, at=DAY + timedelta(hours=23, minutes=30), status="FAILED", **sent)


def test_the_delivery_rate_counts_the_failures_shown_beside_it(app, admin):
    seed_day(app, make_key(app))
    html = admin.get("/console/reports", query_string={"from": "2026-03-10", "to": "2026-03-10"}).data.decode()
    report = json.loads(re.search(r'id="report-data">(.*?)</script>', html, re.S).group(1))
    assert report["totals"]["byStatus"]["FAILED"] == 3
    # 3 of the 6 tried arrived (the API's deliveryRate, 3 of the 4 WhatsApp took, is shown too).
    assert re.search(r'id="stat-delivery">50.0 %<', html)
    assert "3 delivered of 6 tried; 2 failed before sending" in html
    assert "75.0 % of those WhatsApp took" in html
    assert re.search(r'<div class="stat" id="stat-failed"><div class="value">3</div>', html)


def test_countries_have_names(app, admin):
    seed_day(app, make_key(app))
    query = {"from": "2026-03-10", "to": "2026-03-10"}
    html = admin.get("/console/reports", query_string=query).get_data(as_text=True)
    countries = html.split('id="top-countries"')[1].split("</table>")[0]
    assert "Türkiye" in countries and "Germany" in countries
    turkish = admin.get("/console/reports", query_string=query, headers={"Accept-Language": "tr"}).data.decode()
    assert "Almanya" in turkish.split('id="top-countries"')[1].split("</table>")[0]


def test_day_buckets_follow_the_console_time_zone_and_the_page_names_it(app, make_app, admin_user):
    istanbul = make_app(CONSOLE_TIMEZONE="Europe/Istanbul")
    seed_day(istanbul, make_key(istanbul))
    client = istanbul.test_client()
    with client.session_transaction() as sess:
        sess["_user_id"], sess["_fresh"] = admin_user.id, True
    html = client.get("/console/reports", query_string={"from": "2026-03-10", "to": "2026-03-11"}).data.decode()
    report = json.loads(re.search(r'id="report-data">(.*?)</script>', html, re.S).group(1))
    # The 23:30 UTC failure is 02:30 on the 11th in Istanbul (UTC+3): it falls in the next local day.
    assert [(b["label"], b["total"]) for b in report["buckets"]] == [("2026-03-10", 5), ("2026-03-11", 1)]
    assert report["buckets"][0]["start"] == "2026-03-09T21:00:00.000Z"
    assert "Days and hours are those of Europe/Istanbul." in html
    csv = client.get("/console/reports.csv", query_string={"from": "2026-03-10", "to": "2026-03-11"}).data.decode()
    assert csv.splitlines()[1].startswith("2026-03-09T21:00:00.000Z,5,")


def test_an_hourly_week_scrolls_instead_of_squeezing_to_a_hairline(app, live_server, logged_in_page):
    seed_day(app, make_key(app))
    page = logged_in_page("viewer", viewport={"width": 1280, "height": 800})
    page.goto(live_server.url("/console/reports?interval=hour&from=2026-03-04&to=2026-03-10"))
    page.wait_for_selector("#report-chart[data-ready=true]")
    sizes = page.evaluate("""() => { const s = document.getElementById('chart-scroll');
        const c = document.getElementById('report-chart');
        return {view: s.clientWidth, content: s.scrollWidth, canvas: c.clientWidth,
                bars: window.wpotpReportChart.data.labels.length}; }""")
    assert sizes["bars"] == 168
    assert sizes["content"] > sizes["view"] and sizes["canvas"] >= 168 * 10  # each hour gets 10 px at least


# --- audit details ---------------------------------------------------------------------------------------

def test_audit_details_read_as_words_not_json(app, admin):
    with app.app_context():
        db.session.add(AuditEntry(actor="cli", action="settings.update", details={
            "app": "default", "changes": {"otp_length": [6, 4], "allowed_countries": ["", "TR,DE"]}}))
        db.session.add(AuditEntry(actor="cli", action="webhook.set", details={
            "url": "https://example.com/h", "events": ["otp.sent", "otp.failed"], "new_secret": True}))
        db.session.commit()
    html = admin.get("/console/audit").get_data(as_text=True)
    assert "Code length</span>=<code>6 → 4</code>" in html
    assert "Allowed countries</span>=<code>— → TR,DE</code>" in html
    assert "Events</span>=<code>otp.sent, otp.failed</code>" in html and "New secret</span>=<code>yes</code>" in html
    assert '{"' not in html.split("<tbody>")[1] and "[&#34;" not in html and '["' not in html
    assert 'title="Changed app settings"' in html


# --- the sandbox's test send --------------------------------------------------------------------------------

def test_the_sandbox_page_sends_a_test_otp_and_shows_its_code(app, admin, run_worker):
    key = make_key(app)
    answer = post(admin, "/console/sandbox/send", recipient=number(9), channel="whatsapp")
    assert answer.status_code == 302
    run_worker()
    html = admin.get("/console/sandbox").get_data(as_text=True)
    assert "+905551110009" in html and re.search(r'<code class="code-value">\d{6}</code>', html)
    with app.app_context():
        otp = db.session.scalars(select(Otp).where(Otp.recipient == number(9))).one()
        assert otp.api_key_id == key.key_id and otp.mode == "test"
        entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "sandbox.send")).one()
        assert entry.target == otp.id and "code" not in json.dumps(entry.details)


def test_the_sandbox_send_says_why_it_did_not_send(app, admin, viewer_user, console_client):
    bad = post(admin, "/console/sandbox/send", recipient="12", channel="whatsapp")
    assert bad.status_code == 400 and "no active test key" in bad.get_data(as_text=True)
    make_key(app)
    bad = post(admin, "/console/sandbox/send", recipient="not a number", channel="whatsapp")
    assert bad.status_code == 400 and "Not sent:" in bad.get_data(as_text=True)
    viewer = console_client(viewer_user)
    assert post(viewer, "/console/sandbox/send", recipient=number(3), channel="sms").status_code == 403
    with app.app_context():
        assert db.session.scalars(select(Otp)).all() == []


# --- settings: a default language needs an approved OTP template -----------------------------------------

def test_settings_refuse_a_default_language_without_an_approved_template(app, admin):
    fields = dict(otp_length="6", otp_ttl="300", max_attempts="5", default_language="de")
    refused = post(admin, "/console/settings", **fields)
    html = refused.get_data(as_text=True)
    assert refused.status_code == 400
    assert "No approved OTP template is in de" in html and "Approved languages: en, tr." in html
    with app.app_context():
        db.session.execute(update(Template).where(Template.language == "tr").values(status="PAUSED"))
        db.session.commit()
    try:
        assert post(admin, "/console/settings", **{**fields, "default_language": "tr"}).status_code == 400
        assert post(admin, "/console/settings", **{**fields, "default_language": "en"}).status_code == 302
    finally:  # the templates table outlives a test (tests/conftest.py KEEP_TABLES): put it back
        with app.app_context():
            db.session.execute(update(Template).where(Template.language == "tr").values(status="APPROVED"))
            db.session.commit()
            bump_epoch()


# --- a live key while the provider is the sandbox ------------------------------------------------------------

def test_a_live_key_made_under_the_sandbox_provider_carries_a_warning(app, make_app, admin_user):
    for provider_is_sandbox, target in ((True, app), (False, None)):
        if target is None:
            from tests.providers.cloud_api.graph import SETTINGS

            target = make_app(WHATSAPP_GRAPH_URL="http://127.0.0.1:9", **SETTINGS)
        client = target.test_client()
        with client.session_transaction() as sess:
            sess["_user_id"], sess["_fresh"] = admin_user.id, True
        assert post(client, "/console/keys", name="shop", mode="live").status_code == 302
        html = client.get("/console/keys").get_data(as_text=True)
        assert ('id="live-key-sandbox-warning"' in html) is provider_is_sandbox
        assert ("will not reach WhatsApp" in html) is provider_is_sandbox


# --- the live log's date filters are days of the reader's zone ------------------------------------------------

def test_the_live_logs_dates_are_days_of_the_readers_zone(app, admin, admin_user):
    from wpotp.models import User

    key = make_key(app)
    late = seed_otps(app, key, 1, created_at=DAY + timedelta(hours=22, minutes=30))[0]  # 01:30 on the 11th in Istanbul
    utc = admin.get("/console/otps", query_string={"from": "2026-03-10", "to": "2026-03-10"}).data.decode()
    assert f"row-{late}" in utc
    with app.app_context():
        db.session.get(User, admin_user.id).timezone = "Europe/Istanbul"
        db.session.commit()
    same_day = admin.get("/console/otps", query_string={"from": "2026-03-10", "to": "2026-03-10"}).data.decode()
    next_day = admin.get("/console/otps", query_string={"from": "2026-03-11", "to": "2026-03-11"}).data.decode()
    assert f"row-{late}" not in same_day and f"row-{late}" in next_day


def test_the_live_log_shows_each_status_on_a_phone_without_scrolling_sideways(app, client, live_server,
                                                                              logged_in_page):
    key = make_key(app)
    otp = send_otp(client, key, number(5), reference="order-1")
    page = logged_in_page("viewer", viewport={"width": 390, "height": 844})
    page.goto(live_server.url("/console/otps"))
    badge = page.locator(f"#row-{otp['id']} .otp-status .badge")
    box = badge.bounding_box()
    assert box and box["x"] + box["width"] <= 390
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_form_errors_are_in_the_pages_language(app, admin):
    turkish = {"Accept-Language": "tr-TR"}
    token = form_token(admin)
    answer = admin.post("/console/settings", headers=turkish, data={
        "csrf_token": token, "otp_length": "", "otp_ttl": "5000", "max_attempts": "5", "default_language": "en",
        "allowed_countries": "TR, XX"})
    html = answer.get_data(as_text=True)
    assert answer.status_code == 400
    assert "Bu alan zorunludur." in html  # WTForms' own messages, from its Turkish catalogue
    assert "Sayı 60 ile 900 arasında olmalıdır." in html
    assert "ISO 3166 ülke kodu değil: XX." in html
    assert "Hiçbir şey kaydedilmedi" in html and "This field is required" not in html
