"""The live OTP log, an OTP's timeline and the attempts page (SPEC §10).

The browser tests drive Debian's Chromium against a live server: an OTP sent through the API
shows up in an open log without a reload. What a browser adds nothing to (filters, paging,
the query budget) goes through the test client.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from sqlalchemy import event, select, update

from tests.doubles import HttpDouble, Reply
from tests.helpers import make_key
from wpotp.extensions import db
from wpotp.models import Otp, OtpStatus, Template, VerifyAttempt
from wpotp.otp.queries import encode_cursor
from wpotp.util import new_id, utcnow

ROW_ID = re.compile(r'<tr id="row-(otp_[0-9A-Za-z]+)"')
ATTEMPT_LINK = re.compile(r'<tr class="row-link" data-href="/console/otps/(otp_[0-9A-Za-z]+)"')
NEXT_LINK = re.compile(r'<a class="button secondary" href="([^"]+)" rel="next">')


def number(i: int) -> str:
    """A distinct valid Turkish mobile number (per-recipient send limits never bite)."""
    return f"+90555111{i:04d}"


def send_otp(client, key, recipient: str, **fields) -> dict:
    r = client.post("/v1/otp/send", headers=key.headers, json={"recipient": recipient, **fields})
    assert r.status_code == 201, r.get_data(as_text=True)
    return r.get_json()


def verify(client, key, otp_id: str, code: str):
    return client.post(f"/v1/otp/{otp_id}/verify", headers=key.headers, json={"code": code})


def seed_otps(app, key, count: int, at: datetime | None = None, **values) -> list[str]:
    """`count` OTP rows written straight to the table (a large history, fast); newest last.

    Rows get created_at one second apart ending at `at`, unless `values` fixes created_at."""
    at = at or utcnow() - timedelta(minutes=5)
    with app.app_context():
        template_id = db.session.scalars(select(Template.id).where(Template.is_default)).first()
        rows = []
        for i in range(count):
            fields = {
                "id": new_id("otp"), "app_id": key.app_id, "api_key_id": key.key_id, "mode": "test",
                "provider": "sandbox", "recipient": number(i), "country": "TR", "template_id": template_id,
                "language": "en", "code_hash": "0" * 64, "code_length": 6, "max_attempts": 5, "ttl_seconds": 300,
                "expires_at": at + timedelta(minutes=5), "created_at": at - timedelta(seconds=count - i),
                "last_sent_at": at,
            }
            fields.update(values)
            rows.append(Otp(**fields))
        db.session.add_all(rows)
        db.session.commit()
        return [r.id for r in rows]


def set_otp(app, otp_id: str, **values) -> None:
    with app.app_context():
        db.session.execute(update(Otp).where(Otp.id == otp_id).values(**values))
        db.session.commit()


def shown_ids(html: str) -> list[str]:
    return ROW_ID.findall(html)


def get_ok(client, path: str, **query) -> str:
    r = client.get(path, query_string=query or None)
    assert r.status_code == 200, r.get_data(as_text=True)[:500]
    return r.get_data(as_text=True)


@pytest.fixture
def admin(console_client, admin_user):
    return console_client(admin_user)


# --- the live log in a browser -------------------------------------------------------------------

def test_an_otp_sent_through_the_api_appears_in_the_open_log_without_a_reload(
        app, client, logged_in_page, live_server, run_worker):
    key = make_key(app)
    older = send_otp(client, key, number(1))
    page = logged_in_page("admin")
    page.goto(live_server.url("/console/otps"))
    page.wait_for_selector(f"#row-{older['id']}")
    page.evaluate("window.__marker = 'still the same page'")

    fresh = send_otp(client, key, number(2), reference="order-9f3a2c")
    row = page.wait_for_selector(f"#row-{fresh['id']}")

    assert page.evaluate("window.__marker") == "still the same page"
    assert "order-9f3a2c" in row.inner_text()
    assert page.locator("#otp-rows tr[id^=row-]").evaluate_all("rows => rows.map(r => r.id)") == [
        f"row-{fresh['id']}", f"row-{older['id']}"]
    assert page.locator(f"#row-{older['id']}").count() == 1  # nothing shown twice

    run_worker()
    row.click()  # anywhere on the row opens the OTP's timeline
    page.wait_for_url(re.compile(f"/console/otps/{fresh['id']}$"))
    events = page.locator("#events tbody").inner_text()
    assert "otp.queued" in events and "otp.sent" in events
    assert "sandbox" in page.locator("#send-attempts").inner_text()


def test_the_live_log_keeps_to_its_filters(app, client, logged_in_page, live_server):
    key = make_key(app)
    page = logged_in_page("viewer")
    page.goto(live_server.url(f"/console/otps?recipient={number(7).replace('+', '%2B')}"))
    page.wait_for_selector("#otp-rows .empty-row")
    page.evaluate("window.__marker = 1")

    other = send_otp(client, key, number(8))
    wanted = send_otp(client, key, number(7))
    page.wait_for_selector(f"#row-{wanted['id']}")

    # The other OTP is older than the wanted one, so a poll that let it through would have shown it by now.
    assert page.locator(f"#row-{other['id']}").count() == 0
    assert page.evaluate("window.__marker") == 1
    assert not page.locator("#otp-rows .empty-row").is_visible()


# --- the live log's partial -----------------------------------------------------------------------

MARKER = re.compile(r'<input type="hidden" id="live-after" name="after" value="([^"]+)" hx-swap-oob="true">')


def poll(client, after: str, **filters) -> tuple[list[str], str]:
    """One live-log poll: the ids it adds (top first) and the marker it leaves for the next."""
    partial = get_ok(client, "/console/otps/rows", after=after, **filters)
    assert "<html" not in partial  # rows only, not a page
    return shown_ids(partial), MARKER.search(partial).group(1)


def test_the_poll_answers_only_rows_newer_than_the_newest_shown(app, admin):
    key = make_key(app)
    first, second, third = seed_otps(app, key, 3)
    html = get_ok(admin, "/console/otps")
    assert shown_ids(html) == [third, second, first]
    page_marker = re.search(r'id="live-after" name="after" value="([^"]*)"', html).group(1)
    assert poll(admin, page_marker)[0] == []

    with app.app_context():
        newest = db.session.get(Otp, third)
        after = encode_cursor(newest.created_at, newest.id)  # as if the page had been opened back then
    newer = seed_otps(app, key, 2, at=utcnow() - timedelta(seconds=10))
    added, after = poll(admin, after)
    assert added == newer[::-1]
    assert poll(admin, after)[0] == []


def test_a_burst_larger_than_one_poll_is_shown_over_several_polls_without_a_gap(app, admin):
    key = make_key(app)
    after = encode_cursor(utcnow() - timedelta(minutes=5), "otp_0")  # a page opened 5 minutes ago
    burst = seed_otps(app, key, 130, at=utcnow() - timedelta(seconds=2))
    shown: list[str] = []
    for _ in range(3):
        added, after = poll(admin, after)
        shown = added + shown  # each poll's rows go on top
    assert shown == burst[::-1]


def test_the_poll_with_nothing_shown_answers_every_matching_row(app, admin):
    key = make_key(app)
    made = seed_otps(app, key, 2)
    partial = get_ok(admin, "/console/otps/rows", after="")
    assert shown_ids(partial) == made[::-1]
    only = get_ok(admin, "/console/otps/rows", after="", recipient=number(0))
    assert shown_ids(only) == [made[0]]


def test_the_log_page_sets_up_polling_only_on_the_newest_page(app, admin):
    key = make_key(app)
    seed_otps(app, key, 60)
    first = get_ok(admin, "/console/otps", status="QUEUED")
    assert 'hx-trigger="every 2s"' in first
    assert 'hx-get="/console/otps/rows?status=QUEUED"' in first
    assert 'hx-swap="afterbegin"' in first
    older = get_ok(admin, NEXT_LINK.search(first).group(1).replace("&amp;", "&"))
    assert "hx-trigger" not in older


def test_the_poll_leaves_rows_of_the_last_second_for_the_next_poll(app, admin):
    """A row is stamped before it commits: the newest second is left for a later poll, so a row
    that commits late is not passed over by a newer one shown first."""
    key = make_key(app)
    [settled] = seed_otps(app, key, 1, at=utcnow() - timedelta(seconds=30))
    [fresh] = seed_otps(app, key, 1, created_at=utcnow() + timedelta(minutes=5))
    assert poll(admin, "")[0] == [settled]
    # The page holds back the same second, so the polls that follow it miss nothing.
    assert shown_ids(get_ok(admin, "/console/otps")) == [settled]
    assert fresh in shown_ids(get_ok(admin, "/console/otps", status="QUEUED", cursor=encode_cursor(
        utcnow() + timedelta(days=1), "otp_z")))


# --- filters and paging ------------------------------------------------------------------------------

def test_filters_narrow_the_list(app, client, admin):
    key = make_key(app)
    a = send_otp(client, key, number(1), reference="order-1")["id"]
    b = send_otp(client, key, number(2), reference="order-2")["id"]
    c = send_otp(client, key, number(3))["id"]
    assert client.post(f"/v1/otp/{c}/cancel", headers=key.headers).status_code == 200
    set_otp(app, a, created_at=datetime(2020, 1, 10, 9, 0))
    set_otp(app, b, created_at=datetime(2020, 1, 11, 23, 59, 59))
    set_otp(app, c, created_at=utcnow() - timedelta(minutes=1))  # past the newest second the page holds back

    assert set(shown_ids(get_ok(admin, "/console/otps"))) == {a, b, c}
    assert shown_ids(get_ok(admin, "/console/otps", status="CANCELED")) == [c]
    assert shown_ids(get_ok(admin, "/console/otps", recipient=number(2))) == [b]
    assert shown_ids(get_ok(admin, "/console/otps", reference="order-1")) == [a]
    assert shown_ids(get_ok(admin, "/console/otps", **{"from": "2020-01-11", "to": "2020-01-11"})) == [b]
    assert shown_ids(get_ok(admin, "/console/otps", **{"from": "2020-01-01", "to": "2020-01-31"})) == [b, a]
    assert shown_ids(get_ok(admin, "/console/otps", status="QUEUED", reference="order-2")) == [b]
    assert shown_ids(get_ok(admin, "/console/otps", status="VERIFIED")) == []


def test_a_bad_filter_is_named_on_the_page(app, admin):
    make_key(app)
    r = admin.get("/console/otps", query_string={"recipient": "555-1234", "from": "yesterday"})
    assert r.status_code == 400
    html = r.get_data(as_text=True)
    assert "expected an E.164 number" in html
    assert "expected a date" in html
    assert "hx-trigger" not in html
    assert admin.get("/console/otps", query_string={"cursor": "garbage!"}).status_code == 400


def test_paging_walks_every_row_once_newest_first(app, admin):
    key = make_key(app)
    made = seed_otps(app, key, 123)
    with app.app_context():
        tied = db.session.get(Otp, made[65]).created_at
    for otp_id in made[55:75]:  # 20 rows share a timestamp across the first page's edge (48 newer rows + 2)
        set_otp(app, otp_id, created_at=tied)
    seen, pages, url = [], 0, "/console/otps"
    while url and pages < 10:
        html = get_ok(admin, url)
        seen += shown_ids(html)
        pages += 1
        found = NEXT_LINK.search(html)
        url = found.group(1).replace("&amp;", "&") if found else None
    assert pages == 3
    assert len(seen) == len(set(seen)) == 123
    assert set(seen) == set(made)
    assert seen[:48] == made[75:][::-1]
    assert set(seen[48:68]) == set(made[55:75])
    assert seen[68:] == made[:55][::-1]


def test_paging_keeps_the_filters(app, client, admin):
    key = make_key(app)
    seed_otps(app, key, 70, status=OtpStatus.EXPIRED)
    seed_otps(app, key, 5)
    first = get_ok(admin, "/console/otps", status="EXPIRED")
    next_url = NEXT_LINK.search(first).group(1).replace("&amp;", "&")
    assert "status=EXPIRED" in next_url
    ids = shown_ids(first) + shown_ids(get_ok(admin, next_url))
    assert len(set(ids)) == 70


def count_statements(app, client, path: str, **query) -> int:
    statements = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        get_ok(client, path, **query)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return len(statements)


def test_the_log_page_runs_the_same_few_queries_for_2_rows_or_50(app, admin):
    key = make_key(app)
    seed_otps(app, key, 2)
    get_ok(admin, "/console/otps")  # warm up: the first request of a client loads what it caches
    few = count_statements(app, admin, "/console/otps")
    seed_otps(app, key, 60)
    many = count_statements(app, admin, "/console/otps")
    assert few == many
    assert many <= 6
    assert count_statements(app, admin, "/console/otps/rows", after="") <= few


# --- the timeline ----------------------------------------------------------------------------------

def test_the_timeline_shows_events_attempts_sends_and_webhook_deliveries(app, client, admin, outbox, run_worker):
    from tests.webhooks.support import set_webhook

    key = make_key(app)
    answers = [Reply(503, {"busy": True})]
    with HttpDouble(lambda seen: answers.pop(0) if answers else Reply(200, {"ok": True})) as receiver:
        set_webhook(app, receiver.url + "/hooks", events=["otp.sent", "otp.verified"])
        otp = send_otp(client, key, number(5), reference="cart-77")
        run_worker()
        code = outbox(number(5))[0]["code"]
        wrong = "000000" if code != "000000" else "111111"
        assert verify(client, key, otp["id"], wrong).status_code == 400
        assert verify(client, key, otp["id"], code).status_code == 200
        run_worker()

    html = get_ok(admin, f"/console/otps/{otp['id']}")
    with app.app_context():
        code_hash = db.session.get(Otp, otp["id"]).code_hash
    assert code_hash not in html
    assert code not in re.findall(r"(?<![0-9A-Za-z])[0-9]{4,8}(?![0-9A-Za-z])", html)
    timeline = html.split('id="events"')[1].split("</section>")[0]
    assert timeline.index("otp.queued") < timeline.index("otp.sent") < timeline.index("otp.verified")
    attempts = html.split('id="verify-attempts"')[1].split("</section>")[0]
    assert attempts.index("invalid_code") < attempts.index("verified")
    assert "127.0.0.1" in attempts
    sends = html.split('id="send-attempts"')[1].split("</section>")[0]
    assert "sandbox" in sends and "badge-ok" in sends
    hooks = html.split('id="webhook-deliveries"')[1].split("</section>")[0]
    assert hooks.count('class="delivery"') == 2  # otp.sent and otp.verified
    assert "<td>503</td>" in hooks  # the failed first try, kept with its answer
    assert "busy" in hooks


def test_the_timeline_of_an_unknown_or_foreign_otp_is_404(app, client, admin):
    mine = make_key(app)
    theirs = make_key(app, app_name="other-shop")
    foreign = send_otp(client, theirs, number(1))["id"]
    send_otp(client, mine, number(2))
    assert admin.get(f"/console/otps/{foreign}").status_code == 404
    assert admin.get("/console/otps/otp_doesNotExist").status_code == 404
    assert admin.get("/console/otps/not-an-id").status_code == 404
    seed_otps(app, theirs, 1)
    [mine_old] = seed_otps(app, mine, 1)
    assert shown_ids(get_ok(admin, "/console/otps")) == [mine_old]
    assert shown_ids(get_ok(admin, "/console/otps/rows", after="")) == [mine_old]


def test_the_log_needs_a_login(client):
    r = client.get("/console/otps")
    assert r.status_code == 302 and "/console/login" in r.headers["Location"]
    polled = client.get("/console/otps/rows", headers={"HX-Request": "true"})
    assert polled.status_code == 204 and "/console/login" in polled.headers["HX-Redirect"]


# --- attempts across the app -------------------------------------------------------------------

def test_the_attempts_page_lists_filters_and_pages(app, admin):
    key = make_key(app)
    otp_ids = seed_otps(app, key, 3)
    base = utcnow() - timedelta(minutes=1)
    with app.app_context():
        for i in range(70):
            result = "verified" if i % 10 == 0 else "invalid_code"
            db.session.add(VerifyAttempt(otp_id=otp_ids[i % 3], app_id=key.app_id, result=result, ip="203.0.113.9",
                                         created_at=base - timedelta(seconds=i // 2)))
        db.session.commit()
    other = make_key(app, app_name="other-shop")
    [foreign] = seed_otps(app, other, 1)
    with app.app_context():
        db.session.add(VerifyAttempt(otp_id=foreign, app_id=other.app_id, result="verified", ip="198.51.100.1"))
        db.session.commit()

    html = get_ok(admin, "/console/attempts")
    assert foreign not in html and "198.51.100.1" not in html
    first = ATTEMPT_LINK.findall(html)
    assert len(first) == 50
    assert "203.0.113.9" in html
    rest = ATTEMPT_LINK.findall(get_ok(admin, NEXT_LINK.search(html).group(1).replace("&amp;", "&")))
    assert len(rest) == 20

    verified = get_ok(admin, "/console/attempts", result="verified")
    assert len(ATTEMPT_LINK.findall(verified)) == 7
    assert "badge-invalid-code" not in verified
    assert admin.get("/console/attempts", query_string={"result": "nonsense"}).status_code == 400


def test_an_admin_can_redeliver_a_webhook_from_the_timeline_and_a_viewer_cannot(
        app, client, admin, console_client, viewer_user, run_worker):
    from tests.webhooks.support import set_webhook

    from .conftest import form_token

    key = make_key(app)
    with HttpDouble() as receiver:
        set_webhook(app, receiver.url + "/hooks", events=["otp.canceled"])
        otp_id = send_otp(client, key, number(6))["id"]
        assert client.post(f"/v1/otp/{otp_id}/cancel", headers=key.headers).status_code == 200
        run_worker()
        html = get_ok(admin, f"/console/otps/{otp_id}")
        action = re.search(r'<form method="post" action="([^"]+/redeliver)"', html).group(1)
        assert "Redeliver" not in get_ok(console_client(viewer_user), f"/console/otps/{otp_id}")

        assert admin.post(action, data={"csrf_token": form_token(admin)}).status_code == 302
        run_worker()
        assert len(receiver.seen) == 2

    hooks = get_ok(admin, f"/console/otps/{otp_id}").split('id="webhook-deliveries"')[1]
    assert hooks.count('class="delivery"') == 2
    assert hooks.count("badge-succeeded") == 2


def test_the_log_pages_carry_no_inline_script_or_style(app, client, admin, run_worker):
    key = make_key(app)
    otp_id = send_otp(client, key, number(1))["id"]
    run_worker()
    for path in ("/console/otps", f"/console/otps/{otp_id}", "/console/attempts"):
        html = get_ok(admin, path)
        assert " style=" not in html and "<style" not in html
        assert " on" + "click=" not in html
        for tag in re.findall(r"<script[^>]*>", html):
            assert " src=" in tag or 'type="application/json"' in tag, tag


def test_the_timeline_names_the_sms_channel_and_its_provider(app, client, admin, run_worker):
    key = make_key(app)
    r = client.post("/v1/otp/send", headers=key.headers, json={"recipient": number(8), "channel": "sms"})
    assert r.status_code == 201, r.json
    run_worker()
    html = get_ok(admin, f"/console/otps/{r.json['id']}")
    assert "via sms_sandbox (SMS)" in html
    sends = html.split("Provider sends")[1].split("</section>")[0]
    assert "sms_sandbox" in sends and "SMS" in sends
