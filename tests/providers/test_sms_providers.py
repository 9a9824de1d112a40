"""The SMS channel (SPEC §12) end to end: /v1/otp/send with channel sms through a real worker to
Twilio, Vonage and a generic HTTP gateway (real HTTP doubles on 127.0.0.1 that refuse a wrong
shape), their signed delivery reports at /webhooks/sms/<provider> ending DELIVERED or FAILED, a
bad signature refused without a change; and the SMS sandbox for test keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest

from config import ConfigError
from tests.helpers import make_key
from tests.otp.support import otp_row, send, send_attempts, show
from wpotp.extensions import db
from wpotp.models import Event
from wpotp.providers.sms_sandbox import read_sms_outbox

from .sms_doubles import (
    GATEWAY_AUTH,
    GATEWAY_TOKEN,
    TWILIO_FROM,
    TWILIO_SID,
    TWILIO_TOKEN,
    VONAGE_FROM,
    VONAGE_KEY,
    VONAGE_SECRET,
    AndroidGatewayDouble,
    TwilioDouble,
    VonageDouble,
)

RECIPIENT = "+905551112233"
CODE = "482913"
PUBLIC = "https://otp.example.com"
VONAGE_SIG_SECRET = "vonage-signature-secret"


@pytest.fixture
def twilio():
    with TwilioDouble() as double:
        yield double


@pytest.fixture
def vonage():
    with VonageDouble() as double:
        yield double


@pytest.fixture
def android():
    with AndroidGatewayDouble() as double:
        yield double


def twilio_app(make_app, double, **overrides):
    settings = dict(SMS_PROVIDER="twilio", TWILIO_API_URL=double.url, TWILIO_ACCOUNT_SID=TWILIO_SID,
                    TWILIO_AUTH_TOKEN=TWILIO_TOKEN, TWILIO_FROM=TWILIO_FROM, SMS_CALLBACK_BASE_URL=PUBLIC,
                    SEND_RETRY_DELAYS=[0, 0])
    return make_app(**{**settings, **overrides})


def vonage_app(make_app, double, **overrides):
    settings = dict(SMS_PROVIDER="vonage", VONAGE_API_URL=double.url, VONAGE_API_KEY=VONAGE_KEY,
                    VONAGE_API_SECRET=VONAGE_SECRET, VONAGE_FROM=VONAGE_FROM, VONAGE_SIGNATURE_SECRET=VONAGE_SIG_SECRET,
                    VONAGE_SIGNATURE_METHOD="md5hash", SMS_CALLBACK_BASE_URL=PUBLIC, SEND_RETRY_DELAYS=[0, 0])
    return make_app(**{**settings, **overrides})


def http_app(make_app, double, **overrides):
    settings = dict(SMS_PROVIDER="http", SMS_HTTP_URL=double.url + "/message", SMS_HTTP_AUTH_HEADER=GATEWAY_AUTH,
                    SMS_HTTP_BODY='{"phoneNumbers": ["{recipient}"], "textMessage": {"text": "{body}"}}',
                    SMS_HTTP_WEBHOOK_TOKEN=GATEWAY_TOKEN, SEND_RETRY_DELAYS=[0, 0])
    return make_app(**{**settings, **overrides})


def send_sms(app, run_worker, recipient: str = RECIPIENT, mode: str = "live", **fields):
    """A channel-sms OTP through a live key and a real worker burst: (key, otp id)."""
    key = make_key(app, mode=mode)
    r = send(app.test_client(), key, recipient, code=CODE, channel="sms", **fields)
    assert r.status_code == 201, r.json
    assert r.json["channel"] == "sms"
    run_worker(app)
    return key, r.json["id"]


# --- signing as the vendors do (written from their docs, not from our code) --------------------------

def twilio_sign(url: str, form: dict[str, str]) -> str:
    data = url + "".join(k + form[k] for k in sorted(form))
    return base64.b64encode(hmac.new(TWILIO_TOKEN.encode(), data.encode(), hashlib.sha1).digest()).decode()


def vonage_sign(params: dict[str, str]) -> str:
    text = "".join(f"&{k}={v.replace('&', '_').replace('=', '_')}" for k, v in sorted(params.items()))
    return hashlib.md5((text + VONAGE_SIG_SECRET).encode()).hexdigest()  # noqa: S324


def twilio_report(app, sid: str, status: str, signature: str | None = None, error_code: str | None = None):
    form = {"MessageSid": sid, "SmsSid": sid, "MessageStatus": status, "AccountSid": TWILIO_SID,
            "To": RECIPIENT, "From": TWILIO_FROM, "ApiVersion": "2010-04-01"}
    if error_code:
        form["ErrorCode"] = error_code
    sig = signature or twilio_sign(PUBLIC + "/webhooks/sms/twilio", form)
    return app.test_client().post("/webhooks/sms/twilio", data=form, headers={"X-Twilio-Signature": sig})


def vonage_report(app, message_id: str, status: str, tamper: bool = False):
    params = {"msisdn": RECIPIENT[1:], "to": VONAGE_FROM, "network-code": "28601", "messageId": message_id,
              "price": "0.05", "status": status, "scts": "2612022145",
              "err-code": "0" if status == "delivered" else "1",
              "api-key": VONAGE_KEY, "message-timestamp": "2026-12-02 21:45:00", "timestamp": "1796247900"}
    params["sig"] = vonage_sign(params)
    if tamper:
        params["status"] = "delivered"
    return app.test_client().get("/webhooks/sms/vonage", query_string=params)


# --- Twilio ------------------------------------------------------------------------------------------

def test_twilio_send_and_delivered_report(make_app, twilio, run_worker):
    app = twilio_app(make_app, twilio)
    key, otp_id = send_sms(app, run_worker)
    [form] = twilio.sent
    assert (form["To"], form["From"], form["StatusCallback"]) == (RECIPIENT, TWILIO_FROM,
                                                                 PUBLIC + "/webhooks/sms/twilio")
    assert CODE in form["Body"] and "default" in form["Body"]  # the code and the app's name
    row = otp_row(app, otp_id)
    assert (row["status"], row["channel"], row["provider"]) == ("SENT", "sms", "sms_twilio")
    assert re.fullmatch(r"SM[0-9a-f]{32}", row["provider_message_id"])
    assert twilio_report(app, row["provider_message_id"], "sent").status_code == 200
    assert twilio_report(app, row["provider_message_id"], "delivered").status_code == 200
    shown = show(app.test_client(), key, otp_id)
    assert (shown["status"], shown["channel"]) == ("DELIVERED", "sms")
    assert [e["channel"] for e in shown["timeline"]] == ["sms"] * len(shown["timeline"])
    assert [a["channel"] for a in send_attempts(app, otp_id)] == ["sms"]


def test_twilio_undelivered_report_fails_the_otp_with_the_error_code(make_app, twilio, run_worker):
    app = twilio_app(make_app, twilio)
    key, otp_id = send_sms(app, run_worker)
    sid = otp_row(app, otp_id)["provider_message_id"]
    assert twilio_report(app, sid, "undelivered", error_code="30005").status_code == 200
    row = otp_row(app, otp_id)
    assert row["status"] == "FAILED" and row["error"].startswith("30005")


def test_twilio_bad_signature_is_401_and_changes_nothing(make_app, twilio, run_worker):
    app = twilio_app(make_app, twilio)
    _key, otp_id = send_sms(app, run_worker)
    sid = otp_row(app, otp_id)["provider_message_id"]
    forged = base64.b64encode(b"x" * 20).decode()
    assert twilio_report(app, sid, "delivered", signature=forged).status_code == 401
    unsigned = app.test_client().post("/webhooks/sms/twilio", data={"MessageSid": sid, "MessageStatus": "delivered"})
    assert unsigned.status_code == 401
    assert otp_row(app, otp_id)["status"] == "SENT"


def test_twilio_invalid_number_is_a_permanent_failure(make_app, twilio, run_worker):
    app = twilio_app(make_app, twilio)
    twilio.fail["+905551110000"] = (400, 21211)
    _key, otp_id = send_sms(app, run_worker, recipient="+905551110000")
    row = otp_row(app, otp_id)
    assert row["status"] == "FAILED" and "21211" in row["error"] and CODE not in row["error"]
    [attempt] = send_attempts(app, otp_id)
    assert attempt["permanent"] is True and attempt["channel"] == "sms"


def test_twilio_server_errors_are_retried_then_fail(make_app, twilio, run_worker):
    app = twilio_app(make_app, twilio)
    twilio.fail["+905551110001"] = (503, 20500)
    _key, otp_id = send_sms(app, run_worker, recipient="+905551110001")
    attempts = send_attempts(app, otp_id)
    assert len(attempts) == 3 and not any(a["permanent"] for a in attempts)
    assert otp_row(app, otp_id)["status"] == "FAILED"


def test_twilio_wrong_token_is_a_configuration_fault(make_app, twilio, run_worker):
    app = twilio_app(make_app, twilio, TWILIO_AUTH_TOKEN="not-the-token")
    _key, otp_id = send_sms(app, run_worker)
    row = otp_row(app, otp_id)
    assert row["status"] == "FAILED" and "twilio HTTP 401" in row["error"] and "not-the-token" not in row["error"]


# --- Vonage ------------------------------------------------------------------------------------------

def test_vonage_send_and_signed_delivered_report(make_app, vonage, run_worker):
    app = vonage_app(make_app, vonage)
    key, otp_id = send_sms(app, run_worker)
    [form] = vonage.sent
    assert (form["to"], form["from"], form["callback"]) == (RECIPIENT[1:], VONAGE_FROM, PUBLIC + "/webhooks/sms/vonage")
    assert CODE in form["text"] and "type" not in form  # English is GSM-7
    message_id = otp_row(app, otp_id)["provider_message_id"]
    assert vonage_report(app, message_id, "delivered").status_code == 200
    assert show(app.test_client(), key, otp_id)["status"] == "DELIVERED"


def test_vonage_turkish_text_goes_as_unicode(make_app, vonage, run_worker):
    app = vonage_app(make_app, vonage)
    send_sms(app, run_worker, language="tr")
    [form] = vonage.sent
    assert form["type"] == "unicode" and "doğrulama" in form["text"]


def test_vonage_expired_report_fails_and_a_tampered_one_is_401(make_app, vonage, run_worker):
    app = vonage_app(make_app, vonage)
    _key, otp_id = send_sms(app, run_worker)
    message_id = otp_row(app, otp_id)["provider_message_id"]
    assert vonage_report(app, message_id, "expired", tamper=True).status_code == 401
    assert otp_row(app, otp_id)["status"] == "SENT"
    assert vonage_report(app, message_id, "expired").status_code == 200
    row = otp_row(app, otp_id)
    assert row["status"] == "FAILED" and "expired" in row["error"]


def test_vonage_without_signing_takes_reports_with_the_token_only(make_app, vonage, run_worker):
    app = vonage_app(make_app, vonage, VONAGE_SIGNATURE_SECRET="", VONAGE_WEBHOOK_TOKEN="vonage-token-0123456789")
    _key, otp_id = send_sms(app, run_worker)
    message_id = otp_row(app, otp_id)["provider_message_id"]
    params = {"messageId": message_id, "status": "delivered", "msisdn": RECIPIENT[1:]}
    assert app.test_client().get("/webhooks/sms/vonage", query_string=params).status_code == 401
    assert app.test_client().get("/webhooks/sms/vonage", query_string={**params, "token": "wrong"}).status_code == 401
    assert otp_row(app, otp_id)["status"] == "SENT"
    ok = app.test_client().post("/webhooks/sms/vonage?token=vonage-token-0123456789", json=params)
    assert ok.status_code == 200
    assert otp_row(app, otp_id)["status"] == "DELIVERED"


@pytest.mark.parametrize(("status", "permanent", "tries"), [("3", True, 1), ("1", False, 3)])
def test_vonage_refusals_in_a_200_answer_are_failures(make_app, vonage, run_worker, status, permanent, tries):
    app = vonage_app(make_app, vonage)
    vonage.fail["905551110002"] = status
    _key, otp_id = send_sms(app, run_worker, recipient="+905551110002")
    attempts = send_attempts(app, otp_id)
    assert len(attempts) == tries and attempts[0]["permanent"] is permanent
    assert otp_row(app, otp_id)["status"] == "FAILED" and f"vonage status {status}" in otp_row(app, otp_id)["error"]


def test_vonage_wrong_secret_is_refused_by_the_double(make_app, vonage, run_worker):
    app = vonage_app(make_app, vonage, VONAGE_API_SECRET="wrong-secret")
    _key, otp_id = send_sms(app, run_worker)
    row = otp_row(app, otp_id)
    assert row["status"] == "FAILED" and "vonage status 4" in row["error"] and "wrong-secret" not in row["error"]


# --- a generic HTTP gateway (SMS Gateway for Android) -----------------------------------------------

def android_report(app, message_id: str, event: str, token: str = GATEWAY_TOKEN):
    body = {"deviceId": "dev1", "event": event, "id": "wh1",
            "payload": {"messageId": message_id, "phoneNumber": RECIPIENT, "reason": "radio off"}}
    return app.test_client().post("/webhooks/sms/http", json=body, headers={"X-Wpotp-Token": token})


@pytest.mark.parametrize(("event", "status"), [("sms:delivered", "DELIVERED"), ("sms:failed", "FAILED")])
def test_http_gateway_send_and_report(make_app, android, run_worker, event, status):
    app = http_app(make_app, android)
    key, otp_id = send_sms(app, run_worker)
    [body] = android.sent
    assert body["phoneNumbers"] == [RECIPIENT] and CODE in body["textMessage"]["text"]
    message_id = otp_row(app, otp_id)["provider_message_id"]
    assert android_report(app, message_id, event, token="wrong").status_code == 401
    assert otp_row(app, otp_id)["status"] == "SENT"
    assert android_report(app, message_id, event).status_code == 200
    assert show(app.test_client(), key, otp_id)["status"] == status


def test_http_gateway_wrong_auth_header_fails_permanently(make_app, android, run_worker):
    app = http_app(make_app, android, SMS_HTTP_AUTH_HEADER="Authorization: Basic bm9wZQ==")
    _key, otp_id = send_sms(app, run_worker)
    row = otp_row(app, otp_id)
    assert row["status"] == "FAILED" and "http HTTP 401" in row["error"]


def test_http_gateway_jasmin_body_and_answer(make_app, run_worker):
    from tests.doubles import HttpDouble, Reply

    def jasmin(seen):
        body = seen.json
        if seen.headers.get("Authorization") != "Basic am9objpzZWNyZXQ=" or set(body) != {"to", "from", "content"}:
            return Reply(400, {"data": "Error \"bad request\""})
        return Reply(200, {"data": 'Success "a3c5e6f0-8e1d-4b6a-9f53-1f0e2d3c4b5a"'})

    with HttpDouble(jasmin) as double:
        app = make_app(SMS_PROVIDER="http", SMS_HTTP_URL=double.url + "/secure/send",
                       SMS_HTTP_AUTH_HEADER="Authorization: Basic am9objpzZWNyZXQ=",
                       SMS_HTTP_BODY='{"to": "{recipient_digits}", "from": "wpotp", "content": "{body}"}',
                       SMS_HTTP_WEBHOOK_TOKEN=GATEWAY_TOKEN)
        _key, otp_id = send_sms(app, run_worker)
        assert double.seen[0].json["to"] == RECIPIENT[1:]
    assert otp_row(app, otp_id)["provider_message_id"] == "a3c5e6f0-8e1d-4b6a-9f53-1f0e2d3c4b5a"
    dlr = {"id": "a3c5e6f0-8e1d-4b6a-9f53-1f0e2d3c4b5a", "message_status": "DELIVRD", "level": "3"}
    assert app.test_client().post(f"/webhooks/sms/http?token={GATEWAY_TOKEN}", data=dlr).status_code == 200
    assert otp_row(app, otp_id)["status"] == "DELIVERED"


# --- the SMS sandbox and the channel field ----------------------------------------------------------

def test_test_keys_use_the_sms_sandbox_even_with_a_real_provider_set(make_app, twilio, run_worker):
    app = twilio_app(make_app, twilio)
    key, otp_id = send_sms(app, run_worker, mode="test")
    assert twilio.seen == []  # test keys never leave the machine
    with app.app_context():
        [entry] = read_sms_outbox(recipient=RECIPIENT)
    assert entry["otpId"] == otp_id and CODE in entry["text"]
    shown = show(app.test_client(), key, otp_id)
    assert (shown["status"], shown["channel"]) == ("DELIVERED", "sms")
    assert otp_row(app, otp_id)["provider"] == "sms_sandbox"


@pytest.mark.parametrize(("recipient", "tries"), [("+15005550001", 1), ("+15005550002", 3)])
def test_sms_sandbox_magic_recipients_fail(make_app, run_worker, recipient, tries):
    app = make_app(SEND_RETRY_DELAYS=[0, 0])
    _key, otp_id = send_sms(app, run_worker, recipient=recipient, mode="test")
    assert otp_row(app, otp_id)["status"] == "FAILED"
    assert len(send_attempts(app, otp_id)) == tries


def test_no_code_in_events_or_answers_of_an_sms_otp(make_app, run_worker):
    app = make_app()
    key, otp_id = send_sms(app, run_worker, mode="test")
    shown = app.test_client().get(f"/v1/otp/{otp_id}", headers=key.headers).get_data(as_text=True)
    assert CODE not in shown
    with app.app_context():
        data = [str(e.data) for e in db.session.query(Event).filter_by(otp_id=otp_id)]
    assert data and not any(CODE in d for d in data)


def test_auto_and_default_send_over_whatsapp(app, client, api_key, run_worker):
    default = send(client, api_key, RECIPIENT).json
    auto = send(client, api_key, "+905551112234", channel="auto").json
    assert (default["channel"], auto["channel"]) == ("whatsapp", "whatsapp")
    run_worker()
    assert otp_row(app, auto["id"])["provider"] == "sandbox"


@pytest.mark.parametrize("channel", ["SMS", "voice", 1, None])
def test_an_unknown_channel_is_a_validation_error(client, api_key, channel):
    r = send(client, api_key, RECIPIENT, channel=channel)
    assert r.status_code == 400 and r.json["error"]["code"] == "VALIDATION_ERROR"
    assert "channel" in r.json["error"]["details"]["fields"]


def test_resend_may_switch_the_channel_and_the_timeline_says_which(make_app, run_worker):
    app = make_app(RESEND_INTERVAL=0)
    client = app.test_client()
    key = make_key(app)
    otp_id = send(client, key, RECIPIENT).json["id"]
    run_worker(app)
    r = client.post(f"/v1/otp/{otp_id}/resend", headers=key.headers, json={"channel": "sms"})
    assert r.status_code == 200 and r.json["channel"] == "sms"
    run_worker(app)
    shown = show(client, key, otp_id)
    assert shown["channel"] == "sms" and shown["status"] == "DELIVERED"
    channels = [(e["type"], e["channel"]) for e in shown["timeline"]]
    assert channels[0] == ("otp.queued", "whatsapp") and ("otp.resent", "sms") in channels
    assert channels[-1] == ("otp.delivered", "sms")
    again = client.post(f"/v1/otp/{otp_id}/resend", headers=key.headers)  # no body: keeps sms
    assert again.status_code == 200 and again.json["channel"] == "sms"
    bad = client.post(f"/v1/otp/{otp_id}/resend", headers=key.headers, json={"channel": "fax"})
    assert bad.status_code == 400 and bad.json["error"]["code"] == "VALIDATION_ERROR"


# --- settings ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("settings", "named"), [
    ({"SMS_PROVIDER": "twilio"}, "TWILIO_ACCOUNT_SID"),
    ({"SMS_PROVIDER": "vonage", "VONAGE_API_KEY": "k", "VONAGE_API_SECRET": "s", "VONAGE_FROM": "f"},
     "VONAGE_SIGNATURE_SECRET"),
    ({"SMS_PROVIDER": "http", "SMS_HTTP_URL": "http://127.0.0.1:9/x", "SMS_HTTP_WEBHOOK_TOKEN": "t",
      "SMS_HTTP_BODY": "{not json"}, "SMS_HTTP_BODY"),
])
def test_an_incomplete_sms_provider_refuses_to_start(make_app, settings, named):
    with pytest.raises(ConfigError, match=named):
        make_app(**settings)


def test_an_unknown_sms_provider_is_refused(monkeypatch):
    from config import Config
    monkeypatch.setenv("SMS_PROVIDER", "carrier-pigeon")
    with pytest.raises(ConfigError, match="SMS_PROVIDER"):
        Config.from_env()
