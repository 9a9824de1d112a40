"""The console in Turkish and English, in each user's time zone (issue 16).

The catalogue tests read wpotp/translations; the browser tests walk every page in Debian's
Chromium and compare what is visible with the catalogue: no English a catalogue entry translates
may show on a Turkish page.
"""

from __future__ import annotations

import gettext
import re
from datetime import datetime
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from playwright.sync_api import expect
from sqlalchemy import select

from tests.helpers import make_key
from tests.providers.cloud_api.graph import SETTINGS, GraphDouble, signed, status_item, status_webhook
from wpotp.extensions import db
from wpotp.models import AuditEntry, User, WebhookDelivery
from wpotp.webhooks.endpoints import configure_endpoint

from .conftest import create_user, sign_in
from .test_otps import number, send_otp, verify

ROOT = Path(__file__).resolve().parents[2]
TRANSLATIONS = ROOT / "wpotp" / "translations"
PLACEHOLDER = re.compile(r"%\(\w+\)s|<[^>]+>")

# Visible text of a page without what is data, not wording: ids, codes, numbers, emails, template
# bodies and sandbox messages (marked translate="no"), response excerpts.
VISIBLE_TEXT = """() => {
  const body = document.body.cloneNode(true);
  body.querySelectorAll('code, pre, .mono, [translate=no], script, style, select option:not(:checked), datalist')
      .forEach(el => el.remove());
  return body.innerText;
}"""
# Whole English words that never belong on a Turkish page, whatever the catalogue says.
ENGLISH_WORDS = re.compile(r"\b(the|and|with|yet|Nothing|your|Your|this|This|per|from|From)\b")


def turkish_catalogue() -> list:
    with open(TRANSLATIONS / "tr" / "LC_MESSAGES" / "messages.po", "rb") as f:
        return [m for m in read_po(f) if m.id]


# --- the catalogues ---------------------------------------------------------------------------------

def test_every_message_in_the_code_has_a_turkish_translation():
    method_map = [("**.py", "python"), ("templates/**.html", "jinja2")]  # as babel.cfg says
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "_l": None, "lazy_gettext": None}
    in_code = {msg[2] if isinstance(msg[2], str) else msg[2][0]
               for msg in extract_from_dir(str(ROOT / "wpotp"), method_map, keywords=keywords)}
    translated = {m.id if isinstance(m.id, str) else m.id[0]: m for m in turkish_catalogue()}
    missing = sorted(in_code - set(translated))
    assert not missing, f"not in messages.po (run `make translations`): {missing[:10]}"
    empty = sorted(i for i in in_code if not (translated[i].string if isinstance(translated[i].string, str)
                                             else translated[i].string[0]))
    assert not empty, f"untranslated in messages.po: {empty[:10]}"
    assert not [m.id for m in turkish_catalogue() if m.fuzzy], "fuzzy entries in messages.po"


def test_the_committed_mo_file_says_what_the_po_file_says():
    with open(TRANSLATIONS / "tr" / "LC_MESSAGES" / "messages.mo", "rb") as f:
        compiled = gettext.GNUTranslations(f)
    stale = []
    for m in turkish_catalogue():
        if isinstance(m.id, str):
            if compiled.gettext(m.id) != m.string:
                stale.append(m.id)
        elif compiled.ngettext(m.id[0], m.id[1], 5) != m.string[1]:
            stale.append(m.id[0])
    assert not stale, f"messages.mo is out of date (run `make translations`): {stale[:5]}"


def test_placeholders_survive_translation():
    for m in turkish_catalogue():
        source = m.id if isinstance(m.id, str) else m.id[1]
        target = m.string if isinstance(m.string, str) else m.string[1]
        assert sorted(re.findall(r"%\(\w+\)s", source)) == sorted(re.findall(r"%\(\w+\)s", target)), source
        assert sorted(re.findall(r"<(\w+)", source)) == sorted(re.findall(r"<(\w+)", target)), source


# --- a realistic console to walk --------------------------------------------------------------------

def seed_console(app, client, run_worker) -> dict:
    """Keys, OTPs in every state, attempts, a webhook endpoint and its deliveries, audit entries."""
    key = make_key(app)
    with app.app_context():
        from wpotp.models import App

        default = db.session.scalars(select(App).where(App.name == "default")).one()
        configure_endpoint(default, "http://127.0.0.1:9/wpotp-events", [], allow_private=True)
        db.session.add(AuditEntry(actor="cli", action="settings.update", target=default.id,
                                  details={"changes": {"otp_length": [6, 4]}}))
        db.session.commit()
    otps = [send_otp(client, key, number(i), reference=f"order-{i}") for i in range(4)]
    send_otp(client, key, "+4915123000001")
    run_worker()
    verify(client, key, otps[0]["id"], "000000")
    client.post(f"/v1/otp/{otps[1]['id']}/cancel", headers=key.headers)
    run_worker()
    with app.app_context():
        delivery = db.session.scalars(select(WebhookDelivery)).first()
    return {"otp_id": otps[0]["id"], "delivery_id": delivery.id if delivery else None}


def console_paths(seeded: dict) -> list[str]:
    paths = ["/console/", "/console/keys", "/console/otps", f"/console/otps/{seeded['otp_id']}",
             "/console/attempts", "/console/rate-limits", f"/console/rate-limits?recipient={number(0)}",
             "/console/reports", "/console/reports?interval=hour", "/console/templates", "/console/webhooks",
             "/console/settings", "/console/fraud", "/console/sandbox", "/console/users", "/console/audit",
             "/console/account", "/console/otps/otp_doesnotexist"]
    if seeded["delivery_id"]:
        paths.append(f"/console/webhooks/deliveries/{seeded['delivery_id']}")
    return paths


def english_left(text: str, catalogue: list) -> list[str]:
    """Catalogue wording (English, translated differently in Turkish) found in `text`."""
    # `piece in text` first: the pattern can match only where the piece itself is, and the
    # substring test is a hundred times cheaper than the search with its lookarounds.
    found = [piece for piece, pattern in _english_patterns(catalogue) if piece in text and pattern.search(text)]
    found += [f"word {w!r}" for w in ENGLISH_WORDS.findall(text)]
    return sorted(set(found))


_PATTERNS: dict[int, tuple[list, list[tuple[str, re.Pattern]]]] = {}


def _english_patterns(catalogue: list) -> list[tuple[str, re.Pattern]]:
    """(piece, its compiled pattern) for every piece of catalogue wording english_left looks for,
    compiled once per catalogue (there are more than re's cache holds)."""
    if id(catalogue) not in _PATTERNS or _PATTERNS[id(catalogue)][0] is not catalogue:
        patterns = []
        for m in catalogue:
            source = m.id if isinstance(m.id, str) else m.id[0]
            target = m.string if isinstance(m.string, str) else m.string[0]
            if source == target:
                continue
            for piece in PLACEHOLDER.split(source):
                piece = piece.strip(" .,:;()…→←·")
                if len(piece) >= 4 and re.search(r"[A-Za-z]{3}", piece):
                    patterns.append((piece, re.compile(r"(?<![\w./-])" + re.escape(piece) + r"(?![\w'’-])")))
        _PATTERNS[id(catalogue)] = (catalogue, patterns)
    return _PATTERNS[id(catalogue)][1]


def test_every_page_in_turkish_shows_no_untranslated_english(app, client, run_worker, live_server, new_page):
    seeded = seed_console(app, client, run_worker)
    user = create_user(app, "yonetici@example.com", "admin")
    with app.app_context():
        db.session.get(User, user.id).language = "tr"
        db.session.commit()
    page = new_page(locale="en-US")  # the user's own setting wins over the browser
    sign_in(page, live_server, user)
    catalogue = turkish_catalogue()
    problems = {}
    for path in console_paths(seeded):
        page.goto(live_server.url(path))
        assert page.get_attribute("html", "lang") == "tr", path
        left = english_left(page.evaluate(VISIBLE_TEXT), catalogue)
        if left:
            problems[path] = left
    assert problems == {}


def test_every_page_in_english_is_english(app, client, run_worker, live_server, logged_in_page):
    seeded = seed_console(app, client, run_worker)
    page = logged_in_page("admin", locale="en-US")
    for path in console_paths(seeded):
        page.goto(live_server.url(path))
        assert page.get_attribute("html", "lang") == "en", path
        text = page.evaluate(VISIBLE_TEXT)
        assert "Overview" in text and "Genel bakış" not in text, path
        assert not re.search(r"[ğışĞİŞ]", text), path  # no Turkish wording leaked into English


def test_a_turkish_browser_gets_turkish_without_any_setting(app, live_server, new_page, admin_user):
    page = new_page(locale="tr-TR")
    page.goto(live_server.url("/console/login"))
    assert page.get_attribute("html", "lang") == "tr"
    assert page.inner_text("button[type=submit]") == "Giriş yap"
    page.fill("input[name=email]", admin_user.email)
    page.fill("input[name=password]", "wrong password")
    page.click("button[type=submit]")
    assert "E-posta veya şifre hatalı." in page.inner_text("form")
    sign_in(page, live_server, admin_user)
    assert page.inner_text("h1").startswith("default uygulamasına genel bakış")
    assert "Canlı kayıt" in page.inner_text("#main-nav")


def test_an_english_browser_gets_english_and_the_default_applies_without_a_header(app, make_app, admin_user):
    assert "Sign in" in app.test_client().get("/console/login").get_data(as_text=True)
    turkish_install = make_app(CONSOLE_LANGUAGE="tr")
    html = turkish_install.test_client().get("/console/login").get_data(as_text=True)
    assert '<html lang="tr">' in html and "Giriş yap" in html  # no Accept-Language: the install's default
    html = turkish_install.test_client().get("/console/login", headers={"Accept-Language": "en-GB"}).data.decode()
    assert '<html lang="en">' in html  # the browser's language comes before the default


def test_the_header_switch_changes_the_language_and_remembers_it(app, live_server, logged_in_page):
    page = logged_in_page("viewer", locale="en-US")
    page.goto(live_server.url("/console/keys"))
    page.select_option("#language-switch", "tr")
    # The switch submits a form: while the next page loads there is no <html> element to read, so wait with a
    # locator assertion (it retries across the navigation) rather than a script that would read null.
    expect(page.locator("html")).to_have_attribute("lang", "tr")
    assert page.url.endswith("/console/keys")
    assert page.inner_text("h1").startswith("API anahtarları")
    with app.app_context():
        assert db.session.scalars(select(User.language).where(User.email == page.user.email)).one() == "tr"
    page.goto(live_server.url("/console/reports"))
    assert page.inner_text("h1") == "Raporlar"


def test_the_login_page_switch_works_before_sign_in(app, live_server, page):
    page.goto(live_server.url("/console/login"))
    page.select_option("#language-switch", "tr")
    # The switch submits a form: while the next page loads there is no <html> element to read, so wait with a
    # locator assertion (it retries across the navigation) rather than a script that would read null.
    expect(page.locator("html")).to_have_attribute("lang", "tr")
    assert page.inner_text("button[type=submit]") == "Giriş yap"


def test_times_show_in_the_users_zone_with_utc_in_the_tooltip(app, console_client, admin_user):
    with app.app_context():
        user = db.session.get(User, admin_user.id)
        user.timezone, user.language = "Europe/Istanbul", "tr"
        db.session.add(AuditEntry(actor="cli", action="login", created_at=datetime(2026, 3, 10, 9, 30, 5)))
        db.session.commit()
    html = console_client(admin_user).get("/console/audit").get_data(as_text=True)
    # 09:30:05 UTC is 12:30:05 in Istanbul (UTC+3), in Turkish date words; UTC in the tooltip.
    stamp = '<time datetime="2026-03-10T09:30:05Z" title="2026-03-10 09:30:05 UTC">10 Mar 2026 12:30:05</time>'
    assert stamp in html, re.findall(r"<time[^>]*>[^<]*</time>", html)[:3]
    assert "Saatler Europe/Istanbul saat dilimindedir." in html  # the page names the zone


def test_the_account_page_saves_language_and_zone_and_refuses_a_made_up_zone(app, console_client, admin_user):
    from .conftest import form_token

    client = console_client(admin_user)
    token = form_token(client, "/console/account")
    bad = client.post("/console/account", data={"csrf_token": token, "language": "tr", "timezone": "Mars/Olympus"})
    assert bad.status_code == 400 and "Pick a time zone from the list." in bad.get_data(as_text=True)
    ok = client.post("/console/account", data={"csrf_token": token, "language": "tr", "timezone": "Europe/Istanbul"})
    assert ok.status_code == 302
    with app.app_context():
        user = db.session.get(User, admin_user.id)
        assert (user.language, user.timezone) == ("tr", "Europe/Istanbul")
        entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "account.update")).one()
        assert entry.details["changes"]["timezone"] == [None, "Europe/Istanbul"]
    html = client.get("/console/account").get_data(as_text=True)
    assert "Diliniz ve saat diliminiz kaydedildi." in html and "Europe/Istanbul" in html


# --- the live log follows receipts --------------------------------------------------------------------

@pytest.fixture
def graph():
    with GraphDouble() as double:
        yield double


def test_a_row_in_the_open_log_moves_from_sent_to_read_without_a_reload(app, make_app, graph, serve, new_page,
                                                                        run_worker):
    cloud = make_app(WHATSAPP_GRAPH_URL=graph.url, **SETTINGS)
    server = serve(cloud)
    key = make_key(cloud, mode="live")
    client = cloud.test_client()
    otp = send_otp(client, key, number(7))
    run_worker(cloud)  # the worker hands it to the Graph double: SENT
    page = new_page()
    sign_in(page, server, create_user(cloud, "watcher@example.com", "viewer"))
    page.goto(server.url("/console/otps"))
    row = f"#row-{otp['id']} .otp-status .badge"
    assert page.get_attribute(row, "data-status") == "SENT"
    page.evaluate("window.__marker = 'still the same page'")

    wamid = graph.wamids[-1]
    for status in ("delivered", "read"):  # Meta's signed receipts, through the real inbound webhook
        raw, headers = signed(status_webhook(status_item(wamid, status)))
        assert client.post("/webhooks/whatsapp", data=raw, headers=headers).status_code == 200
        run_worker(cloud)
    page.wait_for_selector(f"{row}[data-status=READ]")

    assert page.evaluate("window.__marker") == "still the same page"
    assert page.locator(f"#row-{otp['id']}").count() == 1  # replaced in place, not added again


def test_the_poll_answers_moved_rows_with_one_query_whatever_their_number(app, console_client, admin_user, client):
    from sqlalchemy import event, update

    from wpotp.models import Otp

    key = make_key(app)
    ids = [send_otp(client, key, number(i))["id"] for i in range(30)]
    admin = console_client(admin_user)
    shown = ",".join(f"{i}:QUEUED:0" for i in ids)

    def queries_for(moved: list[str]) -> tuple[int, str]:
        with app.app_context():
            db.session.execute(update(Otp).where(Otp.id.in_(moved)).values(status="READ"))
            db.session.commit()
        statements = []
        with app.app_context():
            listener = lambda *a: statements.append(a[2])  # noqa: E731
            event.listen(db.engine, "before_cursor_execute", listener)
            try:
                html = admin.get("/console/otps/rows", query_string={"shown": shown}).get_data(as_text=True)
            finally:
                event.remove(db.engine, "before_cursor_execute", listener)
        return len(statements), html

    few, html_few = queries_for(ids[:1])
    many, html_many = queries_for(ids[:25])
    assert few == many
    assert html_few.count('hx-swap-oob="true" ') + html_few.count('hx-swap-oob="true">') >= 1
    assert len(re.findall(r'<tr id="row-otp_\w+"[^>]*hx-swap-oob', html_many)) == 25
    unchanged = admin.get("/console/otps/rows", query_string={"shown": ",".join(f"{i}:READ:0" for i in ids[:25])})
    assert "hx-swap-oob=\"true\"" in unchanged.get_data(as_text=True)  # the marker only
    assert not re.findall(r'<tr id="row-otp_\w+"[^>]*hx-swap-oob', unchanged.get_data(as_text=True))
