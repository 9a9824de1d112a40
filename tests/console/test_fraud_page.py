"""The console's Fraud guard page (issue 15): blocks in force and recent refusals with why, an
unblock that restores sending (CSRF, audit-logged), and the guard's per-app settings."""

from __future__ import annotations

import re

from sqlalchemy import select

from tests.helpers import make_key
from tests.otp.support import send
from wpotp.extensions import db
from wpotp.models import App, AuditEntry

from .conftest import form_token

SHOTS = "/tmp/wpotp-fraud-shots"  # noqa: S108  (a screenshot to look at; Playwright makes the folder)


def pump(client, key, count: int) -> list[int]:
    """Sends to numbers of one range (+90 55511), none verified: SMS pumping's pattern."""
    return [send(client, key, f"+90555111{i:04d}").status_code for i in range(count)]


def audit_actions(app) -> list[tuple[str, dict]]:
    with app.app_context():
        return [(e.action, e.details) for e in db.session.scalars(select(AuditEntry).order_by(AuditEntry.id))]


def test_the_page_lists_a_block_and_its_refusals_and_unblocking_restores_sending(app, client, live_server,
                                                                                 logged_in_page):
    key = make_key(app, "default", fraud_unverified_prefix=3)
    assert pump(client, key, 5) == [201, 201, 201, 403, 403]
    page = logged_in_page("admin", viewport={"width": 1280, "height": 1100})
    page.goto(live_server.url("/console/"))
    page.click("#main-nav >> text=Fraud guard")
    page.wait_for_selector("#blocks .block-row")

    assert page.locator("#blocks .block-row td").first.text_content() == "+90 55511"
    refusals = page.locator("#refusals .refusal-row").all_text_contents()
    assert len(refusals) == 2
    assert "prefix blocked: sends without verifies" in refusals[1]  # oldest last: the send that tripped it
    assert "+9055511***04" in refusals[0] and "+905551110004" not in page.content()
    page.screenshot(path=f"{SHOTS}/fraud.png", full_page=True)

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#blocks button:has-text('Unblock')")
    page.wait_for_selector("text=Unblocked +90 55511")

    assert page.locator("#blocks .block-row").count() == 0
    assert send(client, key, "+905551110009").status_code == 201
    action, details = audit_actions(app)[-1]
    assert action == "fraud.unblock" and details["block"] == "p:9055511"


def test_an_unblock_needs_the_csrf_token_and_an_admin(app, client, console_client, admin_user, viewer_user):
    key = make_key(app, "default", fraud_unverified_prefix=1)
    assert pump(client, key, 2) == [201, 403]
    viewer = console_client(viewer_user)
    page = viewer.get("/console/fraud")
    assert page.status_code == 200 and "+90 55511" in page.get_data(as_text=True)
    assert re.findall(r'<form method="post" action="([^"]+)"', page.get_data(as_text=True)) == \
        ["/console/app", "/console/language", "/console/logout"]  # the language switch is every user's own
    assert viewer.post("/console/fraud/unblock", data={"csrf_token": form_token(viewer),
                                                       "member": "p:9055511"}).status_code == 403
    admin = console_client(admin_user)
    assert admin.post("/console/fraud/unblock", data={"member": "p:9055511"}).status_code == 400  # no CSRF token
    assert send(client, key, "+905551110005").status_code == 403  # still blocked
    assert audit_actions(app) == []


def test_settings_saved_on_the_page_rule_the_api(app, client, console_client, admin_user):
    key = make_key(app, "default")
    admin = console_client(admin_user)
    bad = admin.post("/console/fraud/settings", data={"csrf_token": form_token(admin), "fraud_deny_whatsapp": "XX",
                                                      "fraud_prefix_limit": "lots"})
    assert bad.status_code == 400
    assert "Not ISO 3166 country codes: XX" in bad.get_data(as_text=True)

    saved = admin.post("/console/fraud/settings", data={"csrf_token": form_token(admin), "fraud_guard": "on",
                                                        "fraud_deny_whatsapp": "tr", "fraud_prefix_limit": "9/hour",
                                                        "fraud_block_seconds": "600"})
    assert saved.status_code == 302
    with app.app_context():
        row = db.session.get(App, key.app_id)
        assert (row.fraud_guard, row.fraud_deny_whatsapp, row.fraud_prefix_limit, row.fraud_block_seconds) == \
            (True, "TR", "9/hour", 600)
    refused = send(client, key, "+905551110001")
    assert refused.status_code == 403 and refused.json["error"]["details"]["reason"] == "geo_denied"
    action, details = audit_actions(app)[-1]
    assert action == "fraud.settings" and details["changes"]["fraud_deny_whatsapp"] == ["", "TR"]
    page = admin.get("/console/fraud").get_data(as_text=True)
    assert "country on the deny-list" in page
