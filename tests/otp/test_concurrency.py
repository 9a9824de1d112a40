"""Rule 4: attempts and single use are race-free in the database, proven with threads.

Every thread is released by a barrier and talks HTTP through its own test client.
"""

from __future__ import annotations

import re
import sqlite3
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager

from sqlalchemy import create_engine, func, select, text

from tests.helpers import in_threads
from wpotp.extensions import db
from wpotp.models import Otp, VerifyAttempt

from .support import error_code, otp_row, run_queue, send, shift_back, show, verify


def _outcome(response) -> tuple[int, str | None]:
    return response.status_code, error_code(response)


def test_parallel_right_codes_verify_once(app, client, api_key, run_worker):
    r = send(client, api_key, "+905551110001", code="482913")
    assert r.status_code == 201
    otp_id = r.json["id"]
    run_worker()

    def attempt(_i):
        return verify(app.test_client(), api_key, otp_id, "482913")

    answers = in_threads(50, attempt)
    outcomes = Counter(_outcome(a) for a in answers)
    assert outcomes == {(200, None): 1, (409, "OTP_ALREADY_VERIFIED"): 49}, outcomes
    winner = next(a for a in answers if a.status_code == 200)
    assert winner.json["verified"] is True and winner.json["status"] == "VERIFIED"

    assert otp_row(app, otp_id)["status"] == "VERIFIED"
    with app.app_context():
        verified = db.session.scalar(select(func.count()).select_from(VerifyAttempt)
                                     .where(VerifyAttempt.otp_id == otp_id, VerifyAttempt.result == "verified"))
    assert verified == 1
    detail = show(client, api_key, otp_id)
    assert [e["type"] for e in detail["timeline"]].count("otp.verified") == 1


def test_parallel_wrong_codes_spend_exactly_the_budget(app, client, api_key, run_worker):
    key = api_key
    with app.app_context():
        assert db.session.scalars(select(Otp)).first() is None
    r = send(client, key, "+905551110002", code="482913")
    assert r.status_code == 201
    otp_id = r.json["id"]
    assert otp_row(app, otp_id)["max_attempts"] == 5
    run_worker()

    def attempt(_i):
        return verify(app.test_client(), key, otp_id, "000000")

    answers = in_threads(50, attempt)
    outcomes = Counter(_outcome(a) for a in answers)
    assert outcomes == {(400, "INVALID_CODE"): 5, (429, "TOO_MANY_ATTEMPTS"): 45}, outcomes
    remaining = sorted(a.json["error"]["details"]["attemptsRemaining"] for a in answers if a.status_code == 400)
    assert remaining == [0, 1, 2, 3, 4]

    row = otp_row(app, otp_id)
    assert row["attempts"] == 5
    # The budget is spent: even the right code is refused now.
    late = verify(client, key, otp_id, "482913")
    assert _outcome(late) == (429, "TOO_MANY_ATTEMPTS")
    assert otp_row(app, otp_id)["attempts"] == 5
    assert show(client, key, otp_id)["attemptsRemaining"] == 0


@contextmanager
def otp_writes_held(app):
    """Hold the database's write lock on `otps` (reads still pass) until the block ends, so
    racing requests all read the row before any of them can write: a real, forced race."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False)
        conn.execute("BEGIN IMMEDIATE")  # WAL: readers go on, writers wait (busy_timeout)
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
    else:
        engine = create_engine(url)
        with engine.connect() as conn:
            conn.execute(text("LOCK TABLE otps IN EXCLUSIVE MODE"))  # blocks INSERT/UPDATE, not SELECT
            try:
                yield
            finally:
                conn.rollback()
        engine.dispose()


# An INSERT or UPDATE of `otps`, also inside a CTE: on PostgreSQL the send writes the row with
# `WITH new_otp AS (INSERT INTO otps ...)`, which a prefix test missed, so there every forced race
# waited out _forced_race's 10 s deadline instead of ending once all calls were at the line.
OTP_WRITE = re.compile(r"\s*(WITH\s+\w+\s+AS\s*\(\s*)?(INSERT\s+INTO|UPDATE)\s+otps\b", re.IGNORECASE)


def _waiting_at_otp_write(ident: int) -> bool:
    """Is this thread inside the database driver, executing an INSERT or UPDATE of `otps`?"""
    frame = sys._current_frames().get(ident)
    while frame is not None:
        if frame.f_code.co_name == "do_execute":
            statement = frame.f_locals.get("statement")
            return isinstance(statement, str) and OTP_WRITE.match(statement) is not None
        frame = frame.f_back
    return False


def _forced_race(target_app, key, count: int, request) -> list:
    """`count` calls of request(test_client), released together while OTP writes are held back.

    The hold ends once every call has either answered or is waiting at its write to `otps`
    (so every one read the row before any wrote); if that never happens it ends after 10 s.
    """
    target_app.test_client().get("/v1/templates", headers=key.headers)  # key's last_used_at: no write later
    started: dict[int, int] = {}
    finished: set[int] = set()

    def attempt(i):
        started[i] = threading.get_ident()
        try:
            return request(target_app.test_client())
        finally:
            finished.add(i)

    def all_at_the_line() -> bool:
        return len(started) == count and all(
            i in finished or _waiting_at_otp_write(ident) for i, ident in started.items())

    holder: dict = {}
    with otp_writes_held(target_app):
        racers = threading.Thread(target=lambda: holder.update(answers=in_threads(count, attempt)))
        racers.start()
        deadline = time.monotonic() + 10
        while not all_at_the_line() and time.monotonic() < deadline:
            time.sleep(0.01)
    racers.join(timeout=120)
    return holder["answers"]


def _race_sends(target_app, key, recipient: str, reference: str) -> list:
    return _forced_race(target_app, key, 10, lambda c: send(c, key, recipient, reference=reference))


def test_parallel_sends_with_one_reference_create_one_otp(app, client, api_key, run_worker, outbox):
    recipient = "+905551110003"
    answers = _race_sends(app, api_key, recipient, "order-race-1")
    statuses = Counter(a.status_code for a in answers)
    assert statuses == {201: 1, 200: 9}, [(a.status_code, a.get_json()) for a in answers]
    ids = {a.json["id"] for a in answers}
    assert len(ids) == 1
    with app.app_context():
        rows = db.session.scalars(select(Otp).where(Otp.reference == "order-race-1")).all()
    assert [o.id for o in rows] == list(ids)

    run_worker()
    assert len(outbox(recipient)) == 1  # one message, not ten


def test_parallel_sends_with_one_reference_store_one_row_when_quota_allows(app, make_app, api_key, outbox):
    """The same race with the recipient limit out of the way: the database keeps one OTP."""
    roomy = make_app(RECIPIENT_RATE_LIMIT="1000/minute")
    recipient = "+905551110004"
    answers = _race_sends(roomy, api_key, recipient, "order-race-2")
    statuses = Counter(a.status_code for a in answers)
    assert statuses == {201: 1, 200: 9}, [(a.status_code, a.get_json()) for a in answers]
    ids = {a.json["id"] for a in answers}
    assert len(ids) == 1
    with roomy.app_context():
        rows = db.session.scalars(select(Otp).where(Otp.reference == "order-race-2")).all()
    assert [o.id for o in rows] == list(ids)
    run_queue(roomy, "otp", "default")
    assert len(outbox(recipient)) == 1


def test_parallel_right_and_wrong_guesses_never_verify_a_dead_otp(app, client, api_key, run_worker):
    r = send(client, api_key, "+905551110005", code="482913")
    otp_id = r.json["id"]
    run_worker()

    answers = in_threads(50, lambda i: verify(app.test_client(), api_key, otp_id, "482913" if i % 2 else "000000"))
    outcomes = Counter(_outcome(a) for a in answers)
    assert set(outcomes) <= {(200, None), (400, "INVALID_CODE"), (409, "OTP_ALREADY_VERIFIED"),
                             (429, "TOO_MANY_ATTEMPTS")}, outcomes
    row = otp_row(app, otp_id)
    assert row["attempts"] == outcomes[(400, "INVALID_CODE")] <= 5
    if outcomes[(200, None)]:
        assert outcomes[(200, None)] == 1
        assert row["status"] == "VERIFIED" and row["attempts"] < 5
    else:
        assert row["attempts"] == 5 and row["status"] != "VERIFIED"


def test_parallel_cancel_and_verify_let_exactly_one_win(app, client, api_key, run_worker):
    r = send(client, api_key, "+905551110006", code="482913")
    otp_id = r.json["id"]
    run_worker()

    def act(i):
        c = app.test_client()
        if i % 2:
            return "verify", verify(c, api_key, otp_id, "482913")
        return "cancel", c.post(f"/v1/otp/{otp_id}/cancel", headers=api_key.headers)

    answers = in_threads(20, act)
    verifies = Counter(_outcome(a) for kind, a in answers if kind == "verify")
    cancels = Counter(_outcome(a) for kind, a in answers if kind == "cancel")
    status = otp_row(app, otp_id)["status"]
    if status == "VERIFIED":
        assert verifies == {(200, None): 1, (409, "OTP_ALREADY_VERIFIED"): 9}, verifies
        assert cancels == {(409, "OTP_ALREADY_VERIFIED"): 10}, cancels
    else:
        assert status == "CANCELED"
        assert verifies == {(409, "OTP_CANCELED"): 10}, verifies
        assert cancels == {(200, None): 10}, cancels
    types = [e["type"] for e in show(client, api_key, otp_id)["timeline"]]
    assert types.count("otp.verified") + types.count("otp.canceled") == 1


def test_old_code_racing_a_resend_cannot_verify_after_it(app, make_app, api_key, outbox):
    quick = make_app(RESEND_INTERVAL=0)
    c = quick.test_client()
    otp_id = send(c, api_key, "+905551110007", code="48291357").json["id"]
    run_queue(quick, "otp", "default")

    def act(i):
        tc = quick.test_client()
        if i == 0:
            return "resend", tc.post(f"/v1/otp/{otp_id}/resend", headers=api_key.headers)
        return "verify", verify(tc, api_key, otp_id, "48291357")

    answers = in_threads(11, act)
    resend = next(a for kind, a in answers if kind == "resend")
    verified = [a for kind, a in answers if kind == "verify" and a.status_code == 200]
    row = otp_row(quick, otp_id)
    if resend.status_code == 200:
        assert verified == []
        assert row["status"] != "VERIFIED" and row["generation"] == 2
    else:
        assert _outcome(resend) == (409, "OTP_ALREADY_VERIFIED")
        assert len(verified) == 1
        assert row["status"] == "VERIFIED" and row["generation"] == 1


def test_parallel_resends_send_once(app, client, api_key, run_worker, outbox):
    recipient = "+905551110008"
    otp_id = send(client, api_key, recipient).json["id"]
    run_worker()
    shift_back(app, otp_id, 31, "last_sent_at")

    answers = _forced_race(app, api_key, 10,
                           lambda c: c.post(f"/v1/otp/{otp_id}/resend", headers=api_key.headers))
    outcomes = Counter(_outcome(a) for a in answers)
    assert outcomes == {(200, None): 1, (429, "RATE_LIMITED"): 9}, outcomes
    assert otp_row(app, otp_id)["generation"] == 2
    run_worker()
    assert len(outbox(recipient)) == 2  # the first code and one resend


def test_parallel_resends_spend_one_send_of_quota(app, client, api_key, run_worker):
    recipient = "+905551110009"
    otp_id = send(client, api_key, recipient).json["id"]
    run_worker()
    shift_back(app, otp_id, 31, "last_sent_at")
    answers = _forced_race(app, api_key, 10,
                           lambda c: c.post(f"/v1/otp/{otp_id}/resend", headers=api_key.headers))
    assert sum(a.status_code == 200 for a in answers) == 1
    # Two messages went out; the limit is 5 per 15 minutes, so three more are allowed.
    for _ in range(3):
        r = send(client, api_key, recipient)
        assert r.status_code == 201, r.json
