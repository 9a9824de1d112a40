"""SPEC §4 resend (new code, old one dead, expiry renewed, 3 at most, 30 s apart) and cancel."""

from __future__ import annotations

from collections import Counter

from tests.helpers import in_threads

from .support import code_for, codes_for, error_code, event_types, otp_row, run_queue, send, shift_back, show, verify


def _resend(client, key, otp_id: str):
    return client.post(f"/v1/otp/{otp_id}/resend", headers=key.headers)


def _cancel(client, key, otp_id: str):
    return client.post(f"/v1/otp/{otp_id}/cancel", headers=key.headers)


def _sent(client, key, run, recipient: str, **fields) -> str:
    r = send(client, key, recipient, **fields)
    assert r.status_code == 201, r.json
    run()
    return r.json["id"]


# --- resend ---------------------------------------------------------------------------------------

def test_resend_too_soon_is_rate_limited(app, client, api_key, run_worker):
    otp_id = _sent(client, api_key, run_worker, "+905551110201")
    r = _resend(client, api_key, otp_id)
    assert (r.status_code, error_code(r)) == (429, "RATE_LIMITED")
    assert int(r.headers["Retry-After"]) >= 1
    assert 1 <= r.json["error"]["details"]["retryAfter"] <= 30
    assert r.json["error"]["details"]["limit"]
    assert show(client, api_key, otp_id)["resends"] == 0
    assert otp_row(app, otp_id)["generation"] == 1


def test_resend_too_soon_retry_after_header_says_when(app, client, api_key, run_worker):
    otp_id = _sent(client, api_key, run_worker, "+905551110209")
    r = _resend(client, api_key, otp_id)
    assert (r.status_code, error_code(r)) == (429, "RATE_LIMITED")
    assert 1 <= int(r.headers["Retry-After"]) <= 30
    assert int(r.headers["Retry-After"]) == r.json["error"]["details"]["retryAfter"]


def test_resend_after_interval_sends_new_code_and_kills_old(app, client, api_key, run_worker, outbox):
    otp_id = _sent(client, api_key, run_worker, "+905551110202")
    old_code = code_for(outbox, otp_id)
    # 31 s pass: the OTP was sent, and expires, 31 s earlier than it looked.
    shift_back(app, otp_id, 31, "last_sent_at", "expires_at", "created_at")
    old_expires = show(client, api_key, otp_id)["expiresAt"]

    r = _resend(client, api_key, otp_id)
    assert r.status_code == 200, r.json
    assert r.json["id"] == otp_id
    assert r.json["resends"] == 1
    assert r.json["expiresAt"] > old_expires
    run_worker()

    codes = codes_for(outbox, otp_id)
    assert len(codes) == 2 and codes[0] == old_code
    new_code = codes[1]
    if new_code != old_code:  # a fresh random code may, rarely, repeat the old one
        stale = verify(client, api_key, otp_id, old_code)
        assert (stale.status_code, error_code(stale)) == (409, "OTP_CANCELED")
    ok = verify(client, api_key, otp_id, new_code)
    assert ok.status_code == 200 and ok.json["status"] == "VERIFIED"
    assert "otp.resent" in event_types(app, otp_id)


def test_old_code_is_dead_after_resend(app, make_app, api_key, outbox):
    """Caller-chosen first code, so the old code is known to differ from the generated one."""
    quick = make_app(RESEND_INTERVAL=0)
    c = quick.test_client()
    otp_id = _sent(c, api_key, lambda: run_queue(quick, "otp", "default"), "+905551110203", code="11112222")
    assert otp_row(quick, otp_id)["code_length"] == 8
    r = _resend(c, api_key, otp_id)
    assert r.status_code == 200
    run_queue(quick, "otp", "default")
    new_code = code_for(outbox, otp_id)
    assert len(new_code) == 8
    if new_code != "11112222":
        stale = verify(c, api_key, otp_id, "11112222")
        assert (stale.status_code, error_code(stale)) == (409, "OTP_CANCELED")
    assert verify(c, api_key, otp_id, new_code).status_code == 200


def test_at_most_three_resends(app, make_app, api_key, outbox):
    quick = make_app(RESEND_INTERVAL=0)
    c = quick.test_client()
    otp_id = _sent(c, api_key, lambda: run_queue(quick, "otp", "default"), "+905551110204")
    for n in (1, 2, 3):
        r = _resend(c, api_key, otp_id)
        assert r.status_code == 200, (n, r.json)
        assert r.json["resends"] == n
        run_queue(quick, "otp", "default")
    fourth = _resend(c, api_key, otp_id)
    assert (fourth.status_code, error_code(fourth)) == (429, "RATE_LIMITED")
    assert int(fourth.headers["Retry-After"]) >= 1
    assert otp_row(quick, otp_id)["generation"] == 4
    assert len(codes_for(outbox, otp_id)) == 4
    # The last code still works.
    assert verify(c, api_key, otp_id, code_for(outbox, otp_id)).status_code == 200


def test_resend_does_not_reset_attempt_budget(app, make_app, api_key, outbox):
    quick = make_app(RESEND_INTERVAL=0)
    c = quick.test_client()
    run = lambda: run_queue(quick, "otp", "default")  # noqa: E731
    otp_id = _sent(c, api_key, run, "+905551110205", code="9090")
    for _ in range(2):
        assert error_code(verify(c, api_key, otp_id, "0000")) == "INVALID_CODE"

    r = _resend(c, api_key, otp_id)
    assert r.status_code == 200
    assert r.json["attempts"] == 2 and r.json["attemptsRemaining"] == 3
    run()
    new_code = code_for(outbox, otp_id)
    wrong = "0000" if new_code != "0000" else "1111"
    answers = [verify(c, api_key, otp_id, wrong) for _ in range(3)]
    assert [error_code(a) for a in answers] == ["INVALID_CODE"] * 3
    assert answers[-1].json["error"]["details"]["attemptsRemaining"] == 0
    late = verify(c, api_key, otp_id, new_code)
    assert (late.status_code, error_code(late)) == (429, "TOO_MANY_ATTEMPTS")
    assert otp_row(quick, otp_id)["attempts"] == 5


def test_resend_of_verified_otp_is_refused(app, make_app, api_key):
    quick = make_app(RESEND_INTERVAL=0)
    c = quick.test_client()
    otp_id = _sent(c, api_key, lambda: run_queue(quick, "otp", "default"), "+905551110206", code="4321")
    assert verify(c, api_key, otp_id, "4321").status_code == 200
    r = _resend(c, api_key, otp_id)
    assert (r.status_code, error_code(r)) == (409, "OTP_ALREADY_VERIFIED")
    assert otp_row(quick, otp_id)["generation"] == 1


def test_resend_of_canceled_otp_is_refused(app, make_app, api_key, outbox):
    quick = make_app(RESEND_INTERVAL=0)
    c = quick.test_client()
    otp_id = _sent(c, api_key, lambda: run_queue(quick, "otp", "default"), "+905551110207", code="4321")
    assert _cancel(c, api_key, otp_id).status_code == 200
    r = _resend(c, api_key, otp_id)
    assert (r.status_code, error_code(r)) == (409, "OTP_CANCELED")
    run_queue(quick, "otp", "default")
    assert otp_row(quick, otp_id)["generation"] == 1
    assert len(codes_for(outbox, otp_id)) == 1


def test_resend_before_first_send_delivers_only_the_new_code(app, make_app, api_key, outbox):
    quick = make_app(RESEND_INTERVAL=0)
    c = quick.test_client()
    r = send(c, api_key, "+905551110208", code="24682468")
    otp_id = r.json["id"]
    assert _resend(c, api_key, otp_id).status_code == 200
    run_queue(quick, "otp", "default")  # the first generation's job finds itself replaced
    codes = codes_for(outbox, otp_id)
    assert len(codes) == 1
    assert otp_row(quick, otp_id)["status"] == "READ"
    assert verify(c, api_key, otp_id, codes[0]).status_code == 200


# --- a code from before a resend (issue 14, defect 14) -----------------------------------------

def _resent_twice(quick, api_key, outbox, recipient: str) -> tuple[str, list[str]]:
    """An OTP whose first code was the caller's `11112222`, resent twice: (id, codes oldest first)."""
    c = quick.test_client()
    run = lambda: run_queue(quick, "otp", "default")  # noqa: E731
    otp_id = _sent(c, api_key, run, recipient, code="11112222")
    for _ in range(2):
        assert _resend(c, api_key, otp_id).status_code == 200
        run()
    return otp_id, codes_for(outbox, otp_id)


def test_a_code_from_before_a_resend_answers_otp_canceled_without_spending_an_attempt(
        app, make_app, api_key, outbox):
    quick = make_app(RESEND_INTERVAL=0)
    c = quick.test_client()
    otp_id, codes = _resent_twice(quick, api_key, outbox, "+905551110212")
    first, second, newest = codes
    for stale in dict.fromkeys((first, second)):
        if stale == newest:  # a fresh random code may, rarely, repeat an old one
            continue
        r = verify(c, api_key, otp_id, stale)
        assert (r.status_code, error_code(r)) == (409, "OTP_CANCELED"), r.json
        assert "replaced by a resend" in r.json["error"]["message"]
        assert r.json["error"]["details"] == {"reason": "replaced_by_resend"}
    row = otp_row(quick, otp_id)
    assert row["attempts"] == 0 and row["status"] == "READ"
    results = [a["result"] for a in c.get(f"/v1/otp/{otp_id}/attempts", headers=api_key.headers).json["data"]]
    assert results.count("superseded_code") == len({first, second} - {newest})

    wrong = verify(c, api_key, otp_id, "00000000" if "00000000" not in codes else "99999999")
    assert error_code(wrong) == "INVALID_CODE" and wrong.json["error"]["details"]["attemptsRemaining"] == 4
    assert verify(c, api_key, otp_id, newest).status_code == 200
    after = verify(c, api_key, otp_id, first)
    assert (after.status_code, error_code(after)) == (409, "OTP_ALREADY_VERIFIED")


def test_superseded_codes_are_kept_only_as_keyed_hashes(app, make_app, api_key, outbox):
    quick = make_app(RESEND_INTERVAL=0)
    otp_id, codes = _resent_twice(quick, api_key, outbox, "+905551110213")
    row = otp_row(quick, otp_id)
    stored = " ".join(str(v) for v in row.values())
    assert not any(code in stored for code in codes)
    with quick.app_context():
        from wpotp.otp.codes import hash_code
        assert row["superseded_code_hashes"].split() == [hash_code(otp_id, code) for code in codes[:2]]


def test_a_superseded_code_after_expiry_answers_otp_expired(app, make_app, api_key, outbox):
    quick = make_app(RESEND_INTERVAL=0)
    c = quick.test_client()
    otp_id, codes = _resent_twice(quick, api_key, outbox, "+905551110214")
    shift_back(quick, otp_id, 3600, "expires_at")
    r = verify(c, api_key, otp_id, codes[0])
    assert (r.status_code, error_code(r)) == (400, "OTP_EXPIRED")


def test_a_superseded_code_on_a_spent_budget_still_answers_too_many_attempts(app, make_app, api_key, outbox):
    quick = make_app(RESEND_INTERVAL=0)
    c = quick.test_client()
    otp_id, codes = _resent_twice(quick, api_key, outbox, "+905551110215")
    wrong = next(w for w in ("00000000", "99999999", "12121212") if w not in codes)
    for _ in range(5):
        verify(c, api_key, otp_id, wrong)
    r = verify(c, api_key, otp_id, codes[0])
    assert (r.status_code, error_code(r)) == (429, "TOO_MANY_ATTEMPTS")


def test_parallel_old_and_new_codes_verify_once_and_spend_nothing(app, make_app, api_key, outbox):
    quick = make_app(RESEND_INTERVAL=0)
    otp_id, codes = _resent_twice(quick, api_key, outbox, "+905551110216")
    old, newest = codes[0], codes[-1]
    if old == newest:
        old = codes[1]
    assert old != newest

    answers = in_threads(20, lambda i: verify(quick.test_client(), api_key, otp_id, newest if i % 2 else old))
    outcomes = Counter((a.status_code, error_code(a)) for a in answers)
    assert outcomes[(200, None)] == 1, outcomes
    assert set(outcomes) <= {(200, None), (409, "OTP_ALREADY_VERIFIED"), (409, "OTP_CANCELED")}, outcomes
    assert outcomes[(409, "OTP_ALREADY_VERIFIED")] + outcomes[(409, "OTP_CANCELED")] == 19
    row = otp_row(quick, otp_id)
    assert row["status"] == "VERIFIED" and row["attempts"] == 0


# --- cancel ---------------------------------------------------------------------------------------

def test_cancel_is_idempotent_and_recorded(app, client, api_key, run_worker):
    otp_id = _sent(client, api_key, run_worker, "+905551110211", code="7777")
    r = _cancel(client, api_key, otp_id)
    assert r.status_code == 200
    assert r.json["status"] == "CANCELED" and r.json["canceledAt"] is not None
    assert [e["type"] for e in r.json["timeline"]].count("otp.canceled") == 1

    again = _cancel(client, api_key, otp_id)
    assert again.status_code == 200 and again.json["status"] == "CANCELED"
    assert event_types(app, otp_id).count("otp.canceled") == 1

    v = verify(client, api_key, otp_id, "7777")
    assert (v.status_code, error_code(v)) == (409, "OTP_CANCELED")


def test_cancel_of_verified_otp_is_refused(app, client, api_key, run_worker):
    otp_id = _sent(client, api_key, run_worker, "+905551110212", code="7777")
    assert verify(client, api_key, otp_id, "7777").status_code == 200
    r = _cancel(client, api_key, otp_id)
    assert (r.status_code, error_code(r)) == (409, "OTP_ALREADY_VERIFIED")
    assert otp_row(app, otp_id)["status"] == "VERIFIED"
    assert "otp.canceled" not in event_types(app, otp_id)


def test_canceled_otp_queued_send_sends_nothing(app, client, api_key, run_worker, outbox):
    r = send(client, api_key, "+905551110213", code="7777")
    otp_id = r.json["id"]
    assert _cancel(client, api_key, otp_id).status_code == 200
    run_worker()
    assert outbox("+905551110213") == []
    row = otp_row(app, otp_id)
    assert row["status"] == "CANCELED" and row["sent_at"] is None
    assert "otp.sent" not in event_types(app, otp_id)
