"""SPEC §7: an OTP sent with a live key goes to Meta as an AUTHENTICATION template, code twice."""

from __future__ import annotations

from sqlalchemy import update

from tests.helpers import make_key
from tests.otp.support import event_types, send_attempts, show
from wpotp.extensions import db
from wpotp.models import Template

from .authentication_templates import auth_template
from .graph import PHONE_NUMBER_ID, TOKEN, VERSION, meta_error, otp_payload
from .support import RECIPIENT, LogCapture, send_and_work


def test_otp_goes_to_meta_as_authentication_template_with_code_twice(cloud_app, cloud_client, live_key, graph,
                                                                      run_worker):
    send_and_work(cloud_client, live_key, run_worker, cloud_app, code="482913")

    assert graph.problems == []
    [request] = graph.sends
    assert request.path == f"/{VERSION}/{PHONE_NUMBER_ID}/messages"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"].startswith("application/json")
    assert request.json == otp_payload(RECIPIENT, "482913")


def test_wamid_is_kept_and_otp_is_sent(cloud_app, cloud_client, live_key, graph, run_worker):
    otp_id = send_and_work(cloud_client, live_key, run_worker, cloud_app)

    detail = show(cloud_client, live_key, otp_id)
    assert detail["status"] == "SENT"
    assert detail["sentAt"] is not None and detail["error"] is None
    assert "otp.sent" in event_types(cloud_app, otp_id)
    [attempt] = send_attempts(cloud_app, otp_id)
    assert attempt["ok"] is True
    assert attempt["provider_message_id"] == graph.wamids[0]
    assert graph.wamids[0].startswith("wamid.")


def test_template_without_copy_code_button_sends_no_button_component(app, cloud_app, cloud_client, live_key,
                                                                      graph, run_worker, restore_templates):
    with cloud_app.app_context():
        db.session.execute(update(Template).where(Template.language == "tr").values(copy_code_button=False))
        db.session.commit()
    # Meta's tr template has no button either: the double refuses a button component for it.
    graph.template_pages = [[auth_template("wpotp_verification", "tr", button=False)]]

    send_and_work(cloud_client, live_key, run_worker, cloud_app, code="7315", language="tr")

    assert graph.problems == []
    assert graph.sends[0].json == otp_payload(RECIPIENT, "7315", language="tr", button=False)


def test_test_keys_never_reach_meta(cloud_app, cloud_client, graph, run_worker):
    test_key = make_key(cloud_app, mode="test")
    otp_id = send_and_work(cloud_client, test_key, run_worker, cloud_app)

    assert graph.http.seen == []
    assert show(cloud_client, test_key, otp_id)["status"] in ("SENT", "DELIVERED", "READ")


def test_code_and_token_never_reach_a_log_line(cloud_app, cloud_client, live_key, graph, run_worker):
    # Meta echoing the parameter back in its details must not leak it into the reason either.
    graph.replies.append(meta_error(131009, "Parameter value is not valid",
                                    details="Parameter value 90817263 is not valid for body text"))
    with LogCapture() as logs:
        otp_id = send_and_work(cloud_client, live_key, run_worker, cloud_app, code="90817263")

    detail = show(cloud_client, live_key, otp_id)
    assert detail["status"] == "FAILED"
    assert detail["error"].startswith("131009: Parameter value is not valid")
    assert logs.lines, "the send should have logged something"
    for text in [*logs.lines, detail["error"], *(a["error"] or "" for a in send_attempts(cloud_app, otp_id))]:
        assert "90817263" not in text
        assert TOKEN not in text
