"""The overview, reports and rate-limit pages (SPEC §10): what they show comes from
wpotp/reports; these tests check the pages show it, and the CSV export."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime, timedelta

import pytest
from sqlalchemy import update

from tests.helpers import make_key
from wpotp.extensions import db
from wpotp.models import Otp
from wpotp.providers.faults import note_config_fault
from wpotp.settings import refresh_settings
from wpotp.util import utcnow

from .test_otps import number, seed_otps, send_otp, verify

DAY = datetime(2026, 3, 10)  # a fixed past day, so the counts do not depend on today's date


@pytest.fixture
def admin(console_client, admin_user):
    return console_client(admin_user)


@pytest.fixture
def viewer(console_client, viewer_user):
    return console_client(viewer_user)


def get_ok(client, path: str, **query) -> str:
    r = client.get(path, query_string=query or None)
    assert r.status_code == 200, r.get_data(as_text=True)[:500]
    return r.get_data(as_text=True)


def seed_report_day(app, key) -> None:
    """On DAY: 3 VERIFIED (created 09:00:07-09, verified 09:00:40: after 31-33 s), 2 FAILED and
    1 EXPIRED (15:xx, the expired one to Germany); the day after: 4 QUEUED. Rows are created
    one second apart up to `at` (see seed_otps)."""
    seed_otps(app, key, 3, at=DAY + timedelta(hours=9, seconds=10), status="VERIFIED",
              sent_at=DAY + timedelta(hours=9), delivered_at=DAY + timedelta(hours=9),
              verified_at=DAY + timedelta(hours=9, seconds=40))
    seed_otps(app, key, 2, at=DAY + timedelta(hours=15, seconds=10), status="FAILED")
    seed_otps(app, key, 1, at=DAY + timedelta(hours=15, minutes=30), status="EXPIRED", country="DE",
              sent_at=DAY + timedelta(hours=15))
    seed_otps(app, key, 4, at=DAY + timedelta(days=1, hours=8))


# --- reports -------------------------------------------------------------------------------------

def test_the_reports_page_draws_the_chart_from_the_report(app, logged_in_page, live_server):
    key = make_key(app)
    seed_report_day(app, key)
    page = logged_in_page("viewer")
    errors = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(live_server.url("/console/reports?from=2026-03-09&to=2026-03-12&interval=day"))

    page.wait_for_selector("#report-chart[data-ready=true]")
    chart = page.evaluate("""() => {
        const c = window.wpotpReportChart;
        return {labels: c.data.labels, stacked: c.options.scales.y.stacked,
                series: Object.fromEntries(c.data.datasets.map(d => [d.label, d.data]))};
    }""")
    assert chart["labels"] == ["2026-03-09", "2026-03-10", "2026-03-11", "2026-03-12"]
    assert chart["stacked"] is True
    assert chart["series"]["VERIFIED"] == [0, 3, 0, 0]
    assert chart["series"]["FAILED"] == [0, 2, 0, 0]
    assert chart["series"]["QUEUED"] == [0, 0, 4, 0]
    assert page.inner_text("#stat-total") == "10"
    assert page.inner_text("#stat-verification") == "30.0 %"
    assert page.inner_text("#stat-median") == "32.0 s"
    assert errors == []  # the CSP let the chart run: no inline script or style was needed

    page.select_option("#r-interval", "hour")
    page.fill("#r-from", "2026-03-10")
    page.fill("#r-to", "2026-03-10")
    page.click("#report-range button[type=submit]")
    page.wait_for_url(re.compile(r"interval=hour"))
    page.wait_for_selector("#report-chart[data-ready=true]")
    labels = page.evaluate("window.wpotpReportChart.data.labels")
    assert len(labels) == 24 and labels[9] == "03-10 09:00"
    csv_link = page.get_attribute("#csv-export", "href")
    assert csv_link == "/console/reports.csv?from=2026-03-10&to=2026-03-10&interval=hour"


def test_the_report_data_block_is_json_the_browser_does_not_run(app, admin):
    key = make_key(app)
    seed_report_day(app, key)
    html = get_ok(admin, "/console/reports", **{"from": "2026-03-10", "to": "2026-03-10"})
    block = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S).group(1)
    report = json.loads(block)
    assert report["totals"]["total"] == 6
    assert report["deliveryRate"] == 0.75  # 3 delivered of the 4 that were sent
    assert report["topCountries"] == [{"country": "TR", "count": 5}, {"country": "DE", "count": 1}]
    countries = html.split('id="top-countries"')[1].split("</table>")[0]
    assert countries.index("TR") < countries.index("DE")
    assert "75.0 %" in html
    assert 'href="/console/reports.csv?from=2026-03-10&amp;to=2026-03-10&amp;interval=day"' in html


def test_the_reports_page_defaults_to_the_last_7_days(app, client, admin):
    key = make_key(app)
    send_otp(client, key, number(1))
    html = get_ok(admin, "/console/reports")
    report = json.loads(re.search(r'id="report-data">(.*?)</script>', html, re.S).group(1))
    assert len(report["buckets"]) == 7
    assert report["totals"]["total"] == 1
    today = utcnow().date()
    assert f'value="{today - timedelta(days=6)}"' in html and f'value="{today}"' in html


@pytest.mark.parametrize("query, message", [
    ({"from": "2026-03-12", "to": "2026-03-10"}, "must come after"),
    ({"from": "2026-01-01", "to": "2026-03-10", "interval": "hour"}, "at most 7 days"),
    ({"from": "last week", "to": "2026-03-10"}, "YYYY-MM-DD"),
    ({"interval": "minute"}, "day or hour"),
])
def test_a_bad_range_is_explained_not_crashed_on(app, admin, query, message):
    make_key(app)
    r = admin.get("/console/reports", query_string=query)
    assert r.status_code == 400
    assert message in r.get_data(as_text=True)
    csv_answer = admin.get("/console/reports.csv", query_string=query)
    assert csv_answer.status_code == 400 and message in csv_answer.get_data(as_text=True)


def test_the_csv_export_has_the_header_and_the_counts(app, admin):
    key = make_key(app)
    seed_report_day(app, key)
    r = admin.get("/console/reports.csv", query_string={"from": "2026-03-10", "to": "2026-03-11", "interval": "day"})
    assert r.status_code == 200
    assert r.mimetype == "text/csv"
    assert r.headers["Content-Disposition"] == 'attachment; filename="wpotp-default-2026-03-10-2026-03-11-day.csv"'
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    assert list(rows[0]) == ["start", "total", "QUEUED", "SENT", "DELIVERED", "READ", "VERIFIED", "FAILED",
                             "EXPIRED", "CANCELED"]
    assert [(row["start"], row["total"]) for row in rows] == [
        ("2026-03-10T00:00:00.000Z", "6"), ("2026-03-11T00:00:00.000Z", "4")]
    assert (rows[0]["VERIFIED"], rows[0]["FAILED"], rows[0]["EXPIRED"], rows[0]["QUEUED"]) == ("3", "2", "1", "0")
    assert rows[1]["QUEUED"] == "4"


def test_the_csv_export_counts_only_the_apps_own_otps(app, client, admin):
    seed_report_day(app, make_key(app))
    seed_report_day(app, make_key(app, app_name="other-shop"))
    r = admin.get("/console/reports.csv", query_string={"from": "2026-03-10", "to": "2026-03-10", "interval": "hour"})
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    assert len(rows) == 24
    assert sum(int(row["total"]) for row in rows) == 6
    assert rows[9]["VERIFIED"] == "3" and rows[15]["FAILED"] == "2"


# --- rate limits -----------------------------------------------------------------------------------

def test_the_rate_limits_page_lists_the_limits_and_finds_a_recipient(app, client, logged_in_page, live_server):
    key = make_key(app, daily_send_cap=500)
    for _ in range(2):
        otp = send_otp(client, key, number(42))
        assert client.post(f"/v1/otp/{otp['id']}/cancel", headers=key.headers).status_code == 200
    send_otp(client, key, number(43))

    page = logged_in_page("viewer")
    page.goto(live_server.url("/console/rate-limits"))
    daily = page.inner_text("#limits tr.limit-app_daily")
    assert "500 per day" in daily and "497" in daily  # rules in words (issue 16), never 500/day
    assert "5 per 15 minutes, 10 per day" in page.inner_text("#limits dl")
    assert "5/15minutes;10/day" not in page.inner_text("#limits")
    top = page.inner_text("#top-consumers")
    assert top.index(number(42)) < top.index(number(43))

    page.fill("#f-recipient", number(42))
    page.click("#recipient-search button[type=submit]")
    page.wait_for_selector("#recipient-limits")
    limits = page.locator("#recipient-limits tr.limit-recipient").all_inner_texts()
    assert len(limits) == 2
    assert "5 per 15 minute" in limits[0] and "\t3\t" in limits[0]
    assert "10 per day" in limits[1] and "\t8\t" in limits[1]
    assert page.inner_text("#searched-recipient") == number(42)


def test_a_recipient_search_that_is_not_a_number_says_so(app, viewer):
    make_key(app)
    r = viewer.get("/console/rate-limits", query_string={"recipient": "<b>bob</b>"})
    assert r.status_code == 400
    html = r.get_data(as_text=True)
    assert "Expected an E.164 number" in html
    assert "<b>bob</b>" not in html and "&lt;b&gt;bob&lt;/b&gt;" in html


def test_top_recipients_are_split_by_window(app, client, viewer):
    key = make_key(app)
    old = send_otp(client, key, number(50))["id"]
    send_otp(client, key, number(51))
    with app.app_context():
        db.session.execute(update(Otp).where(Otp.id == old).values(created_at=utcnow() - timedelta(hours=2)))
        db.session.commit()
    html = get_ok(viewer, "/console/rate-limits")
    recent, day = html.split('id="top-consumers"')[1].split("<h3>")[1:3]
    assert number(51) in recent and number(50) not in recent
    assert number(51) in day and number(50) in day


# --- overview ------------------------------------------------------------------------------------

@pytest.mark.parametrize("batch", [0, 16], ids=["per-otp-jobs", "batch"])
def test_the_overview_shows_todays_counts_rates_queues_and_provider(app, client, admin, outbox, run_worker, batch):
    app.config["SEND_BATCH"] = batch
    refresh_settings(app)  # the services read their settings once (wpotp/settings.py)
    key = make_key(app)
    verified = send_otp(client, key, number(1))
    canceled = send_otp(client, key, number(2))
    send_otp(client, key, number(3))
    assert client.post(f"/v1/otp/{canceled['id']}/cancel", headers=key.headers).status_code == 200
    seed_otps(app, key, 5, at=utcnow() - timedelta(days=3))  # not today: not counted

    html = get_ok(admin, "/console/")
    queues = html.split('id="queues"')[1].split("</section>")[0]
    # Three sends wait for a worker (the canceled one's send will find nothing to do): three RQ
    # jobs on the per-OTP path; on the batch path three items in the send list and one drain job.
    if batch:
        assert re.search(r'<td class="mono">otp</td><td class="num">1</td>', queues)
        assert re.search(r'<tr id="send-list"><td class="mono">OTP sends</td><td class="num">3</td>', queues)
    else:
        assert re.search(r'<td class="mono">otp</td><td class="num">3</td>', queues)
        assert re.search(r'<tr id="send-list"><td class="mono">OTP sends</td><td class="num">0</td>', queues)

    run_worker()
    code = outbox(number(1))[0]["code"]
    assert verify(client, key, verified["id"], code).status_code == 200
    note_config_fault_in(app, "sandbox", "token expired (190)")

    html = get_ok(admin, "/console/")
    assert re.search(r'id="today-total">3<', html)
    assert re.search(r'id="today-verified">\s*<div class="value">1<', html)
    assert re.search(r'id="today-canceled">\s*<div class="value">1<', html)
    assert re.search(r'id="today-verification">33.3 %<', html)
    assert re.search(r'<td class="mono">otp</td><td class="num">0</td>', html)
    assert re.search(r'<tr id="send-list"><td class="mono">OTP sends</td><td class="num">0</td>', html)
    provider = html.split('id="provider"')[1].split("</section>")[0]
    assert "sandbox" in provider and "complete" in provider
    assert "token expired (190)" in provider


def note_config_fault_in(app, provider: str, reason: str) -> None:
    with app.app_context():
        note_config_fault(provider, reason)


def test_the_overview_names_missing_provider_settings(make_app, admin_user):
    app = make_app(WPOTP_PROVIDER="sandbox")
    with app.app_context():
        app.config["WPOTP_PROVIDER"] = "cloud_api"  # as if the operator switched it without the settings
        app.config["WHATSAPP_TOKEN"] = ""
    client = app.test_client()
    with client.session_transaction() as sess:
        sess["_user_id"] = admin_user.id
        sess["_fresh"] = True
    html = get_ok(client, "/console/")
    provider = html.split('id="provider"')[1].split("</section>")[0]
    assert "cloud_api" in provider and "incomplete" in provider
    assert "WHATSAPP_TOKEN is not set" in provider


def test_the_report_pages_carry_no_inline_script_or_style(app, client, admin):
    key = make_key(app)
    send_otp(client, key, number(1))
    for path in ("/console/", "/console/reports", "/console/rate-limits?recipient=%2B905551110001"):
        html = get_ok(admin, path)
        assert " style=" not in html and "<style" not in html
        for tag in re.findall(r"<script[^>]*>", html):
            assert " src=" in tag or 'type="application/json"' in tag, tag
