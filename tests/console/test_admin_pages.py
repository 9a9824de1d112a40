"""The admin pages: keys, users, audit log, settings, sandbox, templates, webhooks; roles."""

from __future__ import annotations

import json
import re

from playwright.sync_api import expect
from sqlalchemy import select

from tests.doubles import HttpDouble, Reply
from tests.helpers import make_key
from tests.otp.support import send
from wpotp.extensions import db
from wpotp.models import ApiKey, App, AuditEntry, User, WebhookDelivery, WebhookEndpoint

from .conftest import create_user, form_token

CLOSED_PORT_URL = "http://127.0.0.1:9/hook"  # nothing listens: every delivery attempt is refused


def actions(app) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


def one(app, model, **where):
    with app.app_context():
        row = db.session.scalars(select(model).filter_by(**where)).one()
        db.session.expunge(row)
        return row


def post(client, path: str, **data):
    return client.post(path, data={"csrf_token": form_token(client), **data})


# API keys -----------------------------------------------------------------------------------

def test_a_new_key_is_shown_once_and_works(app, live_server, logged_in_page):
    page = logged_in_page("admin")
    page.goto(live_server.url("/console/keys"))
    page.fill("#create-key-form input[name=name]", "checkout")
    page.select_option("#create-key-form select[name=mode]", "test")
    page.click("#create-key-form button[type=submit]")

    secret = page.text_content("#one-time-secret").strip()
    assert re.fullmatch(r"wpotp_test_[0-9A-Za-z]{40}", secret)
    key = one(app, ApiKey, name="checkout")
    assert page.locator(f"text={key.prefix}…").count() == 1
    assert app.test_client().get("/v1/templates", headers={"Authorization": f"Bearer {secret}"}).status_code == 200

    page.reload()
    assert page.locator("#one-time-secret").count() == 0
    assert secret not in page.content()
    assert key.prefix in page.content()
    assert actions(app)[-1] == "key.create"


def test_the_copy_button_copies_the_secret(app, live_server, logged_in_page):
    page = logged_in_page("admin", permissions=["clipboard-read", "clipboard-write"])
    page.goto(live_server.url("/console/keys"))
    page.click("#create-key-form button[type=submit]")
    secret = page.text_content("#one-time-secret").strip()

    # The Clipboard API needs the document focused; other pages of this process's browser may be
    # in front.
    page.bring_to_front()
    page.click("button[data-copy]")

    expect(page.locator("button[data-copy]")).to_have_class(re.compile(r"\bcopied\b"))
    assert page.evaluate("navigator.clipboard.readText()") == secret


def test_a_revoked_key_is_refused_by_the_api(app, live_server, logged_in_page):
    key = make_key(app)
    page = logged_in_page("admin")
    page.goto(live_server.url("/console/keys"))
    questions = []
    page.on("dialog", lambda dialog: (questions.append(dialog.message), dialog.accept()))

    page.click("button:has-text('Revoke')")
    page.wait_for_selector(".badge-revoked")

    assert questions and "Revoke key" in questions[0]
    assert one(app, ApiKey, id=key.key_id).revoked_at is not None
    assert app.test_client().get("/v1/templates", headers=key.headers).status_code == 401
    assert actions(app)[-1] == "key.revoke"
    assert page.locator("button:has-text('Revoke')").count() == 0


def test_dismissing_the_confirm_keeps_the_key(app, live_server, logged_in_page):
    key = make_key(app)
    page = logged_in_page("admin")
    page.goto(live_server.url("/console/keys"))
    page.on("dialog", lambda dialog: dialog.dismiss())

    page.click("button:has-text('Revoke')")
    page.goto(live_server.url("/console/keys"))

    assert one(app, ApiKey, id=key.key_id).revoked_at is None


def test_a_viewer_sees_keys_but_cannot_create_or_revoke(app, live_server, logged_in_page):
    key = make_key(app)
    page = logged_in_page("viewer")
    page.goto(live_server.url("/console/keys"))

    assert key.secret[:15] in page.content()
    assert page.locator("#create-key-form").count() == 0
    assert page.locator("button:has-text('Revoke')").count() == 0
    token = json.loads(page.get_attribute("body", "hx-headers"))["X-CSRFToken"]  # what htmx would send
    forged = page.request.post(live_server.url("/console/keys"),
                               form={"csrf_token": token, "name": "x", "mode": "live"})
    revoke = page.request.post(live_server.url(f"/console/keys/{key.key_id}/revoke"), form={"csrf_token": token})

    assert forged.status == revoke.status == 403
    assert "Admins only" in forged.text()
    with app.app_context():
        assert db.session.scalars(select(ApiKey)).all()[0].revoked_at is None
        assert db.session.query(ApiKey).count() == 1


ADMIN_POSTS = ["/console/keys", "/console/keys/key_x/revoke", "/console/users", "/console/users/usr_x/role",
               "/console/users/usr_x/delete", "/console/settings", "/console/templates/sync", "/console/webhooks",
               "/console/webhooks/rotate", "/console/webhooks/deliveries/whd_x/redeliver", "/console/fraud/settings",
               "/console/fraud/unblock"]


def test_every_admin_action_answers_403_to_a_viewer(app, console_client, viewer_user):
    client = console_client(viewer_user)
    token = form_token(client)
    for path in ADMIN_POSTS:
        assert client.post(path, data={"csrf_token": token}).status_code == 403, path
    assert actions(app) == []


def test_a_viewer_reads_every_admin_page(app, console_client, viewer_user):
    client = console_client(viewer_user)
    for path in ("/console/keys", "/console/users", "/console/audit", "/console/settings", "/console/sandbox",
                 "/console/templates", "/console/webhooks", "/console/fraud"):
        answer = client.get(path)
        html = answer.get_data(as_text=True)
        assert answer.status_code == 200, path
        # The app and language switches and sign-out are every user's own; no admin action form.
        assert re.findall(r'<form method="post" action="([^"]+)"', html) == [
            "/console/app", "/console/language", "/console/logout"], path


# Users --------------------------------------------------------------------------------------

def test_a_user_with_a_generated_password_is_shown_it_once(app, live_server, logged_in_page):
    page = logged_in_page("admin")
    page.goto(live_server.url("/console/users"))
    page.fill("#create-user-form input[name=email]", "New.Viewer@example.com")
    page.select_option("#create-user-form select[name=role]", "viewer")
    page.click("#create-user-form button[type=submit]")

    password = page.text_content("#one-time-secret").strip()
    user = one(app, User, email="new.viewer@example.com")
    assert user.role == "viewer"
    with app.app_context():
        assert db.session.get(User, user.id).check_password(password)
    page.reload()
    assert password not in page.content()
    assert "new.viewer@example.com" in page.content()
    audit = one(app, AuditEntry, action="user.create")
    assert audit.details == {"email": "new.viewer@example.com", "role": "viewer", "generated_password": True}


def test_a_typed_password_is_kept_and_a_duplicate_email_refused(app, console_client, admin_user):
    client = console_client(admin_user)
    created = post(client, "/console/users", email="ops@example.com", role="admin", password="a long password")
    again = post(client, "/console/users", email="OPS@example.com", role="viewer", password="")
    short = post(client, "/console/users", email="x@example.com", role="viewer", password="short")

    assert created.status_code == 302
    assert again.status_code == short.status_code == 400
    assert "exists already" in again.get_data(as_text=True)
    with app.app_context():
        ops = db.session.scalars(select(User).where(User.email == "ops@example.com")).one()
        assert ops.role == "admin" and ops.check_password("a long password")
        assert db.session.query(User).count() == 2


def test_the_last_admin_cannot_be_demoted_or_deleted(app, console_client, admin_user, viewer_user):
    client = console_client(admin_user)
    demote = post(client, f"/console/users/{admin_user.id}/role", role="viewer")
    assert "is the last admin" in client.get(demote.headers["Location"]).get_data(as_text=True)
    post(client, f"/console/users/{admin_user.id}/delete")

    other = create_user(app, "second@example.com", "admin")
    post(client, f"/console/users/{other.id}/delete")  # two admins: deleting one is fine
    demote_again = post(client, f"/console/users/{admin_user.id}/role", role="viewer")
    promote = post(client, f"/console/users/{viewer_user.id}/role", role="admin")

    assert demote_again.status_code == promote.status_code == 302
    with app.app_context():
        roles = dict(db.session.execute(select(User.email, User.role)).all())
    assert roles == {admin_user.email: "admin", viewer_user.email: "admin"}
    assert actions(app) == ["user.delete", "user.role"]
    entry = one(app, AuditEntry, action="user.role")
    assert entry.details == {"email": viewer_user.email, "old": "viewer", "new": "admin"}


def test_deleting_a_user_keeps_their_audit_trail(app, console_client, admin_user):
    other = create_user(app, "leaving@example.com", "admin")
    post(console_client(other), "/console/keys", name="theirs", mode="test")

    post(console_client(admin_user), f"/console/users/{other.id}/delete")

    entry = one(app, AuditEntry, action="key.create")
    assert entry.actor == "leaving@example.com" and entry.user_id is None
    with app.app_context():
        assert db.session.get(User, other.id) is None


def test_in_the_browser_a_user_is_deleted_after_a_confirm(app, live_server, logged_in_page):
    create_user(app, "temp@example.com", "viewer")
    page = logged_in_page("admin")
    page.goto(live_server.url("/console/users"))
    page.on("dialog", lambda dialog: dialog.accept())

    page.click("tr:has-text('temp@example.com') button:has-text('Delete')")
    page.wait_for_selector("text=Deleted temp@example.com.")

    assert page.locator("td:has-text('temp@example.com')").count() == 0
    assert page.locator(f"tr:has-text('{page.user.email}') button:has-text('Delete')").count() == 0  # not yourself


# Audit log ----------------------------------------------------------------------------------

def test_the_audit_log_shows_actions_newest_first_and_filters(app, live_server, logged_in_page):
    page = logged_in_page("admin")
    page.goto(live_server.url("/console/keys"))
    page.click("#create-key-form button[type=submit]")
    page.goto(live_server.url("/console/audit"))

    rows = page.locator("tbody tr")
    assert rows.nth(0).locator("td").nth(2).text_content() == "key.create"
    assert rows.nth(1).locator("td").nth(2).text_content() == "login"
    assert rows.nth(0).locator("td").nth(1).text_content() == page.user.email
    assert rows.nth(0).locator("td").nth(5).text_content() == "127.0.0.1"

    page.select_option("select[name=action]", "login")
    page.click("button:has-text('Filter')")
    page.wait_for_url(re.compile(r"action=login"))
    expect(page.locator("tbody tr")).to_have_count(1)
    assert page.locator("tbody td").nth(2).text_content() == "login"


def test_the_audit_log_pages_by_id(app, console_client, admin_user):
    with app.app_context():
        db.session.add_all(AuditEntry(actor="cli", action=f"test.{i % 2}", details={"i": i}) for i in range(120))
        db.session.commit()
    client = console_client(admin_user)

    seen, url = [], "/console/audit"
    while url:
        html = client.get(url).get_data(as_text=True)
        seen += [int(i) for i in re.findall(r"i</span>=<code>(\d+)</code>", html)]
        found = re.search(r'href="([^"]+)" rel="next"', html)
        url = found.group(1).replace("&amp;", "&") if found else None
    only_odd = client.get("/console/audit?action=test.1&actor=cli").get_data(as_text=True)

    assert seen == list(range(119, -1, -1))
    assert [int(i) % 2 for i in re.findall(r"i</span>=<code>(\d+)</code>", only_odd)] == [1] * 50


# Settings -----------------------------------------------------------------------------------

def test_settings_reject_bad_values_and_save_good_ones(app, live_server, logged_in_page):
    page = logged_in_page("admin")
    page.goto(live_server.url("/console/settings"))
    page.fill("input[name=otp_length]", "3")
    page.fill("input[name=otp_ttl]", "1000")
    page.fill("input[name=allowed_countries]", "TR, XX")
    page.fill("input[name=api_rate_limit]", "lots per minute")
    page.click("#settings-form button[type=submit]")

    errors = page.locator(".field.has-error").all_text_contents()
    assert len(errors) == 4
    assert any("Not ISO 3166 country codes: XX" in e for e in errors)
    assert any("120/minute" in e for e in errors)
    assert one(app, App, name="default").otp_length == 6  # nothing saved

    page.fill("input[name=otp_length]", "8")
    page.fill("input[name=otp_ttl]", "600")
    page.fill("input[name=allowed_countries]", "tr de  TR")
    page.fill("input[name=api_rate_limit]", "")
    page.fill("input[name=recipient_rate_limit]", "3/15minutes;6/day")
    page.fill("input[name=daily_send_cap]", "500")
    page.click("#settings-form button[type=submit]")
    page.wait_for_selector("text=Saved 5 setting(s)")

    saved = one(app, App, name="default")
    assert (saved.otp_length, saved.otp_ttl, saved.allowed_countries) == (8, 600, "TR,DE")
    assert (saved.api_rate_limit, saved.recipient_rate_limit, saved.daily_send_cap) == (None, "3/15minutes;6/day", 500)
    entry = one(app, AuditEntry, action="settings.update")
    assert entry.details["changes"]["otp_length"] == [6, 8]


def test_saved_settings_rule_the_api(app, console_client, admin_user, client):
    key = make_key(app)
    post(console_client(admin_user), "/console/settings", otp_length="4", otp_ttl="120", max_attempts="2",
         allowed_countries="DE", default_language="en")

    refused = send(client, key, "+905551234567")
    sent = send(client, key, "+4915123456789")

    assert refused.status_code == 400 and refused.json["error"]["code"] == "COUNTRY_NOT_ALLOWED"
    assert sent.status_code == 201


def test_a_viewer_sees_settings_disabled(app, live_server, logged_in_page):
    page = logged_in_page("viewer")
    page.goto(live_server.url("/console/settings"))
    assert page.locator("input[name=otp_length]").is_disabled()
    assert page.locator("#settings-form button[type=submit]").count() == 0


# The app switcher ---------------------------------------------------------------------------

def test_the_app_switcher_changes_the_app_every_page_shows(app, live_server, logged_in_page):
    make_key(app, "default")
    shop = make_key(app, "shop")
    page = logged_in_page("viewer")
    page.goto(live_server.url("/console/keys"))
    assert shop.secret[:15] not in page.content()

    page.select_option("#app-switch", label="shop")  # console.js submits on change
    page.wait_for_selector("text=Now looking at app shop.")

    assert page.url == live_server.url("/console/keys")
    assert shop.secret[:15] in page.content()
    page.goto(live_server.url("/console/settings"))
    assert "shop" in page.text_content("h1")


# Sandbox ------------------------------------------------------------------------------------

def test_the_sandbox_shows_this_apps_codes_only(app, console_client, admin_user, client, run_worker, outbox):
    mine = make_key(app, "default")
    other = make_key(app, "other")
    assert send(client, mine, "+905551110001").status_code == 201
    assert send(client, other, "+905551110002").status_code == 201
    run_worker()

    html = console_client(admin_user).get("/console/sandbox").get_data(as_text=True)

    (message,) = outbox("+905551110001")
    assert f'<code class="code-value">{message["code"]}</code>' in html
    assert "+905551110001" in html and "+905551110002" not in html
    assert "test keys" in html


def test_the_sandbox_shows_this_apps_sms_too(app, console_client, admin_user, client, run_worker):
    mine = make_key(app, "default")
    other = make_key(app, "other")
    sms = client.post("/v1/otp/send", headers=mine.headers,
                      json={"recipient": "+905551110003", "code": "736251", "channel": "sms"})
    assert sms.status_code == 201
    assert client.post("/v1/otp/send", headers=other.headers,
                       json={"recipient": "+905551110004", "channel": "sms"}).status_code == 201
    run_worker()

    html = console_client(admin_user).get("/console/sandbox").get_data(as_text=True)

    assert "736251 is your default verification code" in html and sms.json["id"] in html
    assert "+905551110004" not in html


# Templates ----------------------------------------------------------------------------------

def graph_templates(seen):
    return Reply(200, {"data": [{"name": "console_code", "language": "en", "status": "APPROVED",
                                 "category": "AUTHENTICATION",
                                 "components": [{"type": "BODY", "text": "*{{1}}* is your code."}]}],
                       "paging": {}})


def test_the_sync_button_appears_only_when_the_cloud_api_is_set(app, make_app, admin_user, console_client):
    plain = console_client(admin_user).get("/console/templates").get_data(as_text=True)
    assert "Sync from WhatsApp" not in plain
    assert "wpotp_verification" in plain or "<td>" in plain

    configured = make_app(WHATSAPP_WABA_ID="998877", WHATSAPP_TOKEN="test-token").test_client()
    with configured.session_transaction() as sess:
        sess["_user_id"] = admin_user.id
    assert "Sync from WhatsApp" in configured.get("/console/templates").get_data(as_text=True)


def test_syncing_templates_flashes_the_counts(app, make_app, admin_user, live_server, serve, new_page,
                                              restore_templates):
    with HttpDouble(graph_templates) as graph:
        synced_app = make_app(WHATSAPP_WABA_ID="998877", WHATSAPP_TOKEN="test-token", WHATSAPP_GRAPH_URL=graph.url)
        server = serve(synced_app)
        page = new_page()
        from .conftest import sign_in

        sign_in(page, server, admin_user, next_path="/console/templates")
        page.click("button:has-text('Sync from WhatsApp')")
        page.wait_for_selector(".flash-success")

        assert "1 fetched, 1 created" in page.text_content(".flash-success")
        assert "console_code" in page.content()
        assert graph.seen[0].path.startswith("/v23.0/998877/message_templates")
    entry = one(app, AuditEntry, action="templates.sync")
    assert entry.details["ok"] is True and entry.details["created"] == 1


def test_a_failed_sync_says_why(app, make_app, admin_user):
    with HttpDouble(lambda seen: Reply(401, {"error": {"message": "Invalid OAuth access token.", "code": 190}})) \
            as graph:
        failing = make_app(WHATSAPP_WABA_ID="998877", WHATSAPP_TOKEN="test-token", WHATSAPP_GRAPH_URL=graph.url)
        client = failing.test_client()
        with client.session_transaction() as sess:
            sess["_user_id"] = admin_user.id
        answer = post(client, "/console/templates/sync")
        html = client.get(answer.headers["Location"]).get_data(as_text=True)

    assert "Sync failed" in html and "test-token" not in html
    entry = one(app, AuditEntry, action="templates.sync")
    assert entry.details["ok"] is False


# Webhooks -----------------------------------------------------------------------------------

def test_webhooks_set_shows_the_secret_once_and_rotate_replaces_it(app, live_server, logged_in_page):
    page = logged_in_page("admin")
    page.goto(live_server.url("/console/webhooks"))
    page.fill("#webhook-form input[name=url]", "http://127.0.0.1:9/first")
    for name in ("otp.read", "message.sent", "message.delivered", "message.read", "message.failed"):
        page.uncheck(f"#webhook-form input[value='{name}']")
    page.click("#webhook-form button[type=submit]")

    first = page.text_content("#one-time-secret").strip()
    assert first.startswith("whsec_")
    endpoint = one(app, WebhookEndpoint)
    assert endpoint.events == ["otp.sent", "otp.delivered", "otp.verified", "otp.failed", "otp.expired",
                               "otp.canceled"]
    assert endpoint.secret_prefix == first[:10]
    page.reload()
    assert first not in page.content()

    page.fill("#webhook-form input[name=url]", "http://127.0.0.1:9/second")  # a new URL keeps the secret
    page.click("#webhook-form button[type=submit]")
    expect(page.locator("#endpoint-url")).to_have_text("http://127.0.0.1:9/second")
    assert page.locator("#one-time-secret").count() == 0
    assert one(app, WebhookEndpoint).secret_prefix == first[:10]

    page.on("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Rotate secret')")
    second = page.text_content("#one-time-secret").strip()
    assert second.startswith("whsec_") and second != first
    assert one(app, WebhookEndpoint).secret_prefix == second[:10]
    assert actions(app)[-3:] == ["webhook.set", "webhook.set", "webhook.rotate"]


def test_an_unsafe_or_empty_webhook_is_refused_on_the_form(app, make_app, admin_user):
    strict = make_app(WEBHOOK_ALLOW_PRIVATE=False, WEBHOOK_ALLOW_LOOPBACK=False).test_client()  # as in production
    with strict.session_transaction() as sess:
        sess["_user_id"] = admin_user.id

    private = post(strict, "/console/webhooks", url="http://127.0.0.1:8080/hook", events="otp.sent")
    no_events = post(strict, "/console/webhooks", url="https://example.com/hook")
    bad_scheme = post(strict, "/console/webhooks", url="ftp://example.com/hook", events="otp.sent")

    assert private.status_code == no_events.status_code == bad_scheme.status_code == 400
    assert "WEBHOOK_ALLOW_PRIVATE" in private.get_data(as_text=True)
    assert "Pick at least one event." in no_events.get_data(as_text=True)
    assert "http:// or https://" in bad_scheme.get_data(as_text=True)
    with app.app_context():
        assert db.session.query(WebhookEndpoint).count() == 0


def test_deliveries_show_their_attempts_and_can_be_redelivered(app, live_server, logged_in_page, client,
                                                               run_worker):
    key = make_key(app)
    page = logged_in_page("admin")
    page.goto(live_server.url("/console/webhooks"))
    page.fill("#webhook-form input[name=url]", CLOSED_PORT_URL)
    page.click("#webhook-form button[type=submit]")
    assert send(client, key, "+905551110003").status_code == 201
    run_worker()  # sends the OTP; the otp.sent delivery's first attempt is refused; its retry waits

    page.goto(live_server.url("/console/webhooks"))
    row = page.locator("tbody tr:has-text('otp.sent')")
    assert row.locator(".badge").text_content() == "pending"
    row.locator("a:has-text('Attempts')").click()
    attempt = page.locator("tbody tr").first
    assert attempt.locator("td").nth(0).text_content() == "1"
    assert "none" in attempt.locator("td").nth(2).text_content()  # no status code: the connection was refused
    assert attempt.locator(".error").count() == 1

    page.click("button:has-text('Redeliver')")
    page.wait_for_selector("text=Queued a new delivery of otp.sent")
    with app.app_context():
        deliveries = db.session.scalars(select(WebhookDelivery).where(WebhookDelivery.event_type == "otp.sent")).all()
        assert len(deliveries) == 2
    assert actions(app)[-1] == "webhook.redeliver"


# No inline script or style anywhere (the CSP would block it) -----------------------------------

def test_console_pages_have_no_inline_script_or_style(app, console_client, admin_user, client, run_worker):
    key = make_key(app)
    otp_id = send(client, key, "+905551110004").json["id"]
    run_worker()
    signed_in = console_client(admin_user)
    pages = ["/console/", "/console/keys", "/console/users", "/console/audit",
             "/console/settings", "/console/sandbox", "/console/templates", "/console/webhooks",
             "/console/otps", f"/console/otps/{otp_id}", "/console/attempts", "/console/rate-limits",
             "/console/reports", "/console/fraud"]
    checked = 0
    for path in ["/console/login", *pages]:
        answer = (client if path == "/console/login" else signed_in).get(path)
        if answer.status_code == 404 and path != "/console/":
            continue  # a page another part of the console has not built yet
        html = answer.get_data(as_text=True)
        assert answer.status_code == 200, path
        # a script is a file; a JSON data block (not run) is the one allowed exception
        assert not re.search(r'<script(?![^>]*\b(src=|type="application/json"))[^>]*>', html), path
        assert not re.search(r"\sstyle\s*=", html), path
        assert not re.search(r"\son[a-z]+\s*=", html), path
        assert "<style" not in html, path
        checked += 1
    assert checked >= 9


def test_no_page_breaks_the_content_security_policy_in_a_browser(app, live_server, logged_in_page):
    page = logged_in_page("admin")
    violations = []
    page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    for path in ("/console/", "/console/keys", "/console/users", "/console/audit", "/console/settings",
                 "/console/sandbox", "/console/templates", "/console/webhooks", "/console/otps",
                 "/console/reports", "/console/fraud"):
        page.goto(live_server.url(path))
        page.wait_for_load_state("networkidle")
    assert violations == []


def test_the_phone_layout_folds_the_menu(app, live_server, logged_in_page):
    page = logged_in_page("admin", viewport={"width": 390, "height": 844})
    page.goto(live_server.url("/console/keys"))
    assert page.locator("#main-nav").is_hidden()

    page.click(".nav-toggle")

    assert page.locator("#main-nav").is_visible()
    assert page.locator(".nav-toggle").get_attribute("aria-expanded") == "true"
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # wide tables scroll inside their box


def test_another_apps_webhook_delivery_is_not_found_from_this_apps_console(app, admin_user, console_client):
    """The console acts on the app it is looking at: another app's delivery answers 404, even to an admin."""
    other = make_key(app, "other")
    with app.app_context():
        from wpotp.models import Event

        event = Event(app_id=other.app_id, type="otp.sent", data={"status": "SENT"})
        db.session.add(event)
        db.session.flush()
        delivery = WebhookDelivery(app_id=other.app_id, event_id=event.id, event_type="otp.sent",
                                   url="https://example.com/hook", status="succeeded", attempts=1)
        db.session.add(delivery)
        db.session.commit()
        delivery_id = delivery.id
    make_key(app)  # the "default" app, the one the console shows
    client = console_client(admin_user)
    assert client.get(f"/console/webhooks/deliveries/{delivery_id}").status_code == 404
    token = form_token(client)
    r = client.post(f"/console/webhooks/deliveries/{delivery_id}/redeliver", data={"csrf_token": token})
    assert r.status_code == 404
    with app.app_context():
        assert db.session.query(WebhookDelivery).count() == 1
