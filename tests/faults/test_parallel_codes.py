"""Issue 14, the fault suite: 100 parallel verifies of one OTP through the HTTP API, on SQLite and
PostgreSQL. SPEC §4: N parallel right codes verify exactly once; N parallel wrong codes spend
exactly the attempt budget, never more.

tests/otp/test_concurrency.py proves the rules with 50 callers; here 100 callers (each its own
test client in its own thread, released together) and every row they leave is checked: the
OTP, its verify_attempts, its events.
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select

from tests.helpers import in_threads
from tests.otp.support import error_code, event_types, otp_row, send, show, verify
from wpotp.extensions import db
from wpotp.models import VerifyAttempt

CALLERS = 100
CODE = "48291357"
WRONG = "70615243"


def _outcome(response) -> tuple[int, str | None]:
    return response.status_code, error_code(response)


def _attempt_results(app, otp_id: str) -> Counter:
    with app.app_context():
        return Counter(db.session.scalars(select(VerifyAttempt.result).where(VerifyAttempt.otp_id == otp_id)))


def _sent_otp(client, key, run_worker, recipient: str) -> str:
    r = send(client, key, recipient, code=CODE)
    assert r.status_code == 201, r.get_data(as_text=True)
    run_worker()
    assert otp_row(client.application, r.json["id"])["status"] in ("SENT", "DELIVERED", "READ")
    return r.json["id"]


def test_100_parallel_right_codes_verify_exactly_once(app, client, api_key, run_worker, figures):
    otp_id = _sent_otp(client, api_key, run_worker, "+905551114001")

    answers = in_threads(CALLERS, lambda _i: verify(app.test_client(), api_key, otp_id, CODE))
    assert all(a is not None for a in answers), "a caller never answered"
    outcomes = Counter(_outcome(a) for a in answers)
    figures(callers=CALLERS, **{f"{status}_{code or 'ok'}": n for (status, code), n in outcomes.items()})
    assert outcomes == {(200, None): 1, (409, "OTP_ALREADY_VERIFIED"): CALLERS - 1}, outcomes
    [winner] = [a for a in answers if a.status_code == 200]
    assert winner.json["verified"] is True and winner.json["status"] == "VERIFIED"

    row = otp_row(app, otp_id)
    assert row["status"] == "VERIFIED" and row["verified_at"] is not None
    assert row["attempts"] == 0  # a right code spends nothing
    assert _attempt_results(app, otp_id) == {"verified": 1, "otp_already_verified": CALLERS - 1}
    assert event_types(app, otp_id).count("otp.verified") == 1
    assert show(client, api_key, otp_id)["status"] == "VERIFIED"


def test_100_parallel_wrong_codes_spend_exactly_the_budget(app, client, api_key, run_worker, figures):
    otp_id = _sent_otp(client, api_key, run_worker, "+905551114002")
    budget = otp_row(app, otp_id)["max_attempts"]
    assert budget == 5

    answers = in_threads(CALLERS, lambda _i: verify(app.test_client(), api_key, otp_id, WRONG))
    assert all(a is not None for a in answers), "a caller never answered"
    outcomes = Counter(_outcome(a) for a in answers)
    figures(callers=CALLERS, budget=budget,
            **{f"{status}_{code or 'ok'}": n for (status, code), n in outcomes.items()})
    assert outcomes == {(400, "INVALID_CODE"): budget, (429, "TOO_MANY_ATTEMPTS"): CALLERS - budget}, outcomes
    remaining = sorted(a.json["error"]["details"]["attemptsRemaining"] for a in answers if a.status_code == 400)
    assert remaining == list(range(budget))  # the last spent attempt answers attemptsRemaining 0

    row = otp_row(app, otp_id)
    assert row["attempts"] == budget and row["status"] not in ("VERIFIED", "FAILED")
    assert _attempt_results(app, otp_id) == {"invalid_code": budget, "too_many_attempts": CALLERS - budget}
    assert "otp.verified" not in event_types(app, otp_id)

    # The budget is spent: the right code is refused now too, and spends nothing more.
    late = verify(client, api_key, otp_id, CODE)
    assert _outcome(late) == (429, "TOO_MANY_ATTEMPTS")
    assert otp_row(app, otp_id)["attempts"] == budget
    assert show(client, api_key, otp_id)["attemptsRemaining"] == 0
