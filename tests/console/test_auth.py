"""Console sign-in: passwords, the login limit, a safe `next`, logout, CSRF and the headers."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from wpotp.extensions import db
from wpotp.models import AuditEntry

from .conftest import create_user, form_token, sign_in

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def audit_rows(app, action: str) -> list[AuditEntry]:
    with app.app_context():
        rows = db.session.scalars(select(AuditEntry).where(AuditEntry.action == action)
                                  .order_by(AuditEntry.id)).all()
        db.session.expunge_all()
        return rows


def try_login(page, server, email: str, password: str):
    """Submit the login form; returns the HTTP answer to the POST."""
    page.goto(server.url("/console/login"))
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    with page.expect_response(lambda r: r.request.method == "POST" and "/console/login" in r.url) as answer:
        page.click("button[type=submit]")
    page.wait_for_load_state()
    return answer.value


def test_the_right_password_opens_the_console(app, live_server, page, admin_user):
    sign_in(page, live_server, admin_user)

    assert page.url == live_server.url("/console/")
    assert page.text_content(".who-email") == admin_user.email
    assert "admin" in page.text_content(".who")
    (entry,) = audit_rows(app, "login")
    assert entry.user_id == admin_user.id and entry.actor == admin_user.email and entry.ip == "127.0.0.1"


def test_a_wrong_password_or_unknown_email_gets_the_same_generic_refusal(app, live_server, page, admin_user):
    wrong = try_login(page, live_server, admin_user.email, "not-the-password")
    wrong_text = page.text_content("form")
    unknown = try_login(page, live_server, "nobody@example.com", "not-the-password")

    assert wrong.status == unknown.status == 401
    assert "Wrong email or password." in wrong_text and "Wrong email or password." in page.text_content("form")
    assert page.url.startswith(live_server.url("/console/login"))
    assert page.locator(".who-email").count() == 0
    failed = audit_rows(app, "login_failed")
    assert [e.details["email"] for e in failed] == [admin_user.email, "nobody@example.com"]
    assert all("not-the-password" not in str(e.details) for e in failed)  # never the password tried


def test_the_login_limit_refuses_the_next_post_even_with_the_right_password(app, make_app, serve, page):
    limited = make_app(LOGIN_RATE_LIMIT="3/minute")
    server = serve(limited)
    user = create_user(limited, "limited@example.com", "admin")
    for _ in range(3):
        assert try_login(page, server, user.email, "wrong password").status == 401

    fourth = try_login(page, server, user.email, user.password)

    assert fourth.status == 429
    assert re.match(r"\d+$", fourth.headers["retry-after"])
    assert "Too many attempts" in page.text_content("h1")
    assert re.search(r"Try again in \d+ seconds", page.text_content("main"))
    page.goto(server.url("/console/keys"))  # and it did not sign in
    assert page.url.startswith(server.url("/console/login"))


def test_the_login_page_itself_is_not_limited_on_get(app, make_app):
    client = make_app(LOGIN_RATE_LIMIT="2/minute").test_client()
    assert [client.get("/console/login").status_code for _ in range(4)] == [200] * 4


def test_sign_out_ends_the_session(app, live_server, page, admin_user):
    sign_in(page, live_server, admin_user)

    page.click("text=Sign out")
    page.wait_for_selector("input[name=password]")

    assert "You are signed out." in page.text_content("main")
    page.goto(live_server.url("/console/keys"))
    assert page.url == live_server.url("/console/login?next=/console/keys")
    assert [e.actor for e in audit_rows(app, "logout")] == [admin_user.email]


def test_logout_needs_a_post(app, console_client, admin_user):
    client = console_client(admin_user)
    assert client.get("/console/logout").status_code == 405
    assert client.get("/console/keys").status_code == 200


def test_a_page_asked_for_before_login_opens_after_it(app, live_server, page, admin_user):
    page.goto(live_server.url("/console/settings"))
    assert page.url == live_server.url("/console/login?next=/console/settings")

    page.fill("input[name=email]", admin_user.email)
    page.fill("input[name=password]", admin_user.password)
    page.click("button[type=submit]")
    page.wait_for_selector(".who-email")

    assert page.url == live_server.url("/console/settings")


@pytest.mark.parametrize("target", ["http://evil.example/console", "//evil.example/console", "/v1/templates",
                                    "/console\\@evil.example"])
def test_a_next_outside_the_console_is_ignored(app, live_server, page, admin_user, target):
    sign_in(page, live_server, admin_user, next_path=target.replace("/", "%2F").replace("\\", "%5C"))

    assert page.url == live_server.url("/console/")


def test_every_console_page_needs_a_login(app, client):
    for path in ("/console/", "/console/keys", "/console/users", "/console/audit", "/console/settings",
                 "/console/sandbox", "/console/templates", "/console/webhooks"):
        answer = client.get(path)
        assert answer.status_code == 302, path
        assert answer.headers["Location"] == f"/console/login?next={path}"
    assert client.post("/console/keys").status_code == 400  # no CSRF token: refused before anything else


def test_htmx_requests_are_sent_to_the_login_page_without_a_swap(app, client):
    answer = client.get("/console/keys", headers={"HX-Request": "true"})
    assert answer.status_code == 204
    assert answer.headers["HX-Redirect"] == "/console/login?next=/console/keys"


def test_a_form_without_its_csrf_token_is_refused(app, console_client, admin_user):
    client = console_client(admin_user)

    refused = client.post("/console/keys", data={"name": "no token", "mode": "test"})
    forged = client.post("/console/keys", data={"name": "bad token", "mode": "test", "csrf_token": "forged"})
    accepted = client.post("/console/keys", data={"name": "ok", "mode": "test", "csrf_token": form_token(client)})

    assert refused.status_code == forged.status_code == 400
    assert "Form refused" in refused.get_data(as_text=True)
    assert accepted.status_code == 302
    assert [e.details["name"] for e in audit_rows(app, "key.create")] == ["ok"]


def test_a_login_form_without_its_csrf_token_is_refused(app, client, admin_user):
    answer = client.post("/console/login", data={"email": admin_user.email, "password": admin_user.password})
    assert answer.status_code == 400
    assert client.get("/console/keys").status_code == 302  # not signed in


def test_console_answers_carry_the_security_headers(app, client, console_client, admin_user):
    for answer in (client.get("/console/login"), console_client(admin_user).get("/console/keys"),
                   client.post("/console/keys")):
        assert answer.headers["Content-Security-Policy"] == CSP
        assert answer.headers["X-Frame-Options"] == "DENY"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Referrer-Policy"] == "same-origin"
        assert answer.headers["Cache-Control"] == "no-store"


def test_the_session_cookie_is_http_only_and_same_site(app, client, admin_user):
    html = client.get("/console/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)
    answer = client.post("/console/login", data={"email": admin_user.email, "password": admin_user.password,
                                                 "csrf_token": token})
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_the_session_cookie_is_secure_when_configured(app, make_app, admin_user):
    client = make_app(SESSION_COOKIE_SECURE=True).test_client()
    html = client.get("/console/login", base_url="https://localhost").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)
    answer = client.post("/console/login", base_url="https://localhost",
                         data={"email": admin_user.email, "password": admin_user.password, "csrf_token": token},
                         headers={"Referer": "https://localhost/console/login"})
    assert "Secure" in answer.headers["Set-Cookie"]


def test_emails_sign_in_whatever_their_case(app, console_client, client, admin_user):
    html = client.get("/console/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)
    answer = client.post("/console/login", data={"email": "  ADMIN@Example.com ", "password": admin_user.password,
                                                 "csrf_token": token})
    assert answer.status_code == 302 and answer.headers["Location"] == "/console/"
