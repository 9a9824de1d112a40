"""SPEC §7: Meta's errors, classified by error.code: retried with backoff, or failed for good."""

from __future__ import annotations

import socket

import pytest

from tests.doubles import Reply
from tests.helpers import make_key
from tests.otp.support import event_types, send_attempts, show
from wpotp.providers.base import OutboundOtp, OutboundTemplate, ProviderError
from wpotp.providers.cloud_api import CloudApiProvider
from wpotp.providers.faults import last_config_fault

from .graph import SETTINGS, TOKEN, meta_error, token_expired, utility_template
from .support import RECIPIENT, send_and_work

UNDELIVERABLE = meta_error(131026, "Message undeliverable.", details="Message Undeliverable.")
SOMETHING_WRONG = meta_error(131000, "Something went wrong", status=500)
UNAVAILABLE = meta_error(131016, "Service unavailable", status=503)


def test_undeliverable_fails_at_once_with_metas_reason(cloud_app, cloud_client, live_key, graph, run_worker):
    graph.replies.append(UNDELIVERABLE)
    otp_id = send_and_work(cloud_client, live_key, run_worker, cloud_app)

    detail = show(cloud_client, live_key, otp_id)
    assert detail["status"] == "FAILED"
    assert detail["error"] == "131026: Message undeliverable"
    assert event_types(cloud_app, otp_id).count("otp.failed") == 1
    failed = [e for e in detail["timeline"] if e["type"] == "otp.failed"]
    assert failed[0]["error"] == "131026: Message undeliverable"
    [attempt] = send_attempts(cloud_app, otp_id)
    assert attempt["ok"] is False and attempt["permanent"] is True
    assert len(graph.sends) == 1


def test_template_problem_fails_without_retry(cloud_app, cloud_client, live_key, graph, run_worker):
    graph.replies.append(meta_error(132001, "Template name does not exist in the translation",
                                    details="template name (wpotp_verification) does not exist in en"))
    otp_id = send_and_work(cloud_client, live_key, run_worker, cloud_app)

    detail = show(cloud_client, live_key, otp_id)
    assert detail["status"] == "FAILED"
    assert detail["error"].startswith("132001: Template name does not exist in the translation")
    assert len(graph.sends) == 1


def test_expired_token_fails_and_is_noted_as_a_configuration_fault(cloud_app, cloud_client, live_key, graph,
                                                                   run_worker):
    graph.replies.append(token_expired())
    otp_id = send_and_work(cloud_client, live_key, run_worker, cloud_app)

    detail = show(cloud_client, live_key, otp_id)
    assert detail["status"] == "FAILED"
    assert detail["error"].startswith("190: Error validating access token")
    assert len(graph.sends) == 1
    with cloud_app.app_context():
        fault = last_config_fault("cloud_api")
    assert fault is not None and fault["reason"].startswith("190:")
    assert TOKEN not in fault["reason"] and TOKEN not in detail["error"]


def test_retryable_errors_are_retried_until_meta_accepts(cloud_app, cloud_client, live_key, graph, run_worker):
    graph.replies.extend([SOMETHING_WRONG, UNAVAILABLE])
    otp_id = send_and_work(cloud_client, live_key, run_worker, cloud_app)

    detail = show(cloud_client, live_key, otp_id)
    assert detail["status"] == "SENT"
    attempts = send_attempts(cloud_app, otp_id)
    assert [a["ok"] for a in attempts] == [False, False, True]
    assert [a["permanent"] for a in attempts[:2]] == [False, False]
    assert attempts[0]["error"] == "131000: Something went wrong"
    assert attempts[2]["provider_message_id"] == graph.wamids[0]
    assert event_types(cloud_app, otp_id).count("otp.failed") == 0


def test_retryable_errors_fail_once_retries_run_out(cloud_app, cloud_client, live_key, graph, run_worker):
    graph.replies.extend([UNAVAILABLE] * 3)
    otp_id = send_and_work(cloud_client, live_key, run_worker, cloud_app)

    detail = show(cloud_client, live_key, otp_id)
    assert detail["status"] == "FAILED"
    assert detail["error"] == "131016: Service unavailable"
    assert len(send_attempts(cloud_app, otp_id)) == 3
    assert event_types(cloud_app, otp_id).count("otp.failed") == 1


def test_timeout_is_retried(make_app, app, graph, run_worker):
    slow_app = make_app(WHATSAPP_GRAPH_URL=graph.url, **{**SETTINGS, "PROVIDER_TIMEOUT": 1, "SEND_RETRY_DELAYS": [0]})
    key = make_key(slow_app, mode="live")
    client = slow_app.test_client()
    graph.replies.append(Reply(delay=2.5, body={"messages": [{"id": "wamid.too-late"}]}))
    otp_id = send_and_work(client, key, run_worker, slow_app)

    detail = show(client, key, otp_id)
    assert detail["status"] == "SENT"
    attempts = send_attempts(slow_app, otp_id)
    assert [a["ok"] for a in attempts] == [False, True]
    assert attempts[0]["error"].startswith("timeout:") and attempts[0]["permanent"] is False
    assert attempts[1]["provider_message_id"] != "wamid.too-late"


def test_unreachable_graph_api_is_retried_then_fails(make_app, app, run_worker):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    down_app = make_app(WHATSAPP_GRAPH_URL=closed, **SETTINGS)
    key = make_key(down_app, mode="live")
    client = down_app.test_client()
    otp_id = send_and_work(client, key, run_worker, down_app)

    detail = show(client, key, otp_id)
    assert detail["status"] == "FAILED"
    assert detail["error"].startswith("network: could not reach the provider")
    assert len(send_attempts(down_app, otp_id)) == 3


def _otp(code: str = "482913") -> OutboundOtp:
    return OutboundOtp(otp_id="otp_x", app_id="app_x", recipient=RECIPIENT, code=code,
                       template_name="wpotp_verification", language="en", body=f"{code} is your code",
                       copy_code_button=True)


def _provider_error(cloud_app, graph, reply: Reply) -> ProviderError:
    """What the provider raises when Meta answers `reply`."""
    graph.replies.append(reply)
    with cloud_app.app_context(), pytest.raises(ProviderError) as caught:
        CloudApiProvider().send_otp(_otp())
    return caught.value


@pytest.mark.parametrize(("reply", "code", "permanent", "config_fault"), [
    (meta_error(130429, "Rate limit hit", status=400), "130429", False, False),
    (meta_error(131056, "(Business Account, Consumer Account) pair rate limit hit"), "131056", False, False),
    (SOMETHING_WRONG, "131000", False, False),
    (UNAVAILABLE, "131016", False, False),
    (UNDELIVERABLE, "131026", True, False),
    (meta_error(132000, "Number of parameters does not match the expected number of params"), "132000", True,
     False),
    (meta_error(132001, "Template name does not exist in the translation"), "132001", True, False),
    (meta_error(132015, "Template is paused"), "132015", True, False),
    (meta_error(132016, "Template is disabled"), "132016", True, False),
    (token_expired(), "190", True, True),
    (meta_error(131005, "Access denied", status=403), "131005", True, True),
    (meta_error(100, "Invalid parameter"), "100", True, False),
    (Reply(status=502, body="<html>Bad Gateway</html>", headers={"Content-Type": "text/html"}), "http_502", False,
     False),
    (Reply(status=404, body="not found", headers={"Content-Type": "text/plain"}), "http_404", True, False),
])
def test_meta_errors_are_classified_by_their_code(cloud_app, graph, reply, code, permanent, config_fault):
    error = _provider_error(cloud_app, graph, reply)

    assert (error.code, error.permanent, error.config_fault) == (code, permanent, config_fault)
    assert str(error).startswith(f"{code}: ") and len(str(error)) < 260
    assert "482913" not in str(error) and TOKEN not in str(error)


def test_rate_limits_ask_for_a_pause_before_the_retry(cloud_app, graph):
    throughput = _provider_error(cloud_app, graph, meta_error(130429, "Rate limit hit"))
    pair = _provider_error(cloud_app, graph, meta_error(131056, "Pair rate limit hit"))

    assert 1 <= throughput.retry_after <= 5
    assert pair.retry_after >= 6


def test_an_answer_without_a_message_id_is_retryable(cloud_app, graph):
    error = _provider_error(cloud_app, graph, Reply(body={"messaging_product": "whatsapp", "contacts": [],
                                                          "messages": []}))

    assert error.permanent is False
    assert len(graph.sends) == 1


def test_template_message_carries_one_body_parameter_per_variable_and_no_button(cloud_app, graph):
    graph.template_pages[0].append(utility_template("order_ready", "en_US", "Order {{1}} is ready at {{2}}."))
    message = OutboundTemplate(message_id="msg_x", app_id="app_x", recipient=RECIPIENT, template_name="order_ready",
                               language="en_US", body="Order 9F3A is ready at Kadikoy",
                               parameters=("9F3A", "Kadikoy"))
    with cloud_app.app_context():
        result = CloudApiProvider().send_template(message)

    assert result.provider_message_id == graph.wamids[0]
    assert graph.problems == []
    assert graph.sends[0].json["template"] == {
        "name": "order_ready", "language": {"code": "en_US"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "9F3A"},
                                                       {"type": "text", "text": "Kadikoy"}]}]}
    assert graph.sends[0].json["to"] == "905551112233"
