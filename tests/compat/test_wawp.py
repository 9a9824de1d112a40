"""/compat/wawp speaks Wawp's OTP API (SPEC §9) over the same service as /v1.

Calls are made as Wawp documents them: `GET or POST /v2/auth/otp/send` with `chatId`
(international digits, no '+'), `instance_id`, `access_token`, `lang`, `footer` -> 200
`{code: "success", message, expires_in, job_id}`; 401 for a bad token, 429 for recipient
protection. Verify (`/v2/auth/otp/verify`, `chatId` + `code`) checks the chat's newest OTP.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime

import pytest

from tests.api.support import set_key, set_otp
from tests.helpers import in_threads, make_key
from tests.providers.cloud_api.graph import SETTINGS as CLOUD_SETTINGS
from tests.providers.cloud_api.graph import GraphDouble, otp_payload
from tests.providers.gateway.gateways import API_KEY, SESSION, gateway_for
from wpotp.otp.templates import DEFAULT_TEMPLATES
from wpotp.util import utcnow

SEND = "/compat/wawp/v2/auth/otp/send"
VERIFY = "/compat/wawp/v2/auth/otp/verify"
CHAT = "905551112233"
E164 = "+905551112233"
FOOTER = "Secured by Wawp"
SUCCESS = {"code": "success", "message": "Verification code sent successfully"}


def creds(key) -> dict:
    return {"instance_id": key.app_id, "access_token": key.secret}


def send(client, key, method: str = "get", where: str = "query", **params):
    """A send the way Wawp's samples make it: every parameter in the query string (or, for POST, the body)."""
    return call(client, SEND, method, where, {"chatId": CHAT, **creds(key), **params})


def verify(client, key, code: str, method: str = "get", where: str = "query", **params):
    return call(client, VERIFY, method, where, {"chatId": CHAT, **creds(key), "code": code, **params})


def call(client, path: str, method: str, where: str, params: dict):
    if where == "query":
        return getattr(client, method)(path, query_string=params)
    if where == "json":
        return client.post(path, json=params)
    return client.post(path, data=params)


def sent(client, key, **params) -> str:
    r = send(client, key, **params)
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.json["job_id"]


def code_of(outbox, job_id: str) -> str:
    [entry] = [e for e in outbox() if e.get("otpId") == job_id]
    return entry["code"]


def wrong(code: str) -> str:
    return "0" * len(code) if code != "0" * len(code) else "1" * len(code)


def wawp_error(r, status: int, code: str) -> dict:
    """Wawp's flat error: `code` (lowercase) and `message`, never the native envelope."""
    assert r.status_code == status, r.get_data(as_text=True)
    assert r.is_json and "error" not in r.json, r.json
    assert r.json["code"] == code, r.json
    assert isinstance(r.json["message"], str) and r.json["message"]
    return r.json


def native(client, key, otp_id: str) -> dict:
    r = client.get(f"/v1/otp/{otp_id}", headers=key.headers)
    assert r.status_code == 200
    return r.json


def body_of(language: str) -> str:
    return next(t["body"] for t in DEFAULT_TEMPLATES if t["language"] == language and t["name"] == "wpotp_verification")


# --- send and verify as documented ----------------------------------------------------------------

def test_documented_get_send_then_verify(client, api_key, run_worker, outbox):
    r = send(client, api_key, lang="en", footer=FOOTER)
    assert r.status_code == 200
    assert set(r.json) == {"code", "message", "expires_in", "job_id"}
    assert {k: r.json[k] for k in SUCCESS} == SUCCESS
    assert r.json["expires_in"] == 300 and r.json["job_id"].startswith("otp_")
    job_id = r.json["job_id"]
    run_worker()
    [entry] = outbox(E164)
    code = entry["code"]
    assert entry["otpId"] == job_id
    assert entry["text"] == body_of("en").replace("{{1}}", code) + "\n\n" + FOOTER

    r = verify(client, api_key, code)
    assert r.status_code == 200
    assert r.json["code"] == "success" and r.json["verified"] is True and r.json["job_id"] == job_id
    assert native(client, api_key, job_id)["status"] == "VERIFIED"


@pytest.mark.parametrize("where", ["query", "json", "form"])
def test_post_takes_parameters_from_the_query_a_json_body_or_a_form(client, api_key, run_worker, outbox, where):
    r = send(client, api_key, method="post", where=where)
    assert r.status_code == 200, r.json
    run_worker()
    code = code_of(outbox, r.json["job_id"])
    r = verify(client, api_key, code, method="post", where=where)
    assert r.status_code == 200 and r.json["code"] == "success"


def test_whatsapp_chat_id_form_and_plain_digits_name_the_same_recipient(client, api_key, run_worker, outbox):
    job_id = sent(client, api_key, chatId=f"{CHAT}@c.us")
    assert native(client, api_key, job_id)["recipient"] == E164
    run_worker()
    assert verify(client, api_key, code_of(outbox, job_id), chatId=CHAT).status_code == 200


def test_a_json_chat_id_may_be_a_number(client, api_key):
    r = client.post(SEND, json={"chatId": int(CHAT), **creds(api_key)})
    assert r.status_code == 200, r.json
    assert native(client, api_key, r.json["job_id"])["recipient"] == E164


def test_without_footer_the_text_is_the_template_alone(client, api_key, run_worker, outbox):
    job_id = sent(client, api_key)
    run_worker()
    [entry] = outbox(E164)
    assert entry["otpId"] == job_id and entry["text"] == body_of("en").replace("{{1}}", entry["code"])


def test_lang_picks_the_template_language_and_defaults_to_en(client, api_key, run_worker, outbox):
    turkish = sent(client, api_key, lang="tr")
    english = sent(client, api_key, chatId="905551112234")
    run_worker()
    [tr] = outbox(E164)
    assert tr["otpId"] == turkish and tr["language"] == "tr"
    assert tr["text"] == body_of("tr").replace("{{1}}", tr["code"])
    [en] = outbox("+905551112234")
    assert en["otpId"] == english and en["language"] == "en"


def test_a_language_without_a_template_or_a_bad_lang_is_refused(client, api_key):
    wawp_error(send(client, api_key, lang="ar"), 404, "template_not_found")
    assert "lang" in wawp_error(send(client, api_key, lang="en'; --"), 400, "validation_error")["fields"]


def test_expires_in_is_the_apps_ttl(app, client):
    key = make_key(app, "short", otp_ttl=120)
    r = send(client, key)
    assert r.status_code == 200 and r.json["expires_in"] == 120


def test_verify_checks_the_newest_code_sent_to_the_chat(client, api_key, run_worker, outbox):
    first = sent(client, api_key)
    second = sent(client, api_key)
    run_worker()
    old, new = code_of(outbox, first), code_of(outbox, second)
    if old != new:  # a one-in-a-million chance that both codes are equal
        assert wawp_error(verify(client, api_key, old), 400, "invalid_code")["attempts_remaining"] == 4
    r = verify(client, api_key, new)
    assert r.status_code == 200 and r.json["job_id"] == second


# --- errors as Wawp documents them ----------------------------------------------------------------

@pytest.mark.parametrize("token", [None, "", "wpotp_test_unknownunknownunknownunknown12", "YOUR_TOKEN"])
def test_a_missing_or_unknown_access_token_is_401(client, api_key, token):
    params = {"chatId": CHAT, "instance_id": api_key.app_id}
    if token is not None:
        params["access_token"] = token
    for path in (SEND, VERIFY):
        r = client.get(path, query_string={**params, "code": "123456"})
        assert set(wawp_error(r, 401, "unauthorized")) == {"code", "message"}
    assert client.get("/v1/otp", headers=api_key.headers).json["data"] == []


def test_a_revoked_access_token_is_401(app, client, api_key):
    set_key(app, api_key.key_id, revoked_at=utcnow())
    wawp_error(send(client, api_key), 401, "unauthorized")


@pytest.mark.parametrize("instance", [None, "", "YOUR_INSTANCE", "other"])
def test_an_instance_id_that_is_not_the_tokens_app_is_401(app, client, api_key, instance):
    if instance == "other":
        instance = make_key(app, "other").app_id
    params = {"chatId": CHAT, "access_token": api_key.secret}
    if instance is not None:
        params["instance_id"] = instance
    assert "instance_id" in wawp_error(client.get(SEND, query_string=params), 401, "unauthorized")["message"]
    assert client.get("/v1/otp", headers=api_key.headers).json["data"] == []


@pytest.mark.parametrize("chat", ["", "abc", "+", "12345", "905551112233@g.us", "90555111223344556677",
                                  "999999999999", "0905551112233"])
def test_a_chat_id_that_is_not_a_phone_number_is_400(client, api_key, chat):
    r = send(client, api_key, chatId=chat)
    assert r.status_code == 400 and r.json["code"] in ("invalid_phone", "validation_error"), r.json
    assert client.get("/v1/otp", headers=api_key.headers).json["data"] == []


def test_a_footer_over_200_characters_is_400(client, api_key):
    assert "footer" in wawp_error(send(client, api_key, footer="x" * 201), 400, "validation_error")["fields"]
    assert send(client, api_key, footer="x" * 200).status_code == 200


@pytest.mark.parametrize("body", [b"{", b"[]", b"null", b"42", b"[" * 5000 + b"]" * 5000, b"\xff\xfe",
                                  b'{"chatId": ["905551112233"]}', b'{"chatId": {"$ne": 1}}',
                                  b'{"chatId": "905551112233", "footer": "a\\u0000b"}',
                                  b'{"chatId": "905551112233", "lang": 7}'])
def test_hostile_bodies_get_a_wawp_4xx_never_a_500(client, api_key, body):
    r = client.post(SEND, query_string=creds(api_key), data=body, content_type="application/json")
    assert 400 <= r.status_code < 500, (r.status_code, r.data[:200])
    assert r.json["code"] and r.json["message"] and "error" not in r.json


def test_verify_without_an_active_code_is_404(client, api_key):
    wawp_error(verify(client, api_key, "123456"), 404, "otp_not_found")


def test_verify_without_a_code_is_400(client, api_key):
    sent(client, api_key)
    r = client.get(VERIFY, query_string={"chatId": CHAT, **creds(api_key)})
    assert "code" in wawp_error(r, 400, "validation_error")["fields"]


# --- the native guarantees hold through the dialect -----------------------------------------------

def test_wrong_codes_spend_the_budget_then_too_many_attempts_even_with_the_right_code(client, api_key, run_worker,
                                                                                      outbox):
    job_id = sent(client, api_key)
    run_worker()
    code = code_of(outbox, job_id)
    remaining = [wawp_error(verify(client, api_key, wrong(code)), 400, "invalid_code")["attempts_remaining"]
                 for _ in range(5)]
    assert remaining == [4, 3, 2, 1, 0]
    wawp_error(verify(client, api_key, code), 429, "too_many_attempts")
    assert native(client, api_key, job_id)["status"] != "VERIFIED"


def test_a_code_verifies_once(client, api_key, run_worker, outbox):
    job_id = sent(client, api_key)
    run_worker()
    code = code_of(outbox, job_id)
    assert verify(client, api_key, code).status_code == 200
    wawp_error(verify(client, api_key, code), 404, "otp_not_found")


def test_parallel_right_codes_verify_exactly_once(app, client, api_key, run_worker, outbox):
    job_id = sent(client, api_key)
    run_worker()
    code = code_of(outbox, job_id)
    answers = in_threads(20, lambda _i: verify(app.test_client(), api_key, code))
    outcomes = Counter(a.status_code for a in answers)
    assert outcomes[200] == 1 and set(outcomes) <= {200, 404, 409}, outcomes
    assert native(client, api_key, job_id)["status"] == "VERIFIED"


def test_an_expired_code_is_otp_expired(app, client, api_key, run_worker, outbox):
    job_id = sent(client, api_key)
    run_worker()
    set_otp(app, job_id, expires_at=datetime(2000, 1, 1))
    wawp_error(verify(client, api_key, code_of(outbox, job_id)), 400, "otp_expired")


def test_another_app_cannot_verify_this_apps_code(app, client, api_key, run_worker, outbox):
    job_id = sent(client, api_key)
    run_worker()
    code = code_of(outbox, job_id)
    other = make_key(app, "other")
    wawp_error(verify(client, other, code), 404, "otp_not_found")
    wawp_error(verify(client, other, code, instance_id=api_key.app_id), 401, "unauthorized")
    assert native(client, api_key, job_id)["attempts"] == 0
    assert verify(client, api_key, code).status_code == 200


def test_recipient_protection_answers_429_with_retry_after(make_app, app):
    tight = make_app(RECIPIENT_RATE_LIMIT="2/hour")
    key = make_key(tight)
    client = tight.test_client()
    sent(client, key)
    sent(client, key)
    r = send(client, key)
    err = wawp_error(r, 429, "rate_limited")
    assert err["limit"] == "2 per 1 hour" and err["retry_after"] == int(r.headers["Retry-After"])
    assert 1 <= err["retry_after"] <= 3601


def test_the_request_budget_answers_429_with_retry_after(app, client):
    key = make_key(app, "chatty", api_rate_limit="2/minute")
    assert client.get("/v1/templates", headers=key.headers).status_code == 200
    assert send(client, key).status_code == 200
    r = send(client, key)
    wawp_error(r, 429, "rate_limited")
    assert int(r.headers["Retry-After"]) >= 1


# --- secrets stay secret --------------------------------------------------------------------------

class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


def test_neither_the_token_nor_the_code_reaches_an_answer_or_the_request_log(client, api_key, run_worker, outbox):
    lines = Lines()
    logger = logging.getLogger("wpotp")
    logger.addHandler(lines)
    try:
        answers = [send(client, api_key, footer=FOOTER)]
        run_worker()
        code = code_of(outbox, answers[0].json["job_id"])
        answers += [verify(client, api_key, wrong(code)), verify(client, api_key, code),
                    verify(client, api_key, code, method="post", where="json")]
    finally:
        logger.removeHandler(lines)
    assert any(SEND in line for line in lines.lines) and any(VERIFY in line for line in lines.lines)
    for text in lines.lines + [a.get_data(as_text=True) + str(a.headers) for a in answers]:
        assert api_key.secret not in text and code not in text


# --- footer per provider --------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["waha", "evolution"])
def test_footer_reaches_the_gateway_text(make_app, app, run_worker, kind):
    with gateway_for(kind) as gateway:
        gw = make_app(WPOTP_PROVIDER="gateway", GATEWAY_KIND=kind, GATEWAY_URL=gateway.url, GATEWAY_API_KEY=API_KEY,
                      GATEWAY_SESSION=SESSION, GATEWAY_WEBHOOK_TOKEN="t" * 32, SEND_RETRY_DELAYS=[0, 0])
        key = make_key(gw, mode="live")
        sent(gw.test_client(), key, footer=FOOTER)
        run_worker(gw)
    [post] = gateway.sends
    text = post.json["text"]
    assert text.startswith(body_of("en").split("{{1}}")[0]) and text.endswith("\n\n" + FOOTER)


def test_footer_is_not_sent_to_the_cloud_api(make_app, app, run_worker):
    with GraphDouble() as graph:
        cloud = make_app(WHATSAPP_GRAPH_URL=graph.url, **CLOUD_SETTINGS)
        key = make_key(cloud, mode="live")
        job_id = sent(cloud.test_client(), key, footer=FOOTER)
        run_worker(cloud)
    assert graph.problems == []
    [request] = graph.sends
    code = request.json["template"]["components"][0]["parameters"][0]["text"]
    assert request.json == otp_payload(E164, code)
    assert FOOTER not in request.body.decode()
    assert native(cloud.test_client(), key, job_id)["status"] == "SENT"
