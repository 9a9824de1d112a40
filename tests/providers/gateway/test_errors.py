"""SPEC §7 retries for the gateway: transport failures, 5xx, 429 and a session that is not ready
are retried; a bad API key, a wrong session and a number not on WhatsApp fail at once."""

from __future__ import annotations

import pytest

from tests.doubles import Reply
from tests.otp.support import event_types, send_attempts
from wpotp.providers.base import OutboundOtp, ProviderError, get_provider

from .gateways import API_KEY, Evolution, Waha
from .support import CODE, DIGITS, RECIPIENT, message_id_of, send_and_work, status_of

SESSION_STARTING = Reply(422, {"error": "Session status is not as expected. Try again later or restart the session",
                               "session": "default", "status": "STARTING", "expected": ["WORKING"]})
EVOLUTION_CLOSED = Reply(500, {"status": 500, "error": "Internal Server Error",
                               "response": {"message": ["Error: Connection Closed"]}})
WAHA_463 = Reply(500, {"statusCode": 500, "exception": {"message": "2 UNKNOWN: server returned error 463"}})
BODY = f"*{CODE}* is your verification code. For your security, do not share this code."


def outbound() -> OutboundOtp:
    return OutboundOtp(otp_id="otp_1", app_id="app_1", recipient=RECIPIENT, code=CODE,
                       template_name="wpotp_verification", language="en", body=BODY, copy_code_button=False)


def send_directly(app) -> ProviderError | str:
    """Call the provider as the worker does; its ProviderError, or the message id it returned."""
    with app.app_context():
        try:
            return get_provider("gateway").send_otp(outbound()).provider_message_id
        except ProviderError as exc:
            return exc


def test_a_rejected_api_key_fails_at_once_as_a_configuration_fault(gateway, gateway_app, live_key, run_worker):
    app = gateway_app(gateway, GATEWAY_API_KEY="not-the-key-7c1a")
    key = live_key(app)
    otp_id = send_and_work(app, key, run_worker)

    detail = status_of(app, key, otp_id)
    assert detail["status"] == "FAILED"
    assert "gateway_auth" in detail["error"] and "GATEWAY_API_KEY" in detail["error"]
    assert "not-the-key-7c1a" not in detail["error"]
    [attempt] = send_attempts(app, otp_id)
    assert attempt["ok"] is False and attempt["permanent"] is True
    error = send_directly(app)
    assert isinstance(error, ProviderError) and error.permanent and error.config_fault


def test_a_recipient_not_on_whatsapp_fails_permanently(gateway, gateway_app, live_key, run_worker):
    gateway.not_on_whatsapp.add(DIGITS)
    app = gateway_app(gateway)
    key = live_key(app)
    otp_id = send_and_work(app, key, run_worker)

    detail = status_of(app, key, otp_id)
    assert detail["status"] == "FAILED"
    assert "not on WhatsApp" in detail["error"]
    [attempt] = send_attempts(app, otp_id)
    assert attempt["permanent"] is True
    assert gateway.message_ids == []
    assert event_types(app, otp_id).count("otp.failed") == 1
    error = send_directly(app)
    assert isinstance(error, ProviderError) and error.code == "not_on_whatsapp" and not error.config_fault


def test_waha_sends_nothing_to_a_number_its_check_reports_missing(gateway_app, live_key, run_worker):
    with Waha() as waha:
        waha.not_on_whatsapp.add(DIGITS)
        app = gateway_app(waha)
        send_and_work(app, live_key(app), run_worker)
    assert waha.sends == []


@pytest.mark.parametrize("kind", ["waha", "evolution"])
def test_gateway_failures_are_retried_until_it_takes_the_message(kind, gateway_app, live_key, run_worker):
    failure = WAHA_463 if kind == "waha" else EVOLUTION_CLOSED
    with (Waha() if kind == "waha" else Evolution()) as gateway:
        gateway.replies = [failure, Reply(503, "<html>Bad Gateway</html>", {"Content-Type": "text/html"})]
        app = gateway_app(gateway)
        key = live_key(app)
        otp_id = send_and_work(app, key, run_worker)

    attempts = send_attempts(app, otp_id)
    assert [(a["ok"], a["permanent"]) for a in attempts] == [(False, False), (False, False), (True, None)]
    assert "HTTP 500" in attempts[0]["error"] and "HTTP 503" in attempts[1]["error"]
    assert status_of(app, key, otp_id)["status"] == "SENT"
    assert message_id_of(app, otp_id) == gateway.message_ids[0]
    assert len(gateway.sends) == 3


def test_gateway_failures_that_outlast_the_retries_fail_with_the_gateways_reason(gateway, gateway_app, live_key,
                                                                                 run_worker):
    gateway.replies = [Reply(502, {"message": "upstream down"})] * 3
    app = gateway_app(gateway)
    key = live_key(app)
    otp_id = send_and_work(app, key, run_worker)

    detail = status_of(app, key, otp_id)
    assert detail["status"] == "FAILED"
    assert "gateway_unavailable" in detail["error"] and "HTTP 502" in detail["error"]
    assert len(send_attempts(app, otp_id)) == 3


def test_a_waha_session_that_is_not_ready_is_retried(gateway_app, live_key, run_worker):
    with Waha() as waha:
        waha.replies = [SESSION_STARTING]
        app = gateway_app(waha)
        key = live_key(app)
        otp_id = send_and_work(app, key, run_worker)

    first, second = send_attempts(app, otp_id)
    assert first["permanent"] is False and "gateway_session_not_ready" in first["error"]
    assert second["ok"] is True
    assert status_of(app, key, otp_id)["status"] == "SENT"


def test_a_gateway_that_does_not_answer_in_time_is_retried(gateway, gateway_app, live_key, run_worker):
    gateway.replies = [Reply(200, {}, delay=2.5)]
    app = gateway_app(gateway, PROVIDER_TIMEOUT=1)
    key = live_key(app)
    otp_id = send_and_work(app, key, run_worker)

    first, second = send_attempts(app, otp_id)
    assert first["ok"] is False and first["permanent"] is False and first["error"].startswith("timeout")
    assert second["ok"] is True
    assert status_of(app, key, otp_id)["status"] == "SENT"


def test_an_unreachable_gateway_is_retried_then_fails(gateway, gateway_app, live_key, run_worker):
    app = gateway_app(gateway, GATEWAY_URL="http://127.0.0.1:9")  # nothing listens on the discard port
    key = live_key(app)
    otp_id = send_and_work(app, key, run_worker)

    attempts = send_attempts(app, otp_id)
    assert len(attempts) == 3 and all(a["permanent"] is False for a in attempts)
    assert attempts[0]["error"].startswith("network")
    assert status_of(app, key, otp_id)["status"] == "FAILED"


def test_a_wrong_session_fails_at_once_as_a_configuration_fault(gateway, gateway_app, live_key, run_worker):
    app = gateway_app(gateway, GATEWAY_SESSION="no-such-session")
    key = live_key(app)
    otp_id = send_and_work(app, key, run_worker)

    detail = status_of(app, key, otp_id)
    assert detail["status"] == "FAILED" and "GATEWAY_SESSION" in detail["error"]
    assert len(send_attempts(app, otp_id)) == 1
    error = send_directly(app)
    assert isinstance(error, ProviderError) and error.permanent and error.config_fault


@pytest.mark.parametrize(("reply", "code", "permanent", "config_fault"), [
    (Reply(401, {"message": "Unauthorized"}), "gateway_auth", True, True),
    (Reply(403, {"message": "Forbidden"}), "gateway_auth", True, True),
    (Reply(429, {"message": "slow down"}, {"Retry-After": "7"}), "gateway_rate_limited", False, False),
    (SESSION_STARTING, "gateway_session_not_ready", False, False),
    (Reply(422, {"error": "Session status is not as expected", "status": "SCAN_QR_CODE"}),
     "gateway_session_not_ready", False, False),
    (EVOLUTION_CLOSED, "gateway_session_not_ready", False, False),
    (WAHA_463, "gateway_unavailable", False, False),
    (Reply(500, b"boom", {"Content-Type": "text/plain"}), "gateway_unavailable", False, False),
    (Reply(400, {"status": 400, "error": "Bad Request",
                 "response": {"message": [{"jid": f"{DIGITS}@s.whatsapp.net", "exists": False, "number": DIGITS}]}}),
     "not_on_whatsapp", True, False),
    (Reply(422, {"error": "PHONE_NOT_ON_WHATSAPP", "message": f"The number {DIGITS} is not registered on WhatsApp."}),
     "not_on_whatsapp", True, False),
    (Reply(400, {"statusCode": 400, "message": ["text must be a string"], "error": "Bad Request"}),
     "gateway_rejected", True, False),
    (Reply(404, {"message": "Cannot POST /api/sendText"}), "gateway_not_found", True, True),
    (Reply(302, "", {"Location": "http://elsewhere/"}), "gateway_not_found", True, True),
    (Reply(201, {"ack": 0}), "gateway_bad_answer", True, True),
    (Reply(200, "<html>not a gateway</html>", {"Content-Type": "text/html"}), "gateway_bad_answer", True, True),
])
def test_gateway_answers_are_classified_for_retry(gateway, gateway_app, reply, code, permanent, config_fault):
    gateway.replies = [reply]

    error = send_directly(gateway_app(gateway))

    assert isinstance(error, ProviderError)
    assert (error.code, error.permanent, error.config_fault) == (code, permanent, config_fault)
    assert error.retry_after == (7 if reply.status == 429 else None)


def test_reasons_never_carry_the_code_the_text_or_the_api_key(gateway, gateway_app):
    echo = {"status": 400, "error": "Bad Request",
            "message": f"cannot send '{BODY}' with apikey {API_KEY}", "response": {"message": [f"code {CODE}"]}}
    gateway.replies = [Reply(400, echo)]

    error = send_directly(gateway_app(gateway))

    assert isinstance(error, ProviderError) and error.code == "gateway_rejected"
    for secret in (CODE, BODY, API_KEY):
        assert secret not in str(error)
    assert "cannot send" in str(error) and len(error.reason) < 220


def test_waha_without_the_number_check_still_sends(gateway_app):
    with Waha() as waha:
        waha.check_reply = Reply(501, {"message": "Not Implemented"})
        message_id = send_directly(gateway_app(waha))

    assert message_id == waha.message_ids[0]
    [post] = waha.sends
    assert post.json["chatId"] == f"{DIGITS}@c.us"
