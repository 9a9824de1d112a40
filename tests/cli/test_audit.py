"""Every CLI command that changes state writes the audit log, as console actions do: actor `cli`,
the OS user (and under sudo the account it ran as) and the host in the details, never a secret.
The console's audit page shows such an entry as `cli:<os user>` and filters by it."""

from __future__ import annotations

import json
import re
import socket
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from tests.otp.support import send
from tests.providers.cloud_api.graph import SETTINGS, TOKEN, GraphDouble, token_expired
from wpotp.extensions import db
from wpotp.models import AuditEntry, Event, Otp
from wpotp.util import utcnow

ALICE = {"LOGNAME": "alice", "USER": "alice", "SUDO_USER": None}  # None: unset for the command


def cli(app, *args, env=ALICE, input=None, ok=True):
    result = app.test_cli_runner().invoke(args=["wpotp", *args], env=env, input=input)
    if ok:
        assert result.exit_code == 0, result.output
    return result, result.output.strip().splitlines()


def entries(app) -> list[AuditEntry]:
    with app.app_context():
        rows = db.session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        db.session.expunge_all()
        return rows


def test_each_state_changing_command_writes_its_entry_as_cli_with_the_os_user(app):
    _, init = cli(app, "init")
    _, made_app = cli(app, "create-app", "--name", "shop")
    _, key = cli(app, "create-key", "--app", "shop", "--mode", "live", "--name", "backend")
    cli(app, "revoke-key", key[-2])
    cli(app, "create-user", "--email", "ops@example.com", "--password", "first password", "--role", "viewer")
    cli(app, "create-user", "--email", "ops@example.com", "--role", "admin", input="second password\n")
    _, hook = cli(app, "set-webhook", "--app", "shop", "--url", "http://127.0.0.1:9/hooks",
                  "--events", "otp.sent,otp.verified")
    _, dev = cli(app, "dev-key")

    rows = entries(app)
    default_id = next(e.target for e in rows if e.action == "app.create" and e.details["name"] == "default")
    admin_id = next(e.target for e in rows if e.action == "user.create" and e.details["email"] == "admin@localhost")
    ops_id = next(e.target for e in rows if e.action == "user.create" and e.details["email"] == "ops@example.com")
    assert [(e.action, e.target) for e in rows] == [
        ("app.create", default_id), ("user.create", admin_id), ("app.create", made_app[-1]),
        ("key.create", key[-2]), ("key.revoke", key[-2]), ("user.create", ops_id),
        ("user.password", ops_id), ("user.role", ops_id), ("webhook.set", made_app[-1]), ("key.create", dev[-2])]
    assert {(e.actor, e.user_id, e.ip) for e in rows} == {("cli", None, None)}
    assert all(e.details["os_user"] == "alice" and e.details["host"] == socket.gethostname() for e in rows)
    assert all("run_as" not in e.details for e in rows)
    by_action = {e.action: e.details for e in rows}
    assert by_action["user.role"] | {"os_user": "", "host": ""} == {
        "email": "ops@example.com", "old": "viewer", "new": "admin", "os_user": "", "host": ""}
    assert by_action["webhook.set"]["events"] == ["otp.sent", "otp.verified"]
    assert rows[3].details["mode"] == "live" and rows[3].details["app"] == made_app[-1]
    assert rows[-1].details["dev_key"] is True

    written = json.dumps([e.details for e in rows])
    for secret in (init[-1], key[-1], hook[-1], dev[-1], "first password", "second password"):
        assert secret not in written


def test_a_command_under_sudo_names_the_person_and_the_account(app):
    cli(app, "create-app", "--name", "shop", env={"SUDO_USER": "alice", "LOGNAME": "wpotp", "USER": "wpotp"})
    (entry,) = entries(app)
    assert (entry.actor, entry.details["os_user"], entry.details["run_as"]) == ("cli", "alice", "wpotp")


def test_commands_that_change_nothing_write_nothing(app):
    cli(app, "init")
    cli(app, "create-app", "--name", "shop")
    _, key = cli(app, "create-key", "--app", "shop", "--mode", "test")
    cli(app, "revoke-key", key[-2])
    before = len(entries(app))

    cli(app, "init")  # up to date already
    cli(app, "revoke-key", key[-2])  # revoked already
    cli(app, "list-keys")
    _, swept = cli(app, "sweep")  # nothing due

    assert set(swept[-1].replace("=", " ").split()[1::2]) == {"0"}
    assert len(entries(app)) == before


@pytest.mark.parametrize("args", [
    ("create-key", "--app", "nope", "--mode", "test"),
    ("create-user", "--email", "a@example.com", "--password", "short", "--role", "admin"),
    ("create-app", "--name", "default"),  # exists already (made first below)
    ("set-webhook", "--app", "default", "--url", "http://127.0.0.1:9/", "--events", "otp.nope"),
    ("set-webhook", "--app", "default", "--url", "file:///etc/passwd"),
    ("revoke-key", "key_doesnotexist"),
    ("dev-key", "--app", "nope"),
])
def test_a_refused_command_writes_no_entry(app, args):
    cli(app, "create-app", "--name", "default")
    before = len(entries(app))
    result, _ = cli(app, *args, ok=False)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ")
    assert len(entries(app)) == before


def test_demoting_the_last_admin_is_refused_and_leaves_it_admin(app):
    cli(app, "create-user", "--email", "boss@example.com", "--password", "boss password", "--role", "admin")
    result, _ = cli(app, "create-user", "--email", "boss@example.com", "--role", "viewer", input="new password\n",
                    ok=False)
    assert result.exit_code == 1 and "last admin" in result.output
    cli(app, "create-user", "--email", "second@example.com", "--password", "second password", "--role", "admin")
    cli(app, "create-user", "--email", "boss@example.com", "--role", "viewer", input="new password\n")
    assert [e.action for e in entries(app)] == ["user.create", "user.create", "user.password", "user.role"]


def test_sweep_that_expires_otps_is_written_with_its_counts(app, client, api_key):
    otp_id = send(client, api_key, "+905551112233").json["id"]
    with app.app_context():
        db.session.execute(update(Otp).where(Otp.id == otp_id).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()

    cli(app, "sweep")

    (entry,) = entries(app)
    assert (entry.action, entry.actor, entry.details["expired"], entry.details["os_user"]) == ("sweep", "cli", 1,
                                                                                                "alice")


def test_redeliver_is_written(app, client, api_key, run_worker):
    cli(app, "set-webhook", "--app", "default", "--url", "http://127.0.0.1:9/hooks")
    send(client, api_key, "+905551112233")
    run_worker()
    with app.app_context():
        event_id = db.session.scalars(select(Event.id).where(Event.type == "otp.sent")).first()
    assert event_id is not None

    _, lines = cli(app, "redeliver", event_id)

    entry = entries(app)[-1]
    assert (entry.action, entry.target, entry.details["delivery"], entry.details["event_type"]) == (
        "webhook.redeliver", event_id, lines[-1], "otp.sent")


@pytest.fixture
def graph():
    with GraphDouble() as double:
        yield double


def test_sync_templates_is_written_whether_meta_answers_or_refuses(app, make_app, graph, restore_templates):
    cloud = make_app(WHATSAPP_GRAPH_URL=graph.url, **SETTINGS)
    cli(cloud, "sync-templates")
    graph.http.handler = lambda seen: token_expired()
    result, _ = cli(cloud, "sync-templates", ok=False)
    assert result.exit_code == 1

    ok, failed = entries(cloud)
    assert (ok.action, ok.details["ok"], ok.details["fetched"]) == ("templates.sync", True, 0)
    assert (failed.action, failed.details["ok"]) == ("templates.sync", False)
    assert "190: Error validating access token" in failed.details["error"]
    assert TOKEN not in json.dumps(failed.details) and failed.details["os_user"] == "alice"


# The console's audit page -------------------------------------------------------------------------

def _actors(html: str) -> list[str]:
    return re.findall(r"<tr>\s*<td[^>]*>.*?</td>\s*<td[^>]*>([^<]*)</td>", html, re.S)


def test_the_audit_page_shows_a_cli_entry_as_cli_and_the_os_user_and_filters_by_it(app, console_client, admin_user):
    cli(app, "create-app", "--name", "shop")
    cli(app, "create-app", "--name", "blog", env={"LOGNAME": "bob", "USER": "bob", "SUDO_USER": None})
    client = console_client(admin_user)

    assert _actors(client.get("/console/audit").get_data(as_text=True)) == ["cli:bob", "cli:alice"]
    assert _actors(client.get("/console/audit?actor=cli:alice").get_data(as_text=True)) == ["cli:alice"]
    assert _actors(client.get("/console/audit?actor=CLI:Bob").get_data(as_text=True)) == ["cli:bob"]
    assert _actors(client.get("/console/audit?actor=cli").get_data(as_text=True)) == ["cli:bob", "cli:alice"]
    assert _actors(client.get("/console/audit?actor=cli:carol").get_data(as_text=True)) == []
    assert _actors(client.get(f"/console/audit?actor={admin_user.email}").get_data(as_text=True)) == []


def test_the_audit_page_in_a_browser_shows_cli_actions_beside_console_ones(app, live_server, logged_in_page,
                                                                          tmp_path):
    page = logged_in_page("admin")
    cli(app, "create-app", "--name", "shop")
    cli(app, "create-key", "--app", "shop", "--mode", "test", "--name", "from the shell")
    page.goto(live_server.url("/console/audit"))

    rows = page.locator("tbody tr")
    cells = [[rows.nth(i).locator("td").nth(c).text_content() for c in (1, 2, 5)] for i in range(3)]
    assert cells == [["cli:alice", "key.create", "—"], ["cli:alice", "app.create", "—"],
                     [page.user.email, "login", "127.0.0.1"]]
    assert "os_user" in rows.nth(0).text_content() and "from the shell" in rows.nth(0).text_content()
    page.screenshot(path=tmp_path / "audit-cli.png", full_page=True)  # for a person to look at


def test_init_on_an_empty_database_records_the_migration_and_what_it_made(make_app, tmp_path, backend):
    if backend[0] != "sqlite":
        pytest.skip("one empty database is enough: a fresh SQLite file")
    fresh = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'fresh.db'}")
    _, lines = cli(fresh, "init")

    rows = entries(fresh)
    assert [e.action for e in rows] == ["database.upgrade", "app.create", "templates.seed", "user.create"]
    assert rows[0].details["from"] is None and re.fullmatch(r"[0-9a-f]{12}", rows[0].details["to"])
    assert rows[2].details["created"] == 3
    assert rows[3].details["generated_password"] is True and lines[-1] not in json.dumps(rows[3].details)
    cli(fresh, "init")
    assert len(entries(fresh)) == 4
