"""The per-process configuration cache (wpotp.cache): a change made by one process is seen by
every other on its next request. Two app instances stand for two processes: each has its own
cache, and they share the database and Redis."""

from __future__ import annotations

from sqlalchemy import func, select, text, update

from wpotp import cache
from wpotp.extensions import db
from wpotp.models import ApiKey, App, WebhookDelivery
from wpotp.util import utcnow

from .api.support import error_of, number, send
from .console.conftest import create_user, form_token
from .helpers import make_key


def test_a_key_revoked_in_another_process_is_refused_on_the_next_request(app, make_app):
    key = make_key(app)
    client = app.test_client()
    assert send(client, key, recipient=number(1)).status_code == 201  # the key is now cached here

    other = make_app()
    with other.app_context():
        row = db.session.get(ApiKey, key.key_id)
        row.revoked_at = utcnow()
        db.session.commit()

    error_of(send(client, key, recipient=number(2)), 401, "unauthorized")


def test_an_app_setting_changed_by_a_bulk_update_elsewhere_applies_at_once(app, make_app):
    key = make_key(app)
    client = app.test_client()
    assert send(client, key, recipient=number(3)).status_code == 201  # +90...: Turkey

    other = make_app()
    with other.app_context():
        db.session.execute(update(App).where(App.id == key.app_id).values(allowed_countries="DE"))
        db.session.commit()

    error_of(send(client, key, recipient=number(4)), 400, "COUNTRY_NOT_ALLOWED")


def test_the_last_used_stamp_does_not_invalidate_every_cache(app):
    key = make_key(app)
    client = app.test_client()
    with app.app_context():
        before = cache.current_epoch()
    assert send(client, key, recipient=number(5)).status_code == 201
    with app.app_context():
        assert db.session.get(ApiKey, key.key_id).last_used_at is not None
        assert cache.current_epoch() == before


def test_an_app_setting_changed_outside_the_application_is_seen_once_entries_age_out(app, make_app, monkeypatch):
    key = make_key(app)
    client = app.test_client()
    assert send(client, key, recipient=number(6)).status_code == 201
    with make_app().app_context():  # plain SQL: no ORM event, no new epoch
        db.session.execute(text("UPDATE apps SET allowed_countries = 'DE' WHERE id = :id"), {"id": key.app_id})
        db.session.commit()

    assert send(client, key, recipient=number(7)).status_code == 201  # still cached
    monkeypatch.setattr(cache, "CACHE_MAX_AGE", 0.0)
    error_of(send(client, key, recipient=number(8)), 400, "COUNTRY_NOT_ALLOWED")


# --- revocation takes effect on the very next request, however it is done (issue 14, defect 7) ---

def _cached_key_in(app):
    """A key the first "process" has just used, so whatever it caches holds that key."""
    key = make_key(app)
    client = app.test_client()
    assert send(client, key, recipient=number(9)).status_code == 201
    assert client.get("/v1/templates", headers=key.headers).status_code == 200
    return key, client


def test_a_key_revoked_by_plain_sql_in_another_process_is_refused_on_the_next_request(app, make_app):
    key, client = _cached_key_in(app)
    with make_app().app_context():  # what docs/operations.md tells operators to run
        db.session.execute(text("UPDATE api_keys SET revoked_at = CURRENT_TIMESTAMP WHERE id = :id"),
                           {"id": key.key_id})
        db.session.commit()

    error_of(client.get("/v1/templates", headers=key.headers), 401, "unauthorized")
    error_of(send(client, key, recipient=number(10)), 401, "unauthorized")


def test_a_key_revoked_by_a_core_update_is_refused_on_the_next_request(app, make_app):
    key, client = _cached_key_in(app)
    with make_app().app_context(), db.engine.begin() as conn:  # outside any ORM session
        conn.execute(update(ApiKey.__table__).where(ApiKey.__table__.c.id == key.key_id)
                     .values(revoked_at=utcnow()))

    error_of(send(client, key, recipient=number(11)), 401, "unauthorized")


def test_a_key_revoked_by_the_cli_in_another_process_is_refused_on_the_next_request(app, make_app):
    key, client = _cached_key_in(app)
    result = make_app().test_cli_runner().invoke(args=["wpotp", "revoke-key", key.key_id])
    assert result.exit_code == 0, result.output

    error_of(send(client, key, recipient=number(12)), 401, "unauthorized")


def test_a_key_revoked_on_the_console_of_another_process_is_refused_on_the_next_request(app, make_app):
    key, client = _cached_key_in(app)
    other = make_app()
    admin = create_user(other, "admin@example.com", "admin")
    console = other.test_client()
    with console.session_transaction() as sess:
        sess["_user_id"] = admin.id
        sess["_fresh"] = True
    response = console.post(f"/console/keys/{key.key_id}/revoke", data={"csrf_token": form_token(console)})
    assert response.status_code == 302

    error_of(send(client, key, recipient=number(13)), 401, "unauthorized")
    with other.app_context():
        assert db.session.get(ApiKey, key.key_id).revoked_at is not None


# --- the application's own writers announce their changes (no listener on their flushes) ---------

def _console_of(other):
    admin = create_user(other, "admin@example.com", "admin")
    console = other.test_client()
    with console.session_transaction() as sess:
        sess["_user_id"] = admin.id
        sess["_fresh"] = True
    return console


def test_an_app_setting_saved_on_the_console_of_another_process_applies_at_once(app, make_app):
    key = make_key(app)
    client = app.test_client()
    assert send(client, key, recipient=number(14)).status_code == 201  # the app is now cached here

    console = _console_of(make_app())
    response = console.post("/console/settings", data={
        "csrf_token": form_token(console), "otp_length": "6", "otp_ttl": "300", "max_attempts": "5",
        "allowed_countries": "DE", "default_language": "en"})
    assert response.status_code == 302

    error_of(send(client, key, recipient=number(15)), 400, "COUNTRY_NOT_ALLOWED")


def test_a_webhook_endpoint_set_by_the_cli_of_another_process_is_owed_the_next_event(app, make_app):
    key = make_key(app)
    client = app.test_client()
    first, second = (send(client, key, recipient=number(i), code="123456").get_json()["id"] for i in (16, 17))
    assert client.post(f"/v1/otp/{first}/verify", headers=key.headers, json={"code": "123456"}).status_code == 200
    with app.app_context():  # "no endpoint" is now cached here
        assert db.session.scalar(select(func.count()).select_from(WebhookDelivery)) == 0

    result = make_app().test_cli_runner().invoke(args=[
        "wpotp", "set-webhook", "--app", "default", "--url", "https://hooks.example.com/x", "--events", "otp.verified"])
    assert result.exit_code == 0, result.output

    assert client.post(f"/v1/otp/{second}/verify", headers=key.headers, json={"code": "123456"}).status_code == 200
    with app.app_context():
        assert db.session.scalars(select(WebhookDelivery.event_type)).all() == ["otp.verified"]
