"""SPEC §3: Redis or the database unreachable -> 503 SERVICE_UNAVAILABLE, nothing half-written."""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
from urllib.parse import urlsplit

import pytest
import redis
from sqlalchemy import func, select

from tests.conftest import TEST_REDIS_URL
from wpotp.cache import EPOCH_KEY
from wpotp.extensions import db
from wpotp.models import Event, Message, Otp, OtpStatus, Template
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


def test_database_down_answers_503(make_app, app, api_key, tmp_path, caplog):
    broken = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/missing-dir/x.db")
    with caplog.at_level(logging.ERROR, logger="wpotp.api"):
        r = broken.test_client().post("/v1/otp/send", headers=api_key.headers, json={"recipient": "+905551112233"})
    assert r.status_code == 503
    assert r.json["error"]["code"] == "SERVICE_UNAVAILABLE"
    # The log names what failed, down to the driver's error, but not its message (SQLAlchemy's
    # quotes the statement and its parameters).
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "wpotp.api"]
    assert lines == ["backing service unavailable: OperationalError (sqlite3.OperationalError)"], lines


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


# --- Redis lost after the commit (issue 14, defect 4) --------------------------------------------

class CuttingProxy:
    """A TCP proxy in front of the test Redis that passes everything until a transaction
    (MULTI ... EXEC) carrying `marker` has been answered, then drops every connection on its
    next command and refuses new ones: Redis gone right after the hand-off to the worker, as in
    a real outage that falls between a request's commit and its answer."""

    def __init__(self, marker: bytes):
        target = urlsplit(TEST_REDIS_URL)
        self.upstream = (target.hostname, target.port or 6379)
        self.marker, self.cut = marker, False
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self._server.getsockname()[1]}{target.path or '/0'}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            if self.cut:
                client.close()
                continue
            upstream = socket.create_connection(self.upstream)
            threading.Thread(target=self._to_redis, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._to_client, args=(upstream, client), daemon=True).start()

    def _to_redis(self, client: socket.socket, upstream: socket.socket) -> None:
        armed = False
        while (data := _recv(client)) and not self.cut:
            armed = armed or self.marker in data
            if armed and b"EXEC\r\n" in data:
                # Set before the EXEC goes on, so it is set by the time its answer reaches the app
                # (the answer still goes back; the next command does not).
                self.cut = True
            upstream.sendall(data)
        client.close()
        upstream.close()

    @staticmethod
    def _to_client(upstream: socket.socket, client: socket.socket) -> None:
        while data := _recv(upstream):
            try:
                client.sendall(data)
            except OSError:
                break
        client.close()

    def __enter__(self) -> CuttingProxy:
        return self

    def __exit__(self, *exc) -> None:
        self._server.close()


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _utility_template(app) -> str:
    with app.app_context():
        return db.session.scalars(select(Template.id).where(Template.name == "wpotp_order_update")).first()


CUT_AFTER_HAND_OFF = [
    ("/v1/otp/send", {"recipient": "+905551112233"}, b"wpotp:seal:", 201, "id"),
    ("/compat/whatotp/v1/otp/send", {"to": "+905551112233", "channel": "whatsapp"}, b"wpotp:seal:", 200,
     "session_id"),
    ("/v1/messages", {"recipient": "+905551112233", "variables": {"1": "A-1", "2": "shipped"}},
     b"send msg_", 202, "id"),
]


@pytest.mark.parametrize(("path", "body", "marker", "status", "id_field"), CUT_AFTER_HAND_OFF,
                         ids=[c[0] for c in CUT_AFTER_HAND_OFF])
def test_redis_lost_after_the_hand_off_leaves_the_answer_standing(make_app, app, api_key, path, body, marker,
                                                                  status, id_field):
    if path == "/v1/messages":
        body = {**body, "templateId": _utility_template(app)}
    with CuttingProxy(marker) as proxy:
        # PROPAGATE_EXCEPTIONS off: the answer a client gets from gunicorn, not the test client's re-raise.
        through_proxy = make_app(REDIS_URL=proxy.url, RATELIMIT_STORAGE_URI=proxy.url, PROPAGATE_EXCEPTIONS=False)
        r = through_proxy.test_client().post(path, headers=api_key.headers, json=body)
        assert proxy.cut, ("the hand-off never reached Redis", r.status_code, r.get_data(as_text=True)[:300])
        with pytest.raises(redis.ConnectionError):  # Redis is gone for whoever asks after the hand-off
            redis.Redis.from_url(proxy.url, retry=None).ping()
    assert r.status_code == status, r.get_data(as_text=True)[:300]
    assert r.headers["X-Request-Id"]
    # The limiter's window was read when the request was checked, so the headers are all there.
    assert r.headers["RateLimit-Limit"] == "100000" and int(r.headers["RateLimit-Remaining"]) < 100000
    assert int(r.headers["RateLimit-Reset"]) >= 0
    row_id = r.json[id_field]
    with app.app_context():
        row = db.session.get(Message if path == "/v1/messages" else Otp, row_id)
        assert row is not None and row.status == OtpStatus.QUEUED


# --- a hand-off failure that is not an outage (issue 14, defect 9) --------------------------------

@pytest.fixture
def full_redis():
    """A private redis-server that has filled up while the service ran (the configuration epoch
    is there), then reached maxmemory with noeviction: every write answers an OOM error (a
    ResponseError) while the connection itself is fine."""
    port = _closed_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    try:
        for _ in range(200):  # until it answers (it takes a few milliseconds to start)
            try:
                client.ping()
                break
            except redis.ConnectionError:
                threading.Event().wait(0.05)
        client.set(EPOCH_KEY, "before-it-filled-up")
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", "1")
        with pytest.raises(redis.ResponseError, match="maxmemory"):  # redis-py's OutOfMemoryError
            client.set("probe", "x")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        server.terminate()
        server.wait(timeout=30)


class Captured(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def api_log():
    handler = Captured()
    logger = logging.getLogger("wpotp.api")
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)


def test_a_hand_off_error_that_is_no_outage_is_a_500_with_the_otp_kept(make_app, app, api_key, full_redis,
                                                                      api_log):
    # Limits keep their own (working) Redis; the queue's Redis is up but refuses every write.
    broken = make_app(REDIS_URL=full_redis)
    r = broken.test_client().post("/v1/otp/send", headers=api_key.headers,
                                  json={"recipient": "+905551112233", "reference": "kept", "code": "739164"})
    assert r.status_code == 500 and r.json["error"]["code"] == "INTERNAL_ERROR", r.get_data(as_text=True)[:300]
    assert r.headers["X-Request-Id"]
    with app.app_context():
        otp = db.session.scalars(select(Otp).where(Otp.reference == "kept")).one()  # the row is intact
        assert otp.status == OtpStatus.QUEUED
        assert db.session.scalars(select(Event.type).where(Event.otp_id == otp.id)).all() == ["otp.queued"]
    assert any(rec.exc_info and issubclass(rec.exc_info[0], redis.ResponseError) for rec in api_log)
    formatter = logging.Formatter()
    assert not any("739164" in formatter.format(rec) for rec in api_log)  # the traceback shows no code


def test_a_message_hand_off_error_that_is_no_outage_is_a_500_with_the_message_kept(make_app, app, api_key,
                                                                                  full_redis, api_log):
    broken = make_app(REDIS_URL=full_redis)
    r = broken.test_client().post("/v1/messages", headers=api_key.headers,
                                  json={"recipient": "+905551112233", "templateId": _utility_template(app),
                                        "variables": {"1": "A-1", "2": "shipped"}})
    assert r.status_code == 500 and r.json["error"]["code"] == "INTERNAL_ERROR", r.get_data(as_text=True)[:300]
    assert r.headers["X-Request-Id"]
    with app.app_context():
        assert db.session.scalars(select(Message.status)).all() == ["QUEUED"]
    assert any(rec.exc_info and issubclass(rec.exc_info[0], redis.ResponseError) for rec in api_log)
