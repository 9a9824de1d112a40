"""SPEC §7 `gateway`: the OTP goes to WAHA or Evolution API as plain text; a 2xx is SENT, not DELIVERED."""

from __future__ import annotations

import pytest

from config import ConfigError
from tests.otp.support import event_types, send_attempts
from wpotp.providers.base import OutboundTemplate, get_provider
from wpotp.providers.throttle import try_take

from .gateways import API_KEY, SESSION, Evolution, Waha
from .support import CODE, DIGITS, RECIPIENT, message_id_of, send_and_work, status_of


def test_waha_gets_the_code_in_the_template_text(gateway_app, live_key, run_worker):
    with Waha() as waha:
        app = gateway_app(waha)
        send_and_work(app, live_key(app), run_worker)

    check, post = waha.http.seen
    assert (check.method, check.headers["X-Api-Key"]) == ("GET", API_KEY)
    assert check.path == f"/api/contacts/check-exists?phone={DIGITS}&session={SESSION}"
    assert (post.method, post.path, post.headers["X-Api-Key"]) == ("POST", "/api/sendText", API_KEY)
    assert post.headers["Content-Type"] == "application/json"
    assert set(post.json) == {"session", "chatId", "text"}
    assert (post.json["session"], post.json["chatId"]) == (SESSION, f"{DIGITS}@c.us")
    assert CODE in post.json["text"] and "verification code" in post.json["text"]


def test_evolution_gets_the_code_in_the_template_text(gateway_app, live_key, run_worker):
    with Evolution() as evolution:
        app = gateway_app(evolution)
        send_and_work(app, live_key(app), run_worker)

    [post] = evolution.http.seen
    assert (post.method, post.path, post.headers["apikey"]) == ("POST", f"/message/sendText/{SESSION}", API_KEY)
    assert post.headers["Content-Type"] == "application/json"
    assert set(post.json) == {"number", "text"}
    assert post.json["number"] == DIGITS
    assert CODE in post.json["text"] and "verification code" in post.json["text"]


def test_a_gateway_2xx_is_sent_with_its_message_id_and_not_delivered(gateway, gateway_app, live_key, run_worker):
    app = gateway_app(gateway)
    key = live_key(app)
    otp_id = send_and_work(app, key, run_worker)
    run_worker(app)  # nothing else queued: no receipt is invented for a gateway

    detail = status_of(app, key, otp_id)
    assert detail["status"] == "SENT"
    assert detail["sentAt"] is not None
    assert detail["deliveredAt"] is None and detail["readAt"] is None
    assert message_id_of(app, otp_id) == gateway.message_ids[0]
    types = event_types(app, otp_id)
    assert types.count("otp.sent") == 1
    assert "otp.delivered" not in types and "otp.read" not in types
    [attempt] = send_attempts(app, otp_id)
    assert attempt["ok"] is True and attempt["provider_message_id"] == gateway.message_ids[0]


@pytest.mark.parametrize("engine", ["WEBJS", "NOWEB", "GOWS"])
def test_waha_message_id_is_the_one_its_acks_carry_for_every_engine(engine, gateway_app, live_key, run_worker):
    with Waha(engine=engine) as waha:
        app = gateway_app(waha)
        otp_id = send_and_work(app, live_key(app), run_worker)

    [ack_id] = waha.message_ids
    assert ack_id.startswith(f"true_{DIGITS}@c.us_")
    assert message_id_of(app, otp_id) == ack_id


def test_a_template_message_goes_out_as_its_filled_in_text(gateway, gateway_app):
    app = gateway_app(gateway)
    message = OutboundTemplate(message_id="msg_1", app_id="app_1", recipient=RECIPIENT, template_name="order",
                               language="en", body="Your order 9F3A is on its way.", parameters=("9F3A", "x"))
    with app.app_context():
        result = get_provider("gateway").send_template(message)

    [post] = gateway.sends
    assert "Your order 9F3A is on its way." in post.json.values()
    assert result.provider_message_id == gateway.message_ids[0]


def test_gateway_sends_count_against_the_throughput_cap(gateway, gateway_app, live_key, run_worker):
    """SPEC §7: no worker exceeds WHATSAPP_MPS, whatever the provider: a send takes a slot."""
    app = gateway_app(gateway, WHATSAPP_MPS_MARGIN_MS=600_000)  # a 10-minute window: the slot stays taken
    send_and_work(app, live_key(app), run_worker)
    with app.app_context():
        assert get_provider("gateway").throttled is True
        assert try_take("gateway", 1) > 0  # the one slot of this second is the send's
        assert try_take("cloud_api", 1) == 0.0


def test_start_up_names_each_missing_gateway_setting(make_app):
    with pytest.raises(ConfigError) as err:
        make_app(WPOTP_PROVIDER="gateway", GATEWAY_KIND="", GATEWAY_URL="", GATEWAY_SESSION="",
                 GATEWAY_WEBHOOK_TOKEN="")
    message = str(err.value)
    for name in ("GATEWAY_KIND", "GATEWAY_URL", "GATEWAY_SESSION", "GATEWAY_WEBHOOK_TOKEN"):
        assert f"{name} is not set" in message


def test_start_up_refuses_an_unknown_gateway_kind_and_a_short_token(make_app):
    with pytest.raises(ConfigError) as err:
        make_app(WPOTP_PROVIDER="gateway", GATEWAY_KIND="baileys", GATEWAY_URL="waha:3000",
                 GATEWAY_SESSION="default", GATEWAY_WEBHOOK_TOKEN="short")
    message = str(err.value)
    assert "GATEWAY_KIND must be waha or evolution" in message
    assert "GATEWAY_URL must start with http://" in message
    assert "GATEWAY_WEBHOOK_TOKEN must be at least 24 characters" in message
