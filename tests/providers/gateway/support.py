"""Helpers for the gateway tests: send an OTP through a live key and run the worker."""

from __future__ import annotations

from tests.helpers import Key
from tests.otp.support import otp_row, send, show

RECIPIENT = "+905551112233"
DIGITS = "905551112233"
CODE = "482913"


def send_and_work(app, key: Key, run_worker, recipient: str = RECIPIENT, code: str = CODE) -> str:
    """POST /v1/otp/send with a live key, run the worker once; the OTP's id."""
    r = send(app.test_client(), key, recipient, code=code)
    assert r.status_code == 201, r.json
    run_worker(app)
    return r.json["id"]


def status_of(app, key: Key, otp_id: str) -> dict:
    return show(app.test_client(), key, otp_id)


def message_id_of(app, otp_id: str) -> str | None:
    return otp_row(app, otp_id)["provider_message_id"]
