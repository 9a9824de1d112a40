"""Small helpers for the lifecycle, concurrency and secrecy tests (tests/otp, tests/jobs)."""

from __future__ import annotations

from datetime import timedelta

from rq import SimpleWorker
from sqlalchemy import select, update

from wpotp.extensions import db, get_queue, redis_client
from wpotp.models import Event, Otp, SendAttempt


def send(client, key, recipient: str, **fields):
    return client.post("/v1/otp/send", headers=key.headers, json={"recipient": recipient, **fields})


def verify(client, key, otp_id: str, code: str):
    return client.post(f"/v1/otp/{otp_id}/verify", headers=key.headers, json={"code": code})


def show(client, key, otp_id: str) -> dict:
    r = client.get(f"/v1/otp/{otp_id}", headers=key.headers)
    assert r.status_code == 200, r.json
    return r.json


def error_code(response) -> str | None:
    body = response.get_json(silent=True) or {}
    return (body.get("error") or {}).get("code")


def run_queue(app, *names: str, max_jobs: int | None = None) -> None:
    """A real RQ worker on only the named queues (e.g. "otp": send jobs, no receipts)."""
    with app.app_context():
        queues = [get_queue(name) for name in names]
        SimpleWorker(queues, connection=redis_client.conn).work(burst=True, max_jobs=max_jobs,
                                                               logging_level="WARNING")


def otp_row(app, otp_id: str) -> dict:
    """The OTP's columns as stored now."""
    with app.app_context():
        otp = db.session.get(Otp, otp_id)
        assert otp is not None
        return {c.name: getattr(otp, c.name) for c in Otp.__table__.columns}


def set_otp(app, otp_id: str, **values) -> None:
    with app.app_context():
        db.session.execute(update(Otp).where(Otp.id == otp_id).values(**values))
        db.session.commit()


def shift_back(app, otp_id: str, seconds: int, *columns: str) -> None:
    """Pretend `seconds` passed: move the given timestamp columns of one OTP into the past."""
    with app.app_context():
        otp = db.session.get(Otp, otp_id)
        values = {c: getattr(otp, c) - timedelta(seconds=seconds) for c in columns}
        db.session.execute(update(Otp).where(Otp.id == otp_id).values(**values))
        db.session.commit()


def event_types(app, otp_id: str) -> list[str]:
    with app.app_context():
        rows = db.session.scalars(select(Event).where(Event.otp_id == otp_id)
                                  .order_by(Event.created_at, Event.id)).all()
        return [e.type for e in rows]


def send_attempts(app, otp_id: str) -> list[dict]:
    with app.app_context():
        rows = db.session.scalars(select(SendAttempt).where(SendAttempt.otp_id == otp_id)
                                  .order_by(SendAttempt.id)).all()
        return [{"ok": a.ok, "permanent": a.permanent, "error": a.error, "generation": a.generation,
                 "provider_message_id": a.provider_message_id, "channel": a.channel} for a in rows]


def code_for(outbox, otp_id: str) -> str:
    """The newest code the sandbox sent for this OTP."""
    for entry in outbox():
        if entry["otpId"] == otp_id:
            return entry["code"]
    raise AssertionError(f"no outbox message for {otp_id}")


def codes_for(outbox, otp_id: str) -> list[str]:
    """Every code the sandbox sent for this OTP, oldest first."""
    return [e["code"] for e in reversed(outbox()) if e["otpId"] == otp_id]
