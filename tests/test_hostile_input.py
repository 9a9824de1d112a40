"""Rule 3: nothing a client can send gets a 500; every /v1 error is the JSON envelope."""

from __future__ import annotations

import base64
import copy
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.conftest import TEST_REDIS_URL
from wpotp.extensions import db
from wpotp.models import Template

BODIES = [
    b"", b"null", b"[]", b"42", b'"str"', b"{", b"\xff\xfe", b"[" * 5000 + b"]" * 5000,
    json.dumps({"recipient": "+905551112233", "reference": "a\u0000b"}).encode(),
    json.dumps({"recipient": "+905551112233", "templateId": "\u0000"}).encode(),
    json.dumps({"recipient": "+90555\u0000"}).encode(),
    json.dumps({"recipient": ["+905551112233"]}).encode(),
    json.dumps({"recipient": {"$ne": 1}}).encode(),
    json.dumps({"recipient": "+905551112233", "ttl": 1e400}).encode().replace(b"Infinity", b"1e400"),
    json.dumps({"recipient": "+905551112233", "ttl": True}).encode(),
    json.dumps({"recipient": "+905551112233", "length": -1}).encode(),
    json.dumps({"recipient": "+905551112233", "code": "１２３４"}).encode(),  # full-width digits
    json.dumps({"recipient": "+905551112233", "language": "en'; DROP TABLE otps;--"}).encode(),
    json.dumps({"recipient": "x" * 10000}).encode(),
    b'{"recipient": "+905551112233", "ttl": ' + b"9" * 5000 + b"}",
]


@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
def test_hostile_send_bodies_get_a_4xx_envelope(client, api_key, body):
    r = client.post("/v1/otp/send", headers=api_key.headers, data=body, content_type="application/json")
    assert 400 <= r.status_code < 500, (r.status_code, r.data[:200])
    assert set(r.json) == {"error"} and r.json["error"]["code"]


@pytest.mark.parametrize("path", [
    "/v1/otp/%00", "/v1/otp/%00/verify", "/v1/otp/" + "a" * 5000, "/v1/otp/otp_' OR 1=1 --",
    "/v1/otp/../templates", "/v1/otp/otp_%F0%9F%92%A5/attempts", "/v1/otp/otp_%ED%A0%80x/attempts",
    "/v1/otp/otp_%ED%A0%80x", "/v1/messages/msg_%ED%A0%80x",
])
def test_hostile_paths_get_a_4xx_envelope(client, api_key, path):
    for method in ("get", "post"):
        r = getattr(client, method)(path, headers=api_key.headers, json={"code": "1234"})
        assert 400 <= r.status_code < 500, (method, path, r.status_code)
        assert "error" in r.json


@pytest.mark.parametrize("query", [
    {"reference": "x\x00"}, {"limit": "1e9"}, {"limit": ["1", "2"]}, {"from": "\x00"}, {"to": "2026-99-99"},
    {"cursor": "%%%"}, {"cursor": "YQ"}, {"recipient": "+9\x00"}, {"status": "queued"}, {"nope": "1"},
])
def test_hostile_list_queries_get_a_400_envelope(client, api_key, query):
    r = client.get("/v1/otp", headers=api_key.headers, query_string=query)
    assert r.status_code == 400, (query, r.status_code, r.data[:200])
    assert r.json["error"]["code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize("path", ["/v1/otp", "/v1/logs", "/v1/reports", "/v1/rate-limits"])
@pytest.mark.parametrize("query", ["reference=%ED%A0%80x", "recipient=%2B90%ED%A0%80", "from=%ED%A0%80",
                                   "type=otp.%ED%A0%80", "cursor=%ED%A0%80"])
def test_invalid_utf8_in_queries_is_never_a_500(client, api_key, path, query):
    r = client.get(f"{path}?{query}", headers=api_key.headers)
    assert r.status_code < 500, (path, query, r.status_code, r.data[:200])
    assert r.status_code < 300 or set(r.json) == {"error"}


@pytest.mark.parametrize("header", [
    {"Authorization": "Bearer"}, {"Authorization": "Bearer \x01"}, {"Authorization": "Basic Zm9vOmJhcg=="},
    {"Authorization": "Bearer wpotp_test_" + "a" * 5000}, {"X-API-Key": "wpotp_live_\u00e9"},
])
def test_hostile_credentials_get_401(client, header):
    r = client.get("/v1/templates", headers=header)
    assert r.status_code == 401 and r.json["error"]["code"] == "unauthorized"


# --- timestamps whose UTC conversion leaves the calendar (issue 14, defect 5) ------------------------

def _cursor(stamp: str) -> str:
    """A cursor as the API encodes one (wpotp.otp.queries.encode_cursor), around `stamp`."""
    return base64.urlsafe_b64encode(f"{stamp}|otp_abc".encode()).decode().rstrip("=")


OVERFLOWING = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]
TIMES = [{name: value} for name in ("from", "to") for value in OVERFLOWING]
PAGED = TIMES + [{"cursor": _cursor(value)} for value in OVERFLOWING]
# Valid timestamps whose report range (7 buckets back by default, whole buckets) leaves the calendar.
REPORT_RANGES = [{"to": "0001-01-02T00:00:00Z"}, {"to": "0001-01-01T05:00:00", "interval": "hour"},
                 {"from": "9999-12-31T20:00:00", "to": "9999-12-31T23:59:59.999999", "interval": "hour"}]
TIMED = ([("/v1/otp", q) for q in PAGED] + [("/v1/logs", q) for q in PAGED]
         + [("/v1/reports", q) for q in TIMES + REPORT_RANGES])
OTPAPI = "/compat/otpapi/otp"
TIMED_OTPAPI = ([(f"{OTPAPI}/list", q) for q in PAGED] + [(f"{OTPAPI}/logs", q) for q in PAGED]
                + [(f"{OTPAPI}/reports", q) for q in TIMES + REPORT_RANGES])


def _named_field(response, query: dict) -> None:
    assert response.status_code == 400, (query, response.status_code, response.data[:300])
    assert set(response.json) == {"error"}
    error = response.json["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert set(error["details"]["fields"]) & (set(query) - {"interval"}), error


@pytest.mark.parametrize(("path", "query"), TIMED, ids=[f"{p}?{q}" for p, q in TIMED])
def test_timestamps_out_of_the_calendar_are_a_400_naming_the_field(client, api_key, path, query):
    _named_field(client.get(path, headers=api_key.headers, query_string=query), query)


@pytest.mark.parametrize(("path", "query"), TIMED_OTPAPI, ids=[f"{p}?{q}" for p, q in TIMED_OTPAPI])
def test_timestamps_out_of_the_calendar_are_a_400_on_the_generic_api(client, api_key, path, query):
    headers = {"X-API-Key": api_key.key_id, "X-API-Secret": api_key.secret}
    _named_field(client.get(path, headers=headers, query_string={"appid": api_key.app_id, **query}), query)


def test_first_and_last_days_of_the_calendar_still_answer_in_the_api_format(client, api_key):
    r = client.get("/v1/reports", headers=api_key.headers, query_string={"from": "0001-01-01", "to": "0001-01-03"})
    assert r.status_code == 200, r.data[:300]
    assert [b["start"] for b in r.json["buckets"]] == ["0001-01-01T00:00:00.000Z", "0001-01-02T00:00:00.000Z"]


# --- strings no database can store: lone surrogates (issue 14, defect 5) --------------------------

SURROGATE = "\ud800x"  # json.dumps writes it as the escape "\ud800x", which json.loads reads back


@pytest.fixture
def targets(app, client, api_key) -> dict:
    """What the routes below act on: an active OTP of the test recipient and a UTILITY template."""
    with app.app_context():
        template = db.session.scalars(select(Template.id).where(Template.name == "wpotp_order_update")).first()
    sent = client.post("/v1/otp/send", headers=api_key.headers, json={"recipient": "+905551112233"})
    assert sent.status_code == 201, sent.data
    return {"otp": sent.json["id"], "template": template}


def json_routes(key, t: dict) -> list[tuple[str, str, dict, dict]]:
    """(style, path, headers, a valid body) for every route that takes a JSON body."""
    native, pair = key.headers, {"X-API-Key": key.key_id, "X-API-Secret": key.secret}
    otp, template, message = t["otp"], t["template"], {"1": "A-1", "2": "shipped"}
    return [
        ("v1", "/v1/otp/send", native, {"recipient": "+905551112299", "templateId": None, "reference": "r-1",
                                        "code": "123456", "language": "en"}),
        ("v1", f"/v1/otp/{otp}/verify", native, {"code": "000000"}),
        ("v1", "/v1/messages", native, {"recipient": "+905551112298", "templateId": template, "variables": message}),
        ("v1", "/compat/whatotp/v1/otp/send", native, {"to": "+905551112297", "channel": "whatsapp"}),
        ("v1", "/compat/whatotp/v1/otp/verify", native, {"code": "000000", "session_id": otp}),
        ("v1", "/compat/whatotp/v1/messages/send", native,
         {"phone_number": "+905551112296", "template_id": template, "variables": message}),
        ("v1", "/compat/otpapi/otp/send", pair, {"appid": key.app_id, "recipient": "+905551112295",
                                                "channel": "whatsapp", "from": "Shop", "reference": "r-2",
                                                "language": "en"}),
        ("v1", "/compat/otpapi/otp/verify", pair, {"appid": key.app_id, "otp_code": "000000",
                                                  "verification_id": otp, "recipient": "+905551112233"}),
        ("v1", "/compat/otpapi/otp/resend", pair, {"appid": key.app_id, "verification_id": otp}),
        ("wawp", "/compat/wawp/v2/auth/otp/send", {}, {"chatId": "905551112294", "instance_id": key.app_id,
                                                      "access_token": key.secret, "lang": "en", "footer": "Hi"}),
        ("wawp", "/compat/wawp/v2/auth/otp/verify", {}, {"chatId": "905551112233", "instance_id": key.app_id,
                                                        "access_token": key.secret, "code": "000000"}),
    ]


CREDENTIALS = {"access_token", "instance_id", "appid"}  # a wrong credential may be a 401 instead


def poisoned(body: dict) -> list[tuple[str, dict]]:
    """(field, body) with one string of `body` (a value, or a variable's name or value) made unencodable."""
    out = []
    for name, value in body.items():
        if isinstance(value, dict):
            first = next(iter(value))
            out.append((f"{name}.{first}", {**body, name: {**value, first: SURROGATE}}))
            out.append((name, {**body, name: {SURROGATE: "x", **value}}))
        else:
            out.append((name, {**body, name: SURROGATE if value is None else value + SURROGATE}))
    return out


def error_body(style: str, response) -> dict:
    """The error in the route's style: the native envelope's `error`, or Wawp's flat object."""
    assert response.is_json, response.data[:300]
    body = response.get_json()
    if style == "wawp":
        assert body["code"] == body["code"].lower() and body["message"], body
        return {**body, "code": body["code"].upper(), "details": body}
    assert set(body) == {"error"} and body["error"]["code"] and body["error"]["message"], body
    return body["error"]


def refused_as_invalid(style: str, name: str, response) -> bool:
    if name in CREDENTIALS and response.status_code == 401:
        return True
    if response.status_code != 400:
        return False
    error = error_body(style, response)
    fields = error["details"].get("fields", {})
    return error["code"] == "VALIDATION_ERROR" and any(name.split(".")[0] in field for field in fields)


def test_unencodable_strings_are_a_400_naming_the_field_everywhere(client, api_key, targets):
    wrong = []
    for style, path, headers, body in json_routes(api_key, targets):
        for name, hostile in poisoned(body):
            r = client.post(path, headers=headers, data=json.dumps(hostile), content_type="application/json")
            if not refused_as_invalid(style, name, r):
                wrong.append((path, name, r.status_code, r.get_data(as_text=True)[:120]))
    assert wrong == [], "\n".join(map(str, wrong))


# --- through a real gunicorn: its own error pages and chunked bodies (issue 14, defect 5) -------------

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gunicorn_server(backend, app_pool):
    """`gunicorn -c gunicorn.conf.py wsgi:app` as operators run it, on a free port, on the test
    database and Redis (one worker, two threads); yields its (host, port). One per backend for the
    module's tests: it keeps no state of its own between them (the database and Redis it reads are
    emptied before each test, as for any other), and starting it is most of what each test cost."""
    _name, url, instance = backend
    app, pool_key = app_pool.lend({})
    keys = {name: app.config[name] for name in ("OTP_HASH_KEY", "SECRET_KEY")}
    app_pool.take_back(app, pool_key, copy.deepcopy(dict(app.config)), dict(app.extensions))
    port = _free_port()
    # The test app's keys, whichever instance directory they came from: the API key must hash alike.
    env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": TEST_REDIS_URL, "WPOTP_INSTANCE_DIR": str(instance),
           **keys,
           "WPOTP_ENV": "development", "BIND_HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": "1",
           "WEB_THREADS": "2"}
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], cwd=ROOT,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):  # until it answers: importing the app takes a second or two
            if server.poll() is not None:
                pytest.fail(f"gunicorn exited with {server.returncode}")
            try:
                if b" 200 " in raw(("127.0.0.1", port), b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")[:20]:
                    break
            except OSError:
                threading.Event().wait(0.05)
        yield ("127.0.0.1", port)
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def gunicorn(gunicorn_server, app, api_key):
    """The module's gunicorn (gunicorn_server), for a test whose database and Redis are fresh and
    whose API key is made."""
    return gunicorn_server


def raw(address, request: bytes) -> bytes:
    """Send bytes as they are (no client library would send these) and read the answer to its end."""
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            if length and len(body) >= int(length.group(1)):
                break
        return answer


def answer_of(data: bytes) -> tuple[int, dict, dict]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    headers = {k.lower(): v for k, v in headers.items()}
    parsed = json.loads(body) if headers.get("content-type") == "application/json" else {"not json": body[:200]}
    return int(lines[0].split(" ")[1]), headers, parsed


GUNICORN_REFUSES = [
    ("control character in a header", b"GET /v1/templates HTTP/1.1\r\nHost: x\r\nX-Note: a\x01b\r\n\r\n", 400),
    ("request line over 4 KiB", b"GET /v1/otp?reference=" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    ("not a request line", b"HELLO\r\n\r\n", 400),
    ("header over 8 KiB", b"GET /v1/templates HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),
    ("unsupported transfer coding", b"POST /v1/otp/send HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
]


@pytest.mark.parametrize(("name", "request_bytes", "status"), GUNICORN_REFUSES, ids=[c[0] for c in GUNICORN_REFUSES])
def test_gunicorns_own_refusals_are_the_json_envelope(gunicorn, name, request_bytes, status):
    got, headers, body = answer_of(raw(gunicorn, request_bytes))
    assert got == status, (name, got, body)
    assert headers["content-type"] == "application/json", body
    assert set(body) == {"error"} and body["error"]["code"] and body["error"]["message"]
    assert headers["x-request-id"].startswith("req_")


def _chunked(path: str, key, body: bytes) -> bytes:
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 4096]), body[i:i + 4096]) for i in range(0, len(body), 4096))
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key.secret}\r\nConnection: close\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode() + chunks + b"0\r\n\r\n"


def test_a_chunked_body_over_the_limit_is_413_like_one_with_a_length(gunicorn, api_key):
    big = json.dumps({"recipient": "+905551112233", "reference": "r" * 20000}).encode()  # over MAX_BODY_BYTES
    for path in ("/v1/otp/send", "/compat/whatotp/v1/otp/send", "/compat/otpapi/otp/send"):
        status, _headers, body = answer_of(raw(gunicorn, _chunked(path, api_key, big)))
        assert (status, body["error"]["code"]) == (413, "PAYLOAD_TOO_LARGE"), (path, body)
    status, _headers, body = answer_of(raw(gunicorn, _chunked("/compat/wawp/v2/auth/otp/send", api_key, big)))
    assert (status, body["code"]) == (413, "payload_too_large"), body


def test_a_chunked_body_within_the_limit_is_read_whole(gunicorn, api_key):
    small = json.dumps({"recipient": "+905551112233", "reference": "chunked-" + "r" * 100}).encode()
    status, _headers, body = answer_of(raw(gunicorn, _chunked("/v1/otp/send", api_key, small)))
    assert status == 201 and body["reference"] == "chunked-" + "r" * 100, body


def test_a_chunked_body_over_the_limit_is_413_in_the_test_client_too(client, api_key):
    big = json.dumps({"recipient": "+905551112233", "reference": "r" * 20000}).encode()
    r = client.post("/v1/otp/send", headers={**api_key.headers, "Transfer-Encoding": "chunked"},
                    input_stream=io.BytesIO(big), content_type="application/json",
                    environ_overrides={"wsgi.input_terminated": True})  # what gunicorn sets for chunked bodies
    assert r.status_code == 413 and r.json["error"]["code"] == "PAYLOAD_TOO_LARGE", r.data[:200]


# --- the sweep: every route, every parameter, a wide set of hostile values (issue 14, defect 5) ---------

BODY_VALUES = [SURROGATE, "\x00", "", " ", "a" * 5000, None, True, 1e308, -1, 2**70, [], {}, ["x"], {"$ne": 1},
               OVERFLOWING[0], "１２３４", "\u202e", "+90 555 111 22 33", "otp_' OR 1=1 --"]
QUERY_VALUES = ["\x00", "", "a" * 3000, *OVERFLOWING, _cursor(OVERFLOWING[0]), "%", "-1", "1e309",
                "otp_' OR 1=1 --", "\ufffd", ["1", "2"]]


def query_routes(key, t: dict) -> list[tuple[str, str, dict, dict]]:
    """(style, path, headers, valid query) for every GET route of /v1 and the dialects."""
    native, pair = key.headers, {"X-API-Key": key.key_id, "X-API-Secret": key.secret}
    otp, own = t["otp"], {"appid": key.app_id}
    wawp = {"chatId": "905551112233", "instance_id": key.app_id, "access_token": key.secret}
    return [
        ("v1", "/v1/otp", native, {"status": "QUEUED", "recipient": "+905551112233", "reference": "r", "from":
                                   "2026-01-01", "to": "2027-01-01", "limit": "5", "cursor": _cursor("2026-01-01")}),
        ("v1", f"/v1/otp/{otp}", native, {}),
        ("v1", f"/v1/otp/{otp}/attempts", native, {}),
        ("v1", "/v1/logs", native, {"type": "otp.queued", "otpId": otp, "from": "2026-01-01", "limit": "5"}),
        ("v1", "/v1/reports", native, {"from": "2026-01-01", "to": "2026-01-05", "interval": "day"}),
        ("v1", "/v1/rate-limits", native, {"recipient": "+905551112233"}),
        ("v1", "/v1/messages/msg_abc", native, {}),
        ("v1", "/compat/otpapi/otp/status", pair, {**own, "verification_id": otp}),
        ("v1", "/compat/otpapi/otp/attempts", pair, {**own, "verification_id": otp}),
        ("v1", "/compat/otpapi/otp/list", pair, {**own, "status": "QUEUED", "from": "2026-01-01", "limit": "5"}),
        ("v1", "/compat/otpapi/otp/logs", pair, {**own, "verification_id": otp, "to": "2027-01-01"}),
        ("v1", "/compat/otpapi/otp/rate-limits", pair, {**own, "recipient": "+905551112233"}),
        ("v1", "/compat/otpapi/otp/reports", pair, {**own, "from": "2026-01-01", "interval": "hour"}),
        ("wawp", "/compat/wawp/v2/auth/otp/send", {}, {**wawp, "lang": "en", "footer": "Hi"}),
        ("wawp", "/compat/wawp/v2/auth/otp/verify", {}, {**wawp, "code": "000000"}),
    ]


def answered_cleanly(style: str, response) -> bool:
    """No 500, and any error in the route's own shape."""
    if response.status_code >= 500:
        return False
    if response.status_code < 400:
        return True
    error_body(style, response)
    return True


def test_every_route_answers_hostile_values_without_a_500(client, api_key, targets):
    wrong = []
    for style, path, headers, body in json_routes(api_key, targets):
        for name in list(body) + ["unknown\ud800"]:
            for value in BODY_VALUES:
                r = client.post(path, headers=headers, data=json.dumps({**body, name: value}),
                                content_type="application/json")
                if not answered_cleanly(style, r):
                    wrong.append((path, name, repr(value)[:40], r.status_code, r.get_data(as_text=True)[:120]))
    for style, path, headers, query in query_routes(api_key, targets):
        for name in list(query) + ["nope"]:
            for value in QUERY_VALUES:
                r = client.get(path, headers=headers, query_string={**query, name: value})
                if not answered_cleanly(style, r):
                    wrong.append((path, name, repr(value)[:40], r.status_code, r.get_data(as_text=True)[:120]))
    for action in ("resend", "cancel"):  # bodies they do not take, and hostile ids
        for otp_id in (targets["otp"], "otp_%ED%A0%80", "otp_" + "a" * 300, "%00"):
            r = client.post(f"/v1/otp/{otp_id}/{action}", headers=api_key.headers, data=b"\xff{")
            if not answered_cleanly("v1", r):
                wrong.append((action, otp_id[:20], r.status_code, r.get_data(as_text=True)[:120]))
    assert wrong == [], "\n".join(map(str, wrong))
