"""SPEC §3: Redis or the database unreachable -> 503 SERVICE_UNAVAILABLE, nothing half-written."""

from __future__ import annotations

import socket

from sqlalchemy import func, select

from wpotp.extensions import db
from wpotp.models import Event, Otp
from wpotp.otp.codes import code_matches


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once it is closed


def test_redis_down_answers_503_and_writes_nothing(make_app, app, api_key):
    dead = f"redis://127.0.0.1:{_closed_port()}/0"
    broken = make_app(REDIS_URL=dead, RATELIMIT_STORAGE_URI=dead)
    r = broken.test_client().post("/v1/otp/send", headers=api_key.headers, json={"recipient": "+905551112233"})
    assert r.status_code == 503
    assert r.json["error"]["code"] == "SERVICE_UNAVAILABLE"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Otp)) == 0
        assert db.session.scalar(select(func.count()).select_from(Event)) == 0


def test_database_down_answers_503(make_app, app, api_key, tmp_path):
    broken = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/missing-dir/x.db")
    r = broken.test_client().post("/v1/otp/send", headers=api_key.headers, json={"recipient": "+905551112233"})
    assert r.status_code == 503
    assert r.json["error"]["code"] == "SERVICE_UNAVAILABLE"


def test_readyz_names_what_is_down(make_app, app):
    assert app.test_client().get("/readyz").json["checks"] == {"database": "ok", "redis": "ok"}
    broken = make_app(REDIS_URL=f"redis://127.0.0.1:{_closed_port()}/0")
    r = broken.test_client().get("/readyz")
    assert r.status_code == 503
    assert r.json["checks"]["database"] == "ok"
    assert r.json["checks"]["redis"].startswith("unavailable")


def test_healthz_answers_without_backends(make_app, app):
    broken = make_app(REDIS_URL=f"redis://127.0.0.1:{_closed_port()}/0")
    assert broken.test_client().get("/healthz").json == {"status": "ok"}


def _queue_down(make_app):
    """Limits answer (they have their own Redis here) but the queue's Redis is gone, so the
    failure falls after the database commit, at the hand-off to the worker."""
    return make_app(REDIS_URL=f"redis://127.0.0.1:{_closed_port()}/0")


def test_queue_down_after_commit_removes_the_new_otp(make_app, app, api_key):
    r = _queue_down(make_app).test_client().post("/v1/otp/send", headers=api_key.headers,
                                                 json={"recipient": "+905551112233", "code": "1234"})
    assert r.status_code == 503 and r.json["error"]["code"] == "SERVICE_UNAVAILABLE"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Otp)) == 0
        assert db.session.scalar(select(func.count()).select_from(Event)) == 0


def test_queue_down_during_resend_leaves_the_otp_as_it_was(make_app, app, client, api_key):
    sent = client.post("/v1/otp/send", headers=api_key.headers, json={"recipient": "+905551112233", "code": "1234"})
    otp_id = sent.json["id"]
    with app.app_context():
        db.session.execute(Otp.__table__.update().where(Otp.id == otp_id)
                           .values(last_sent_at=db.session.get(Otp, otp_id).last_sent_at.replace(year=2000)))
        db.session.commit()
        before = db.session.get(Otp, otp_id)
        before_state = (before.generation, before.status, before.code_hash, before.expires_at)
    r = _queue_down(make_app).test_client().post(f"/v1/otp/{otp_id}/resend", headers=api_key.headers)
    assert r.status_code == 503 and r.json["error"]["code"] == "SERVICE_UNAVAILABLE"
    with app.app_context():
        after = db.session.get(Otp, otp_id)
        assert (after.generation, after.status, after.code_hash, after.expires_at) == before_state
        assert code_matches(otp_id, "1234", after.code_hash)
        types = db.session.scalars(select(Event.type).where(Event.otp_id == otp_id)).all()
        assert "otp.resent" not in types
    ok = client.post(f"/v1/otp/{otp_id}/verify", headers=api_key.headers, json={"code": "1234"})
    assert ok.status_code == 200


def test_readyz_reports_the_provider_and_its_missing_settings(make_app, app):
    body = app.test_client().get("/readyz").json
    assert body["provider"] == {"name": "sandbox", "complete": True, "problems": [], "lastConfigFault": None}
