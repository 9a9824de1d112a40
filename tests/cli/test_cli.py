"""SPEC §11 CLI: exact names and options; a created secret alone on the last line."""

from __future__ import annotations

import os
import pty
import re
import select as io_select
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from wpotp.extensions import db
from wpotp.models import ApiKey, App, AuditEntry, User


def invoke(app, *args):
    result = app.test_cli_runner().invoke(args=["wpotp", *args])
    return result, result.output.strip().splitlines()


def test_init_creates_default_app_templates_and_admin_with_password_last(app):
    result, lines = invoke(app, "init")
    assert result.exit_code == 0, result.output
    password = lines[-1]
    assert re.fullmatch(r"\S{12,}", password)
    with app.app_context():
        assert db.session.scalars(select(App).where(App.name == "default")).first() is not None
        admin = db.session.scalars(select(User)).one()
        assert admin.role == "admin" and admin.check_password(password)
        assert password not in admin.password_hash


def test_init_twice_creates_nothing_new_and_prints_no_password(app):
    invoke(app, "init")
    result, lines = invoke(app, "init")
    assert result.exit_code == 0
    assert lines[-1] == "database is up to date"
    with app.app_context():
        assert len(db.session.scalars(select(User)).all()) == 1
        assert len(db.session.scalars(select(App).where(App.name == "default")).all()) == 1


def test_create_app_prints_public_id_last(app):
    result, lines = invoke(app, "create-app", "--name", "shop")
    assert result.exit_code == 0
    assert re.fullmatch(r"app_[0-9A-Za-z]{20}", lines[-1])
    result, _ = invoke(app, "create-app", "--name", "shop")
    assert result.exit_code != 0 and "exists already" in result.output


def test_create_key_prints_id_then_secret_and_the_secret_works(app, client):
    invoke(app, "create-app", "--name", "shop")
    result, lines = invoke(app, "create-key", "--app", "shop", "--mode", "live", "--name", "backend")
    assert result.exit_code == 0, result.output
    key_id, secret = lines[-2], lines[-1]
    assert re.fullmatch(r"key_[0-9A-Za-z]{20}", key_id)
    assert re.fullmatch(r"wpotp_live_[0-9A-Za-z]{32,}", secret)
    with app.app_context():
        key = db.session.get(ApiKey, key_id)
        assert key.mode == "live" and key.name == "backend"
        assert secret not in (key.key_hash, key.prefix) and key.prefix == secret[:15]
    assert client.get("/v1/templates", headers={"Authorization": f"Bearer {secret}"}).status_code == 200


def test_create_key_for_unknown_app_fails_clearly(app):
    result, _ = invoke(app, "create-key", "--app", "nope", "--mode", "test")
    assert result.exit_code != 0 and "no app named 'nope'" in result.output


def test_create_key_rejects_unknown_mode(app):
    result, _ = invoke(app, "create-key", "--app", "default", "--mode", "prod")
    assert result.exit_code != 0


def test_create_user_creates_then_resets(app):
    result, _ = invoke(app, "create-user", "--email", "Ops@Example.com", "--password", "correct horse", "--role",
                       "viewer")
    assert result.exit_code == 0
    invoke(app, "create-user", "--email", "ops@example.com", "--password", "battery staple", "--role", "admin")
    with app.app_context():
        user = db.session.scalars(select(User).where(User.email == "ops@example.com")).one()
        assert user.role == "admin" and user.check_password("battery staple")


def test_create_user_refuses_short_password(app):
    result, _ = invoke(app, "create-user", "--email", "a@b.c", "--password", "short", "--role", "admin")
    assert result.exit_code != 0


def test_worker_burst_sends_queued_otps(app, client, api_key):
    r = client.post("/v1/otp/send", headers=api_key.headers, json={"recipient": "+905551112233"})
    result, _ = invoke(app, "worker", "--burst")
    assert result.exit_code == 0, result.output
    assert client.get(f"/v1/otp/{r.json['id']}", headers=api_key.headers).json["status"] == "READ"


# --- SPEC §12: list-keys, revoke-key, create-user's password prompt ---------------------------------

def _key_lines(app, *args):
    result, lines = invoke(app, "list-keys", *args)
    assert result.exit_code == 0, result.output
    return result, lines


def test_list_keys_prints_one_line_per_key_with_id_prefix_mode_name_state_and_no_secret(app):
    invoke(app, "create-app", "--name", "shop")
    invoke(app, "create-app", "--name", "default")
    _, made = invoke(app, "create-key", "--app", "shop", "--mode", "live", "--name", "backend")
    _, other = invoke(app, "create-key", "--app", "default", "--mode", "test")
    live_id, live_secret = made[-2], made[-1]
    invoke(app, "revoke-key", other[-2])

    result, lines = _key_lines(app)
    assert live_secret not in result.output and other[-1] not in result.output
    by_id = {line.split("\t")[0]: line.split("\t") for line in lines}
    assert set(by_id) == {live_id, other[-2]}
    assert by_id[live_id] == [live_id, live_secret[:15], "live", "backend", "active", "shop"]
    assert by_id[other[-2]][2:] == ["test", "-", "revoked", "default"]

    _, shop_only = _key_lines(app, "--app", "shop")
    assert [line.split("\t")[0] for line in shop_only] == [live_id]


def test_list_keys_for_an_unknown_app_fails_clearly(app):
    result, _ = invoke(app, "list-keys", "--app", "nope")
    assert result.exit_code != 0 and "no app named 'nope'" in result.output


def test_revoke_key_refuses_the_key_at_once_and_is_idempotent(app, client):
    invoke(app, "create-app", "--name", "default")
    _, made = invoke(app, "create-key", "--app", "default", "--mode", "test")
    key_id, secret = made[-2], made[-1]
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/v1/templates", headers=headers).status_code == 200

    result, lines = invoke(app, "revoke-key", key_id)
    assert result.exit_code == 0, result.output
    assert key_id in lines[-1] and "revoked" in lines[-1]
    assert client.get("/v1/templates", headers=headers).status_code == 401

    again, lines = invoke(app, "revoke-key", key_id)
    assert again.exit_code == 0, again.output
    assert "already revoked" in lines[-1]
    with app.app_context():
        first = db.session.get(ApiKey, key_id).revoked_at
        assert first is not None
        entries = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "key.revoke")).all()
        assert [(e.actor, e.target) for e in entries] == [("cli", key_id)]


def test_revoke_key_of_an_unknown_id_fails_clearly(app):
    result, _ = invoke(app, "revoke-key", "key_doesnotexist")
    assert result.exit_code != 0 and "no key 'key_doesnotexist'" in result.output


def test_create_user_prompts_for_the_password_twice_when_not_given(app):
    result = app.test_cli_runner().invoke(
        args=["wpotp", "create-user", "--email", "ops@example.com", "--role", "admin"],
        input="correct horse\ncorrect horse\n")
    assert result.exit_code == 0, result.output
    with app.app_context():
        user = db.session.scalars(select(User).where(User.email == "ops@example.com")).one()
        assert user.check_password("correct horse")


def test_create_user_reads_the_password_from_standard_input_when_it_is_not_a_tty(app):
    result = app.test_cli_runner().invoke(
        args=["wpotp", "create-user", "--email", "ci@example.com", "--role", "viewer"], input="battery staple\n")
    assert result.exit_code == 0, result.output
    assert "battery staple" not in result.output
    with app.app_context():
        user = db.session.scalars(select(User).where(User.email == "ci@example.com")).one()
        assert user.role == "viewer" and user.check_password("battery staple")


def test_create_user_with_an_empty_standard_input_creates_nobody(app):
    result = app.test_cli_runner().invoke(
        args=["wpotp", "create-user", "--email", "x@example.com", "--role", "admin"], input="")
    assert result.exit_code != 0
    with app.app_context():
        assert db.session.scalars(select(User).where(User.email == "x@example.com")).first() is None


def _read_until(fd: int, marker: bytes, seen: bytearray) -> None:
    """Read the terminal until `marker` shows (a guard against a hang, not a timing check)."""
    while marker not in seen:
        ready, _, _ = io_select.select([fd], [], [], 60)
        assert ready, f"no {marker!r} from the command; it said {bytes(seen)!r}"
        try:
            chunk = os.read(fd, 1024)
        except OSError:  # the command ended and closed the terminal
            chunk = b""
        assert chunk, f"the command ended before asking {marker!r}; it said {bytes(seen)!r}"
        seen += chunk


def test_create_user_at_a_terminal_asks_for_the_password_twice_without_echoing_it(app, backend):
    _name, url, instance = backend
    env = {**os.environ, "DATABASE_URL": url, "WPOTP_INSTANCE_DIR": str(instance),
           "REDIS_URL": app.config["REDIS_URL"], "WPOTP_ENV": "development"}
    primary, terminal = pty.openpty()
    command = [str(Path(sys.executable).parent / "flask"), "--app", "wsgi", "wpotp", "create-user",
               "--email", "tty@example.com", "--role", "admin"]
    proc = subprocess.Popen(command, stdin=terminal, stdout=terminal, stderr=terminal, env=env,
                            cwd=Path(__file__).resolve().parents[2])
    os.close(terminal)
    seen = bytearray()
    try:
        _read_until(primary, b"Password:", seen)
        os.write(primary, b"correct horse\n")
        _read_until(primary, b"Repeat for confirmation:", seen)
        os.write(primary, b"correct horse\n")
        _read_until(primary, b"created admin user tty@example.com", seen)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        os.close(primary)
    assert b"correct horse" not in seen  # hidden input
    with app.app_context():
        user = db.session.scalars(select(User).where(User.email == "tty@example.com")).one()
        assert user.check_password("correct horse")
