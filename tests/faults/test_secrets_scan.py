"""Issue 14, the fault suite: after a live workload, no plaintext code or API key anywhere.

SPEC §4, §11: a code is stored only as a keyed hash and never reaches the database, a log line,
an event, a webhook or an API answer; an API key's secret is stored only as a hash. The
workload uses a live key and the Cloud API provider against a Graph double (so there is no
sandbox outbox, which may show test-mode codes): caller-given and generated codes (read from
what the double received), right and wrong verifies, a resend, webhook deliveries to a
receiver double, Meta's receipts, and the three compat dialects. Then every row of every table,
every Redis key and value of the test database (RQ's compressed job data unpacked) and every
log record (plain and as the JSON formatter writes it) are scanned.

Codes are matched as whole digit tokens (8 digits, never inside a longer number), so an id or
a timestamp cannot match by chance. test_the_scan_finds_a_planted_secret shows every scanner
does report a leak.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import re
import zlib
from collections.abc import Iterable

import pytest
from sqlalchemy import MetaData, select, update

from tests.doubles import HttpDouble
from tests.helpers import Key, make_key
from tests.otp.support import error_code
from tests.providers.cloud_api.graph import SETTINGS, GraphDouble, status_item
from tests.providers.cloud_api.support import post_receipts
from tests.webhooks.support import set_webhook
from wpotp.extensions import db, redis_client
from wpotp.logs import JsonFormatter
from wpotp.models import ApiKey, Otp

CALLER_CODES = ("73950846", "84062915", "95173028")  # distinctive: no run of one digit, no 0000
LOGGERS = ("", "wpotp", "rq", "rq.worker", "rq.scheduler", "werkzeug")


class Capture(logging.Handler):
    """Every record of every logger: plain text with traceback, the JSON line, and its arguments."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.plain = logging.Formatter("%(name)s %(levelname)s %(message)s")
        self.json = JsonFormatter()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(" ".join((self.plain.format(record), self.json.format(record), repr(record.args),
                                    repr(getattr(record, "extra", "")))))

    def __enter__(self) -> Capture:
        self._levels = {}
        for name in LOGGERS:
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            logger.setLevel(logging.DEBUG)
            logger.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        for name in LOGGERS:
            logging.getLogger(name).removeHandler(self)
            logging.getLogger(name).setLevel(self._levels[name])


# --- the scanners -----------------------------------------------------------------------------------

def secret_patterns(codes: Iterable[str], keys: Iterable[tuple[str, str]]) -> dict[str, re.Pattern]:
    """name -> pattern: each code as a whole digit token; each key secret, whole or without its
    displayed prefix (what would be left if a log cut the prefix off)."""
    patterns = {f"code {c}": re.compile(rf"(?<!\d){re.escape(c)}(?!\d)") for c in codes}
    for secret, prefix in keys:
        patterns[f"key {prefix}..."] = re.compile(re.escape(secret[len(prefix):]))
    return patterns


def leaks(texts: Iterable[tuple[str, str]], patterns: dict[str, re.Pattern]) -> list[str]:
    """`where: what` for each (where, text) that matches a pattern."""
    return [f"{where}: {name} in {text[:200]!r}" for where, text in texts
            for name, pattern in patterns.items() if pattern.search(text)]


def database_texts(app) -> Iterable[tuple[str, str]]:
    """Every value of every row of every table the database has (reflected, not only our models)."""
    with app.app_context():
        tables = MetaData()
        tables.reflect(db.engine)
        with db.engine.connect() as conn:
            for table in tables.sorted_tables:
                for row in conn.execute(table.select()):
                    for column, value in zip(table.columns, row, strict=True):
                        if value is not None:
                            yield f"{table.name}.{column.name}", str(value)


def _unpacked(raw: bytes) -> str:
    """A Redis value as text; RQ's job `data` (zlib-compressed pickle) unpacked too."""
    texts = [raw.decode("utf-8", "replace")]
    with contextlib.suppress(Exception):  # most values are not RQ job data
        texts.append(repr(pickle.loads(zlib.decompress(raw))))  # noqa: S301 - our own test Redis
    return " ".join(texts)


def redis_texts(app) -> Iterable[tuple[str, str]]:
    """Every key of the test Redis database and every value it holds, whatever its type."""
    with app.app_context():
        conn = redis_client.conn
        for key in conn.scan_iter(count=1000):
            where = key.decode("utf-8", "replace")
            kind = conn.type(key).decode()
            yield where, where
            if kind == "string":
                values = [conn.get(key) or b""]
            elif kind == "hash":
                values = [part for pair in conn.hgetall(key).items() for part in pair]
            elif kind == "list":
                values = conn.lrange(key, 0, -1)
            elif kind == "set":
                values = list(conn.smembers(key))
            elif kind == "zset":
                values = [m for m, _score in conn.zrange(key, 0, -1, withscores=True)]
            elif kind == "stream":
                values = [part for _id, fields in conn.xrange(key) for pair in fields.items() for part in pair]
            else:
                values = []
            for value in values:
                yield f"{where} ({kind})", _unpacked(value if isinstance(value, bytes) else str(value).encode())


# --- the workload --------------------------------------------------------------------------------------

def _codes_sent_to(graph: GraphDouble, recipient: str) -> list[str]:
    """The codes Meta was asked to deliver to a recipient, oldest first (the body's parameter)."""
    digits = recipient.lstrip("+")
    return [s.json["template"]["components"][0]["parameters"][0]["text"] for s in graph.sends
            if s.json["to"] == digits]


class Workload:
    """A live key's calls against the Cloud API double; keeps every answer and generated code."""

    def __init__(self, app, key: Key, graph: GraphDouble) -> None:
        self.app, self.key, self.graph = app, key, graph
        self.client = app.test_client()
        self.answers: list = []
        self.codes: set[str] = set(CALLER_CODES)

    def call(self, method: str, path: str, **kwargs):
        kwargs.setdefault("headers", self.key.headers)
        response = getattr(self.client, method)(path, **kwargs)
        self.answers.append(response)
        return response

    def work(self) -> None:
        result = self.app.test_cli_runner().invoke(args=["wpotp", "worker", "--burst", "--threads", "2"])
        assert result.exit_code == 0, (result.output, result.exception)

    def generated(self, recipient: str) -> str:
        codes = _codes_sent_to(self.graph, recipient)
        assert codes, f"Meta got nothing for {recipient}"
        self.codes.update(codes)
        return codes[-1]


def native_flow(w: Workload) -> list[str]:
    """Caller code and generated codes: send, wrong and right verifies, a resend, reads. Returns OTP ids."""
    a = w.call("post", "/v1/otp/send", json={"recipient": "+905551130001", "code": CALLER_CODES[0],
                                             "reference": "secrets-a"}).json["id"]
    b = w.call("post", "/v1/otp/send", json={"recipient": "+905551130002", "length": 8}).json["id"]
    c = w.call("post", "/v1/otp/send", json={"recipient": "+905551130003", "length": 8}).json["id"]
    w.work()
    first_c = w.generated("+905551130003")
    assert error_code(w.call("post", f"/v1/otp/{a}/verify", json={"code": CALLER_CODES[1]})) == "INVALID_CODE"
    assert w.call("post", f"/v1/otp/{a}/verify", json={"code": CALLER_CODES[0]}).status_code == 200
    assert w.call("post", f"/v1/otp/{b}/verify", json={"code": w.generated("+905551130002")}).status_code == 200
    assert w.call("post", f"/v1/otp/{c}/resend").status_code == 200
    w.work()
    second_c = w.generated("+905551130003")
    assert second_c != first_c
    assert w.call("post", f"/v1/otp/{c}/verify", json={"code": first_c}).status_code != 200
    assert w.call("post", f"/v1/otp/{c}/verify", json={"code": second_c}).status_code == 200
    for path in (f"/v1/otp/{a}", f"/v1/otp/{c}", "/v1/otp", f"/v1/otp/{c}/attempts", "/v1/logs",
                 f"/v1/logs?otpId={c}", "/v1/reports", "/v1/rate-limits"):
        assert w.call("get", path).status_code == 200, path
    return [a, b, c]


def dialect_flows(w: Workload) -> None:
    """WhatOTP, Wawp (the key in the query string, as Wawp's clients send it) and the generic API."""
    key = w.key
    session = w.call("post", "/compat/whatotp/v1/otp/send",
                     json={"to": "+905551130004", "channel": "whatsapp", "length": 8}).json["session_id"]
    wawp = {"chatId": "905551130005", "instance_id": key.app_id, "access_token": key.secret}
    assert w.call("get", "/compat/wawp/v2/auth/otp/send", headers={}, query_string=wawp).status_code == 200
    pair = {"X-API-Key": key.key_id, "X-API-Secret": key.secret}
    generic = w.call("post", "/compat/otpapi/otp/send", headers=pair,
                     json={"appid": key.app_id, "recipient": "+905551130006", "channel": "whatsapp",
                           "from": "Shop", "otp_code": CALLER_CODES[2]})
    if generic.status_code >= 400:  # the dialect may not take a caller's code: let it generate one
        generic = w.call("post", "/compat/otpapi/otp/send", headers=pair,
                         json={"appid": key.app_id, "recipient": "+905551130006", "channel": "whatsapp",
                               "from": "Shop"})
    assert generic.status_code in (200, 201), generic.get_data(as_text=True)
    verification = generic.json["verification_id"]
    w.work()
    assert w.call("post", "/compat/whatotp/v1/otp/verify",
                  json={"code": w.generated("+905551130004"), "session_id": session}).status_code == 200
    assert w.call("get", "/compat/wawp/v2/auth/otp/verify", headers={},
                  query_string={**wawp, "code": "61728394"}).status_code >= 400
    assert w.call("get", "/compat/wawp/v2/auth/otp/verify", headers={},
                  query_string={**wawp, "code": w.generated("+905551130005")}).status_code == 200
    assert w.call("post", "/compat/otpapi/otp/verify", headers=pair,
                  json={"appid": key.app_id, "otp_code": w.generated("+905551130006"),
                        "verification_id": verification}).status_code == 200
    for route in ("status", "attempts"):
        w.call("get", f"/compat/otpapi/otp/{route}", headers=pair, query_string={"verification_id": verification})
    for route in ("list", "logs", "reports", "rate-limits"):
        w.call("get", f"/compat/otpapi/otp/{route}", headers=pair)


def receipts(w: Workload) -> None:
    """Meta's delivered and read receipts for every wamid it handed out (moves OTPs on, fires webhooks)."""
    items = [status_item(wamid, status) for wamid in w.graph.wamids for status in ("delivered", "read")]
    assert post_receipts(w.client, *items).status_code == 200


@pytest.fixture
def live(make_app, app):
    """A Cloud API app against a Graph double, a live key, a webhook receiver wanting every event."""
    with GraphDouble() as graph, HttpDouble() as receiver:
        cloud = make_app(WHATSAPP_GRAPH_URL=graph.url, **SETTINGS, RESEND_INTERVAL=0, LOG_LEVEL="DEBUG")
        key = make_key(cloud, mode="live")
        set_webhook(cloud, receiver.url + "/hook")
        yield cloud, key, graph, receiver


def test_no_plaintext_code_or_key_in_tables_redis_or_logs(live, figures):
    cloud, key, graph, receiver = live
    with Capture() as logs:
        w = Workload(cloud, key, graph)
        otp_ids = native_flow(w)
        dialect_flows(w)
        receipts(w)
        w.work()  # the webhook deliveries of the receipts and verifies
    assert graph.problems == []
    assert len(graph.sends) == 7 and len(w.codes) >= 8  # 3 caller codes, 5 generated (one superseded)
    with cloud.app_context():
        prefix = db.session.get(ApiKey, key.key_id).prefix
        assert db.session.get(Otp, otp_ids[0]).status == "VERIFIED"
    patterns = secret_patterns(w.codes, [(key.secret, prefix)])

    tables = list(database_texts(cloud))
    stored = list(redis_texts(cloud))
    answers = [(f"answer {r.request.method} {r.request.path}", r.get_data(as_text=True) + str(r.headers))
               for r in w.answers]
    hooks = [(f"webhook {s.path}", s.body.decode() + repr(s.headers)) for s in receiver.seen]
    log_lines = [("log", line) for line in logs.lines]
    figures(codes=len(w.codes), table_values=len(tables), redis_values=len(stored), log_lines=len(log_lines),
            answers=len(answers), webhooks=len(hooks))
    # The scans do see the workload.
    assert any(otp_ids[2] in text for _where, text in tables)
    assert any("rq:job:" in where for where, _text in stored) and any("wpotp:" in w_ for w_, _ in stored)
    assert any('"logger": "wpotp.' in line for _w, line in log_lines)
    assert len(hooks) >= 10 and all(s.headers.get("X-Wpotp-Signature") for s in receiver.seen)

    found = leaks(tables + stored + answers + hooks + log_lines, patterns)
    assert found == [], "\n".join(found[:20])


def test_the_scan_finds_a_planted_secret(app, api_key):
    """The scanners above can fail: a code planted in a row, a Redis value, an RQ job's packed
    arguments and a log line is found in each; a code inside a longer number is not."""
    code = "73950846"
    patterns = secret_patterns([code], [(api_key.secret, api_key.secret[:15])])
    with app.app_context():
        otp_count = db.session.scalar(select(db.func.count()).select_from(Otp))
        assert otp_count == 0
        db.session.execute(update(ApiKey).where(ApiKey.id == api_key.key_id).values(name=f"leak {code}"))
        db.session.commit()
        redis_client.conn.hset("wpotp:plant", "field", f"x{code}y")
        redis_client.conn.set("wpotp:plant-job", zlib.compress(pickle.dumps(("f", None, (code,), {}))))
        redis_client.conn.set("wpotp:near-miss", f"1{code}")
    capture = Capture()
    with capture:
        logging.getLogger("wpotp.test").info("sent with key %s", api_key.secret[15:])

    assert [w for w in leaks(database_texts(app), patterns)] == [
        f"api_keys.name: code {code} in 'leak {code}'"]
    redis_leaks = leaks(redis_texts(app), patterns)
    assert sorted(w.split(" ")[0] for w in redis_leaks) == ["wpotp:plant", "wpotp:plant-job"], redis_leaks
    assert len(leaks([("log", line) for line in capture.lines], patterns)) == 1
