"""Retries never outlive the OTP: once a retry would come after expiry, the OTP is done."""

from __future__ import annotations

from datetime import timedelta

import pytest
from rq import SimpleWorker

from tests.helpers import make_key
from wpotp.extensions import db, get_queue, redis_client
from wpotp.models import Otp

from .graph import SETTINGS, meta_error
from .support import send_and_work

UNAVAILABLE = meta_error(131016, "Service unavailable", status=503)


def test_a_retry_that_would_come_after_expiry_fails_the_otp(make_app, app, graph, run_worker):
    """Meta keeps failing; the next delay (10 min) is beyond the 5 min TTL, so no retry is queued."""
    cloud = make_app(WHATSAPP_GRAPH_URL=graph.url, **{**SETTINGS, "SEND_RETRY_DELAYS": [0, 600]})
    key = make_key(cloud, mode="live")
    graph.replies.extend([UNAVAILABLE] * 5)
    client = cloud.test_client()
    otp_id = send_and_work(client, key, run_worker, cloud)
    detail = client.get(f"/v1/otp/{otp_id}", headers=key.headers).json
    assert detail["status"] == "FAILED" and detail["error"] == "131016: Service unavailable"
    assert len(graph.sends) == 2
    with cloud.app_context():
        assert get_queue("otp").count == 0 and get_queue("otp").scheduled_job_registry.count == 0


@pytest.mark.parametrize("batch", [0, 4], ids=["per-otp-jobs", "batch"])
def test_a_retry_that_comes_due_after_expiry_expires_the_otp_without_calling_meta(make_app, app, graph, batch):
    """Meta fails the first try and the OTP runs out while it answers: the retry (queued at once,
    delay 0) finds it expired and makes no call. Per-OTP jobs: the retry is a job of its own; the
    batch path: the retry goes back on the send list and the same drain job claims it again."""
    cloud = make_app(WHATSAPP_GRAPH_URL=graph.url, SEND_BATCH=batch, **{**SETTINGS, "SEND_RETRY_DELAYS": [0, 0, 0]})
    key = make_key(cloud, mode="live")
    client = cloud.test_client()
    otp_id = client.post("/v1/otp/send", headers=key.headers, json={"recipient": "+905551112233"}).json["id"]
    answer = graph.http.handler

    def expire_while_answering(seen):
        if len(graph.sends) == 1:  # the first try: the OTP runs out before its retry runs
            with cloud.app_context():
                otp = db.session.get(Otp, otp_id)
                otp.expires_at -= timedelta(seconds=301)
                db.session.commit()
            return UNAVAILABLE
        return answer(seen)

    graph.http.handler = expire_while_answering
    with cloud.app_context():
        SimpleWorker([get_queue("otp")], connection=redis_client.conn).work(burst=True)
    assert len(graph.sends) == 1
    assert client.get(f"/v1/otp/{otp_id}", headers=key.headers).json["status"] == "EXPIRED"
