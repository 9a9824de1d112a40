"""SPEC §3: Redis or the database unreachable -> 503 SERVICE_UNAVAILABLE, nothing half-written."""

from __future__ import annotations

import socket

from sqlalchemy import func, select

from wpotp.extensions import db
from wpotp.models import Event, Otp


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once it is closed


def test_redis_down_answers_503_and_writes_nothing(make_app, app, api_key):
    broken = make_app(REDIS_URL=f"redis://127.0.0.1:{_closed_port()}/0",
                      RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{_closed_port()}/0")
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
