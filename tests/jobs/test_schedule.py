"""The periodic ticker: each periodic job is enqueued once per period, across worker processes."""

from __future__ import annotations

from wpotp.extensions import get_queue
from wpotp.jobs.schedule import enqueue_due

from ..otp.support import event_types, otp_row, send, shift_back


def _tick(app) -> list[str]:
    with app.app_context():
        return enqueue_due(app)


def _queued_descriptions(app) -> list[str]:
    with app.app_context():
        return [job.description for job in get_queue("default").jobs]


def test_ticker_enqueues_sweep_once_per_period(app, make_app):
    assert _tick(app) == ["sweep"]
    assert _tick(app) == []
    other_process = make_app()  # a second worker process's ticker, same Redis
    assert _tick(other_process) == []
    assert _queued_descriptions(app) == ["periodic sweep"]


def test_ticked_sweep_job_expires_due_otps(app, client, api_key, run_worker):
    r = send(client, api_key, "+905551110401")
    assert r.status_code == 201
    otp_id = r.json["id"]
    run_worker()
    assert otp_row(app, otp_id)["status"] == "READ"
    shift_back(app, otp_id, 301, "expires_at")

    assert _tick(app) == ["sweep"]
    assert otp_row(app, otp_id)["status"] == "READ"  # enqueued, not yet run
    run_worker()
    row = otp_row(app, otp_id)
    assert row["status"] == "EXPIRED" and row["expired_at"] is not None
    assert "otp.expired" in event_types(app, otp_id)
    assert _queued_descriptions(app) == []
