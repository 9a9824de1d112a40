"""The fraud guard against SMS pumping (issue 15, docs/fraud.md): geo permissions per channel,
country and prefix velocity, the conversion monitor's automatic blocks, the 403 FRAUD_BLOCKED
envelope and its `otp.blocked` record. Real Redis, real database, through the HTTP API."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from wpotp.cache import bump_epoch
from wpotp.errors import FraudBlocked
from wpotp.extensions import db
from wpotp.models import App, Event, Otp
from wpotp.otp import fraud
from wpotp.otp.fraud import guard

from ..helpers import make_key
from .support import error_code, send, verify

CODE = "4821"


def pumped(i: int) -> str:
    """Numbers of one range, +90 55511 (the prefix pumping targets)."""
    return f"+90555111{i:04d}"


def german(i: int) -> str:
    return f"+49151234567{i:02d}"


def otp_rows(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Otp))


def blocked_events(app) -> list[dict]:
    with app.app_context():
        rows = db.session.scalars(select(Event).where(Event.type == "otp.blocked").order_by(Event.created_at)).all()
        assert all(e.otp_id is None and e.message_id is None for e in rows)
        return [e.data for e in rows]


def test_a_pumping_burst_on_one_prefix_is_blocked_while_a_normal_country_keeps_sending(app, client):
    key = make_key(app, "shop", fraud_unverified_prefix=5, fraud_unverified_country=50)
    for i in range(5):  # five sends to the range, none verified: still let through
        assert send(client, key, pumped(i), code=CODE).status_code == 201
    before = otp_rows(app)

    tripped = send(client, key, pumped(5), code=CODE)
    again = send(client, key, pumped(6), code=CODE)

    assert tripped.status_code == again.status_code == 403
    assert tripped.json["error"]["details"]["reason"] == "prefix_low_conversion"
    assert again.json["error"]["details"]["reason"] == "prefix_blocked"
    assert again.json["error"]["details"]["prefix"] == "+90 55511"
    assert otp_rows(app) == before  # no OTP row for a refused send
    # Germany, whose users verify, keeps sending; so does another Turkish range.
    for i in range(8):
        otp = send(client, key, german(i), code=CODE)
        assert otp.status_code == 201
        assert verify(client, key, otp.json["id"], CODE).status_code == 200
    assert send(client, key, "+905321234567", code=CODE).status_code == 201
    assert [e["reason"] for e in blocked_events(app)] == ["prefix_low_conversion", "prefix_blocked"]


def test_verified_sends_keep_a_prefix_open(app, client):
    key = make_key(app, "shop", fraud_unverified_prefix=3)
    for i in range(10):
        otp = send(client, key, pumped(i), code=CODE)
        assert otp.status_code == 201, otp.json
        assert verify(client, key, otp.json["id"], CODE).status_code == 200
    assert blocked_events(app) == []


def test_the_country_monitor_blocks_a_country_pumped_over_many_ranges(app, client):
    key = make_key(app, "shop", fraud_unverified_prefix=100, fraud_unverified_country=4)
    for i in range(4):
        assert send(client, key, f"+9055{i}1234567", code=CODE).status_code == 201
    refused = send(client, key, "+905321234567", code=CODE)
    assert refused.status_code == 403
    assert refused.json["error"]["details"] == {"reason": "country_low_conversion", "country": "TR",
                                                "channel": "whatsapp", "retryAfter": 3600}
    assert refused.headers["Retry-After"] == "3600"
    assert send(client, key, german(1), code=CODE).status_code == 201


def test_the_403_is_spec_3s_envelope(app, client):
    key = make_key(app, "shop", fraud_deny_whatsapp="TR")
    refused = send(client, key, pumped(1))
    assert refused.status_code == 403
    assert refused.mimetype == "application/json"
    assert set(refused.json) == {"error"}
    assert set(refused.json["error"]) == {"code", "message", "details"}
    assert refused.json["error"]["code"] == "FRAUD_BLOCKED"
    assert refused.json["error"]["details"] == {"reason": "geo_denied", "country": "TR", "channel": "whatsapp"}
    assert blocked_events(app) == [{"reason": "geo_denied", "country": "TR", "channel": "whatsapp",
                                    "recipient": "+9055511***01"}]
    assert otp_rows(app) == 0


def test_the_refusal_shows_in_the_logs_without_an_otp(app, client):
    key = make_key(app, "shop", fraud_deny_whatsapp="TR")
    assert send(client, key, pumped(1)).status_code == 403
    logs = client.get("/v1/logs?type=otp.blocked", headers=key.headers)
    assert logs.status_code == 200
    [item] = logs.json["data"]
    assert item["otpId"] is None and item["data"]["reason"] == "geo_denied"


def test_deny_and_allow_lists_are_per_channel(app):
    make_key(app, "shop", fraud_deny_sms="TR", fraud_allow_sms="TR,DE,GB", fraud_allow_whatsapp="TR,DE")
    with app.app_context():
        shop = db.session.scalars(select(App).where(App.name == "shop")).one()
        guard(shop, pumped(1), "TR", "whatsapp")  # allowed on WhatsApp
        guard(shop, pumped(2), "TR", "auto")  # auto starts on WhatsApp
        with pytest.raises(FraudBlocked) as denied:
            guard(shop, pumped(3), "TR", "sms")
        assert denied.value.details["reason"] == "geo_denied"
        guard(shop, german(1), "DE", "sms")
        with pytest.raises(FraudBlocked) as outside:
            guard(shop, "+12015550123", "US", "whatsapp")
        assert outside.value.details == {"reason": "geo_not_allowed", "country": "US", "channel": "whatsapp"}
        with pytest.raises(FraudBlocked):
            guard(shop, "+12015550123", "US", "sms")


def test_an_allow_list_refuses_other_countries_over_the_api(app, client):
    key = make_key(app, "shop", fraud_allow_whatsapp="DE")
    assert send(client, key, german(1)).status_code == 201
    refused = send(client, key, pumped(1))
    assert (refused.status_code, refused.json["error"]["details"]["reason"]) == (403, "geo_not_allowed")


def test_prefix_velocity_refuses_past_the_limit_and_counts_nothing_refused(app, client):
    key = make_key(app, "shop", fraud_prefix_limit="3/hour")
    for i in range(3):
        assert send(client, key, pumped(i)).status_code == 201
    refused = send(client, key, pumped(3))
    assert refused.status_code == 403
    details = refused.json["error"]["details"]
    assert (details["reason"], details["prefix"], details["country"]) == ("prefix_velocity", "+90 55511", "TR")
    assert 3500 < int(refused.headers["Retry-After"]) <= 3600
    assert send(client, key, "+905321234567").status_code == 201  # another range of the country


def test_country_velocity_refuses_past_the_limit(app, client):
    key = make_key(app, "shop", fraud_country_limit="2/minute")
    assert send(client, key, pumped(1)).status_code == 201
    assert send(client, key, "+905321234567").status_code == 201
    refused = send(client, key, "+905421234567")
    assert refused.json["error"]["details"]["reason"] == "country_velocity"
    assert send(client, key, german(1)).status_code == 201


def test_resend_is_guarded_too(app, make_app):
    app = make_app(RESEND_INTERVAL=0)
    client = app.test_client()
    key = make_key(app, "shop")
    otp = send(client, key, pumped(1)).json
    with app.app_context():
        shop = db.session.get(App, key.app_id)
        shop.fraud_deny_whatsapp = "TR"
        db.session.commit()
    with app.app_context():
        bump_epoch()  # as the console's settings page does
    resent = client.post(f"/v1/otp/{otp['id']}/resend", headers=key.headers)
    assert resent.status_code == 403 and error_code(resent) == "FRAUD_BLOCKED"


def test_a_guard_switched_off_for_the_app_lets_everything_through(app, client):
    key = make_key(app, "shop", fraud_guard=False, fraud_deny_whatsapp="TR", fraud_prefix_limit="1/hour")
    for i in range(3):
        assert send(client, key, pumped(i)).status_code == 201


def test_unblocking_lifts_a_block_and_forgets_its_count(app, client):
    key = make_key(app, "shop", fraud_unverified_prefix=2)
    for i in range(2):
        assert send(client, key, pumped(i)).status_code == 201
    assert send(client, key, pumped(2)).status_code == 403
    with app.app_context():
        shop = db.session.get(App, key.app_id)
        [block] = fraud.current_blocks(shop)
        assert (block.kind, block.label, block.member) == ("prefix", "+90 55511", "p:9055511")
        assert fraud.unblock(shop, block.member) is True
        assert fraud.current_blocks(shop) == []
        assert fraud.unblock(shop, "p:../x") is False
    assert send(client, key, pumped(3)).status_code == 201
    assert send(client, key, pumped(4)).status_code == 201


def test_the_prefix_is_the_calling_code_and_the_first_national_digits(app):
    with app.app_context():
        assert fraud.target_of("+905551112233", "TR") == fraud.Target("TR", "9055511")
        assert fraud.target_of("+12015550123", "US") == fraud.Target("US", "120155")
        assert fraud.target_of("+4915123456789", "DE").prefix_label == "+49 15123"
        assert fraud.mask("+905551112233", fraud.target_of("+905551112233", "TR")) == "+9055511***33"


def test_a_refused_send_spends_no_send_limit(app, client):
    key = make_key(app, "shop", fraud_deny_whatsapp="TR", recipient_rate_limit="2/hour")
    for _ in range(4):
        assert send(client, key, pumped(1)).status_code == 403
    with app.app_context():
        db.session.get(App, key.app_id).fraud_deny_whatsapp = ""
        db.session.commit()
        bump_epoch()
    assert [send(client, key, pumped(1)).status_code for _ in range(3)] == [201, 201, 429]


def test_the_monitor_counts_only_the_sends_left_unverified(app, client):
    key = make_key(app, "shop", fraud_unverified_prefix=4)
    ids = [send(client, key, pumped(i), code=CODE).json["id"] for i in range(4)]
    for otp_id in ids[:2]:
        assert verify(client, key, otp_id, CODE).status_code == 200
    # The counter is at 4: the database says 2 are unverified, so sending goes on...
    assert send(client, key, pumped(4), code=CODE).status_code == 201
    assert send(client, key, pumped(5), code=CODE).status_code == 201
    # ...until 4 are: the next send blocks the prefix.
    refused = send(client, key, pumped(6), code=CODE)
    assert (refused.status_code, refused.json["error"]["details"]["reason"]) == (403, "prefix_low_conversion")


def test_the_dialects_answer_the_refusal_in_their_own_styles(app, client):
    key = make_key(app, "shop", fraud_deny_whatsapp="TR")
    wawp = client.get("/compat/wawp/v2/auth/otp/send", query_string={
        "chatId": "905551110001", "instance_id": key.app_id, "access_token": key.secret})
    assert wawp.status_code == 403
    assert (wawp.json["code"], wawp.json["reason"], wawp.json["country"]) == ("fraud_blocked", "geo_denied", "TR")
    otpapi = client.post("/compat/otpapi/otp/send", headers=key.headers,
                         json={"appid": key.app_id, "recipient": pumped(1), "channel": "whatsapp"})
    assert otpapi.status_code == 403
    assert otpapi.json["error"]["code"] == "FRAUD_BLOCKED"
    assert otpapi.json["error"]["details"]["reason"] == "geo_denied"
    assert otp_rows(app) == 0
