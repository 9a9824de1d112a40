"""Helpers for the Cloud API tests: send an OTP through the API and the worker, post receipts."""

from __future__ import annotations

import logging

from tests.helpers import work_queues
from tests.otp.support import send, show

from .graph import signed, status_webhook

RECIPIENT = "+905551112233"


def send_and_work(client, key, run_worker, app, code: str = "482913", **fields) -> str:
    """POST /v1/otp/send with a live key, then run the worker; returns the OTP id."""
    r = send(client, key, fields.pop("recipient", RECIPIENT), code=code, **fields)
    assert r.status_code == 201, r.get_data(as_text=True)
    run_worker(app)
    return r.json["id"]


def sent_otp(client, key, run_worker, app, graph) -> tuple[str, str]:
    """An OTP that Meta accepted: (otp id, its wamid)."""
    otp_id = send_and_work(client, key, run_worker, app)
    assert show(client, key, otp_id)["status"] == "SENT"
    return otp_id, graph.wamids[-1]


def post_receipts(client, *statuses: dict, secret: str | None = None, drain: bool = True):
    """POST a signed status webhook the way Meta does. With the receipt queue on (RECEIPT_BATCH),
    a real worker then drains it (`drain`), so the receipts are applied when this returns."""
    raw, headers = signed(status_webhook(*statuses), **({"secret": secret} if secret else {}))
    answer = client.post("/webhooks/whatsapp", data=raw, headers=headers)
    if drain and client.application.config["RECEIPT_BATCH"]:
        work_queues(client.application)
    return answer


class LogCapture(logging.Handler):
    """Every formatted line the `wpotp` loggers write (they do not propagate to pytest's caplog)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage() + (self.formatException(record.exc_info) if record.exc_info else ""))

    def formatException(self, exc_info) -> str:  # noqa: N802 - logging's name
        return logging.Formatter().formatException(exc_info)

    def __enter__(self) -> LogCapture:
        self._level = logging.getLogger("wpotp").level
        for name in ("wpotp", "rq"):
            logging.getLogger(name).addHandler(self)
        logging.getLogger("wpotp").setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc) -> None:
        for name in ("wpotp", "rq"):
            logging.getLogger(name).removeHandler(self)
        logging.getLogger("wpotp").setLevel(self._level)
