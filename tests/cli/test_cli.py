"""SPEC §11 CLI: exact names and options; a created secret alone on the last line."""

from __future__ import annotations

import re

from sqlalchemy import select

from wpotp.extensions import db
from wpotp.models import ApiKey, App, User


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
