"""Small helpers for the /v1 HTTP tests (fixtures live in tests/conftest.py)."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import update

from wpotp.extensions import db
from wpotp.models import ApiKey, Otp

ISO_MS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SUMMARY_FIELDS = {"id", "status", "recipient", "reference", "templateId", "channel", "expiresAt", "createdAt"}
RECIPIENT = "+905551112233"


def number(i: int) -> str:
    """A distinct valid Turkish mobile number, so per-recipient send limits are never hit."""
    return f"+90555111{i:04d}"


def send(client, key, **body):
    body.setdefault("recipient", RECIPIENT)
    return client.post("/v1/otp/send", headers=key.headers, json=body)


def sent(client, key, **body) -> dict:
    """Send and insist on 201; returns the answer's JSON."""
    response = send(client, key, **body)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def verify(client, key, otp_id: str, code):
    return client.post(f"/v1/otp/{otp_id}/verify", headers=key.headers, json={"code": code})


def show(client, key, otp_id: str) -> dict:
    response = client.get(f"/v1/otp/{otp_id}", headers=key.headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def error_of(response, status: int, code: str) -> dict:
    """Assert the SPEC §3 envelope and nothing else; returns the inner `error` object."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json, response.get_data(as_text=True)[:300]
    body = response.get_json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) <= {"code", "message", "details"}, err
    assert {"code", "message"} <= set(err), err
    assert err["code"] == code, err
    assert isinstance(err["message"], str) and err["message"]
    return err


def fields_of(err: dict) -> dict:
    return err.get("details", {}).get("fields", {})


def ts(value: str) -> datetime:
    """Parse a timestamp of the API, insisting on the SPEC §5 shape."""
    assert isinstance(value, str) and ISO_MS_Z.match(value), value
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ")


def latest_code(outbox, recipient: str) -> str:
    entries = outbox(recipient)
    assert entries, f"no sandbox message to {recipient}"
    return entries[0]["code"]


def set_otp(app, otp_id: str, **values) -> None:
    """Change an OTP row directly (e.g. push expires_at into the past)."""
    with app.app_context():
        db.session.execute(update(Otp).where(Otp.id == otp_id).values(**values))
        db.session.commit()


def set_key(app, key_id: str, **values) -> None:
    with app.app_context():
        db.session.execute(update(ApiKey).where(ApiKey.id == key_id).values(**values))
        db.session.commit()
