"""Issue 14 defect 12 (SPEC §12): every attempt carries its own X-Wpotp-Timestamp, signed with the
body in X-Wpotp-Signature-V2, so a receiver's replay window accepts a late retry; the seed's
X-Wpotp-Signature (the body alone) stays as it was for the receivers written for it."""

from __future__ import annotations

import dataclasses
import time
from datetime import timedelta

from sqlalchemy import select

from tests.doubles import Reply
from wpotp.extensions import db
from wpotp.models import Event
from wpotp.webhooks.delivery import deliver

from .support import canceled_otp, header, make_due, only_delivery, scripted, set_webhook, signed_with, timestamp_ok


def _an_hour_old_event(app, key, receiver_url: str, recipient: str) -> tuple[str, str]:
    """An endpoint wanting otp.canceled and one canceled OTP whose event happened an hour ago (as
    when its retries have waited that long). Returns (secret, delivery id)."""
    secret = set_webhook(app, receiver_url, events=["otp.canceled"])
    canceled_otp(app.test_client(), key, recipient)
    with app.app_context():
        for evt in db.session.scalars(select(Event)):
            evt.created_at -= timedelta(hours=1)
        db.session.commit()
    return secret, only_delivery(app)["id"]


def _attempt(app, delivery_id: str, receiver) -> tuple[int, int, object]:
    """Make the delivery's next attempt now; returns (clock before, clock after, what was received)."""
    make_due(app, delivery_id)
    before = int(time.time())
    with app.app_context():
        deliver(delivery_id)
    return before, int(time.time()), receiver.seen[-1]


def test_each_attempt_carries_a_fresh_signed_timestamp(make_app, app, api_key, receiver):
    patient = make_app(WEBHOOK_RETRY_DELAYS=[60])
    receiver.handler = scripted(Reply(500))
    secret, delivery_id = _an_hour_old_event(patient, api_key, receiver.url + "/hook", "+905551117001")

    first_before, first_after, first = _attempt(patient, delivery_id, receiver)
    while int(time.time()) <= first_after:  # let the clock's second turn, so the retry's must differ
        time.sleep(0.05)
    second_before, second_after, second = _attempt(patient, delivery_id, receiver)

    assert only_delivery(patient)["status"] == "succeeded"
    created_at = int(time.time()) - 3600
    for seen, before, after in ((first, first_before, first_after), (second, second_before, second_after)):
        stamp = int(header(seen, "X-Wpotp-Timestamp"))
        assert before <= stamp <= after  # the attempt's own clock, not the event's createdAt
        assert stamp > created_at + 3000
        assert timestamp_ok(secret, seen)  # a receiver with a 5-minute window accepts it
        assert signed_with(secret, seen)  # and the seed's body signature still verifies
    assert int(header(second, "X-Wpotp-Timestamp")) > int(header(first, "X-Wpotp-Timestamp"))
    assert header(second, "X-Wpotp-Signature-V2") != header(first, "X-Wpotp-Signature-V2")
    assert first.body == second.body
    assert header(second, "X-Wpotp-Signature") == header(first, "X-Wpotp-Signature")


def test_a_tampered_timestamp_or_body_fails_verification(app, api_key, run_worker, receiver):
    secret = set_webhook(app, receiver.url + "/hook", events=["otp.canceled"])
    canceled_otp(app.test_client(), api_key, "+905551117002")
    run_worker()
    (seen,) = receiver.seen
    assert timestamp_ok(secret, seen) and signed_with(secret, seen)

    stamp = int(header(seen, "X-Wpotp-Timestamp"))
    for changed in (stamp + 1, stamp - 1):
        headers = {**seen.headers, "X-Wpotp-Timestamp": str(changed)}
        assert not timestamp_ok(secret, dataclasses.replace(seen, headers=headers))
    assert not timestamp_ok(secret, dataclasses.replace(seen, body=seen.body.replace(b"CANCELED", b"VERIFIED")))
    assert not timestamp_ok("whsec_" + "x" * 40, seen)
