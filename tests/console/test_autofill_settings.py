"""The app settings page's WhatsApp code button: copy code, one-tap autofill, zero-tap, with the
Android app's package name and signature hash; admin only, CSRF, audit-logged."""

from __future__ import annotations

from sqlalchemy import select

from wpotp.extensions import db
from wpotp.models import App, AuditEntry

from .conftest import form_token

SHOTS = "/tmp/wpotp-autofill-shots"  # noqa: S108  (screenshots to look at; Playwright makes the folder)
PACKAGE = "com.example.shop"
HASH = "K8a/AINcGX7"


def _default_app(app) -> App:
    with app.app_context():
        row = db.session.scalars(select(App).where(App.name == "default")).one()
        db.session.expunge(row)
        return row


def _audits(app) -> list[AuditEntry]:
    with app.app_context():
        rows = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "settings.update")).all()
        db.session.expunge_all()
        return list(rows)


def test_an_admin_sets_one_tap_and_bad_shapes_are_refused(app, live_server, logged_in_page):
    page = logged_in_page("admin")
    page.goto(live_server.url("/console/settings"))
    form = "#autofill-form"
    page.select_option(f"{form} select[name=otp_type]", "ONE_TAP")
    page.fill(f"{form} input[name=android_package_name]", "shop")
    page.fill(f"{form} input[name=android_signature_hash]", "tooshort")
    page.click(f"{form} button[type=submit]")

    errors = page.locator(f"{form} .field.has-error").all_text_contents()
    assert len(errors) == 2
    assert any("com.example.shop" in e for e in errors) and any("11 characters" in e for e in errors)
    page.screenshot(path=f"{SHOTS}/refused.png", full_page=True)
    assert _default_app(app).otp_type == "COPY_CODE"  # nothing saved

    page.fill(f"{form} input[name=android_package_name]", f"  {PACKAGE} ")
    page.fill(f"{form} input[name=android_signature_hash]", HASH)
    page.uncheck(f"{form} input[name=security_recommendation]")
    page.click(f"{form} button[type=submit]")
    page.wait_for_selector("text=Saved 4 setting(s)")
    page.screenshot(path=f"{SHOTS}/saved.png", full_page=True)

    saved = _default_app(app)
    assert (saved.otp_type, saved.android_package_name, saved.android_signature_hash) == ("ONE_TAP", PACKAGE, HASH)
    assert saved.security_recommendation is False and saved.zero_tap_terms_accepted is False
    [entry] = _audits(app)
    assert entry.details["changes"]["otp_type"] == ["COPY_CODE", "ONE_TAP"]
    assert page.input_value(f"{form} select[name=otp_type]") == "ONE_TAP"  # the page shows what is saved


def test_zero_tap_needs_the_terms_accepted(app, live_server, logged_in_page):
    page = logged_in_page("admin")
    page.goto(live_server.url("/console/settings"))
    form = "#autofill-form"
    page.select_option(f"{form} select[name=otp_type]", "ZERO_TAP")
    page.fill(f"{form} input[name=android_package_name]", PACKAGE)
    page.fill(f"{form} input[name=android_signature_hash]", HASH)
    page.click(f"{form} button[type=submit]")

    assert "zero-tap terms" in page.text_content(f"{form} .field.has-error")
    assert _default_app(app).otp_type == "COPY_CODE"

    page.check(f"{form} input[name=zero_tap_terms_accepted]")
    page.click(f"{form} button[type=submit]")
    page.wait_for_selector("text=Saved 4 setting(s)")
    assert _default_app(app).otp_type == "ZERO_TAP"


def test_a_viewer_sees_the_button_settings_disabled(app, live_server, logged_in_page):
    page = logged_in_page("viewer")
    page.goto(live_server.url("/console/settings"))

    assert page.locator("#autofill-form select[name=otp_type]").is_disabled()
    assert page.locator("#autofill-form button[type=submit]").count() == 0


def test_only_an_admin_with_a_csrf_token_changes_the_button(app, console_client, admin_user, viewer_user):
    viewer = console_client(viewer_user)
    refused = viewer.post("/console/settings/autofill", data={"csrf_token": form_token(viewer),
                                                              "otp_type": "COPY_CODE",
                                                              "security_recommendation": "y"})
    admin = console_client(admin_user)
    no_token = admin.post("/console/settings/autofill", data={"otp_type": "COPY_CODE"})

    assert refused.status_code == 403
    assert no_token.status_code == 400
    assert _default_app(app).security_recommendation is True
    assert _audits(app) == []


def test_junk_is_refused_with_the_form_not_an_error_page(app, console_client, admin_user):
    admin = console_client(admin_user)
    token = form_token(admin)
    answers = [admin.post("/console/settings/autofill", data={"csrf_token": token, **data}) for data in (
        {"otp_type": "EVIL"},
        {"otp_type": "ONE_TAP", "android_package_name": "com.x" * 100, "android_signature_hash": "K8a/AINcGX7" * 5},
        {"otp_type": "ONE_TAP", "android_package_name": "com.example.shop\x00", "android_signature_hash": HASH},
    )]

    assert [a.status_code for a in answers] == [400, 400, 400]
    assert all("Nothing was saved" in a.get_data(as_text=True) for a in answers)
    assert _default_app(app).otp_type == "COPY_CODE"
