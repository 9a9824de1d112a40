"""The console's SMS texts (templates page) and the SMS fallback setting (settings page), issue 15:
an app's own text per language with its GSM-7/UCS-2 segment count, live in the browser and counted
again on save; the text then used for the app's SMS; FALLBACK_AFTER_SECONDS per app."""

from __future__ import annotations

import re

from sqlalchemy import select

from tests.helpers import make_key, work_queues
from tests.otp.support import send
from wpotp.extensions import db
from wpotp.models import App, AuditEntry
from wpotp.providers.sms_sandbox import read_sms_outbox

from .conftest import form_token

SHOTS = "/tmp/wpotp-sms-shots"  # noqa: S108  (screenshots to look at; Playwright makes the folder)
LONG_TR = "{app} doğrulama kodunuz: {code}. Bu kodu kimseyle paylaşmayın; ekibimiz bunu asla sormaz."


def _audit(app) -> list[tuple[str, dict]]:
    with app.app_context():
        return [(e.action, e.details) for e in db.session.scalars(select(AuditEntry).order_by(AuditEntry.id))]


def test_the_segment_count_follows_the_text_live_and_the_saved_text_is_sent(app, live_server, logged_in_page):
    key = make_key(app, "default")
    page = logged_in_page("admin", viewport={"width": 1280, "height": 1200})
    page.goto(live_server.url("/console/templates"))
    count = page.locator("#sms_count_en")
    assert count.text_content().split() == ["GSM-7", "·", "1", "segment", "(built-in", "text)"]

    page.fill("#sms_en", "{code} " + "x" * 160)  # past one GSM-7 SMS: two parts of 153
    assert count.text_content() == "GSM-7 · 2 segments"
    page.fill("#sms_tr", LONG_TR)  # ğ, ş, ı: UCS-2, and past 70 characters
    assert page.locator("#sms_count_tr").text_content() == "UCS-2 · 2 segments"
    page.fill("#sms_en", "{app}: {code} is your code")
    assert count.text_content() == "GSM-7 · 1 segment"
    page.screenshot(path=f"{SHOTS}/sms-texts.png", full_page=True)

    page.click("#sms-form button[type=submit]")
    page.wait_for_selector("text=Saved the SMS texts of default")
    assert "en GSM-7 × 1" in page.content() and "tr UCS-2 × 2" in page.content()
    assert page.locator("#sms_en").input_value() == "{app}: {code} is your code"
    with app.app_context():
        assert db.session.get(App, key.app_id).sms_texts == {"en": "{app}: {code} is your code", "tr": LONG_TR}
    action, details = _audit(app)[-1]
    assert action == "templates.sms" and details["segments"] == {"en": "GSM-7 × 1", "tr": "UCS-2 × 2"}

    client = app.test_client()
    r = send(client, key, "+905551113001", channel="sms", code="123456")
    assert r.status_code == 201
    work_queues(app)
    with app.app_context():
        (sms,) = read_sms_outbox(recipient="+905551113001")
    assert sms["text"] == "default: 123456 is your code"


def test_a_text_without_the_code_is_refused_and_nothing_is_saved(app, console_client, admin_user, viewer_user):
    key = make_key(app, "default")
    admin = console_client(admin_user)
    answer = admin.post("/console/templates/sms", data={"csrf_token": form_token(admin), "sms_en": "Hello {app}",
                                                        "sms_tr": "{code} {name}"}, follow_redirects=True)
    page = answer.get_data(as_text=True)
    assert "Nothing was saved" in page and "en: must contain {code} exactly once" in page
    assert "tr: only the placeholders {code} and {app} may be used" in page
    with app.app_context():
        assert db.session.get(App, key.app_id).sms_texts is None
    viewer = console_client(viewer_user)
    assert viewer.post("/console/templates/sms", data={"csrf_token": form_token(viewer),
                                                       "sms_en": "{code}"}).status_code == 403
    assert admin.post("/console/templates/sms", data={"sms_en": "{code}"}).status_code == 400  # no CSRF token
    assert _audit(app) == []


def test_a_new_language_can_be_added_and_emptying_a_text_restores_the_built_in(app, console_client, admin_user):
    key = make_key(app, "default")
    admin = console_client(admin_user)
    saved = admin.post("/console/templates/sms", data={"csrf_token": form_token(admin), "sms_lang_new": "de",
                                                       "sms_text_new": "{code} ist Ihr {app}-Code."})
    assert saved.status_code == 302
    with app.app_context():
        assert db.session.get(App, key.app_id).sms_texts == {"de": "{code} ist Ihr {app}-Code."}
    page = admin.get("/console/templates").get_data(as_text=True)
    assert 'id="sms_de"' in page
    admin.post("/console/templates/sms", data={"csrf_token": form_token(admin), "sms_de": ""})
    with app.app_context():
        assert db.session.get(App, key.app_id).sms_texts is None


def test_the_fallback_delay_is_an_app_setting(app, console_client, admin_user):
    key = make_key(app, "default")
    admin = console_client(admin_user)
    page = admin.get("/console/settings").get_data(as_text=True)
    assert 'name="fallback_after_seconds"' in page and 'placeholder="30"' in page
    form = {"csrf_token": form_token(admin), "otp_length": "6", "otp_ttl": "300", "max_attempts": "5",
            "default_language": "en", "allowed_countries": ""}
    assert admin.post("/console/settings", data={**form, "fallback_after_seconds": "4000"}).status_code == 400
    assert admin.post("/console/settings", data={**form, "fallback_after_seconds": "12"}).status_code == 302
    with app.app_context():
        assert db.session.get(App, key.app_id).fallback_after_seconds == 12
    action, details = _audit(app)[-1]
    assert action == "settings.update" and details["changes"]["fallback_after_seconds"] == [None, 12]


def test_the_otp_page_shows_the_fallback(app, live_server, logged_in_page):
    key = make_key(app, "default")
    r = send(app.test_client(), key, "+15005550003", channel="auto")  # the sandbox's "not on WhatsApp"
    assert r.status_code == 201
    work_queues(app)
    page = logged_in_page("admin", viewport={"width": 1280, "height": 1100})
    page.goto(live_server.url(f"/console/otps/{r.json['id']}"))
    timeline = page.locator("#events tbody tr").all_text_contents()
    fallback = next(row for row in timeline if "otp.fallback" in row)
    assert "not_on_whatsapp" in fallback and "QUEUED" in fallback
    sends = page.locator("#send-attempts tbody tr").all_text_contents()
    assert [("SMS fallback" in row, "SMS" in row) for row in sends] == [(False, False), (True, True)]  # oldest first
    assert "0 (and the SMS fallback)" in page.locator(".kv").text_content()
    page.screenshot(path=f"{SHOTS}/otp-fallback.png", full_page=True)


def test_the_webhooks_page_offers_otp_fallback_opt_in(app, console_client, admin_user):
    make_key(app, "default")
    page = console_client(admin_user).get("/console/webhooks").get_data(as_text=True)
    boxes = dict(re.findall(r'<input([^>]*)value="(otp\.[a-z]+)"', page)[i][::-1] for i in range(8))
    assert set(boxes) == {"otp.sent", "otp.delivered", "otp.read", "otp.verified", "otp.failed", "otp.expired",
                          "otp.canceled", "otp.fallback"}
    assert "checked" not in boxes["otp.fallback"] and "checked" in boxes["otp.sent"]
