"""Rule 4 / SPEC §4, §11: codes and API keys are kept only as keyed hashes and never appear in
the database, a log line (the worker's included), an event, RQ job arguments or an API answer.
The sandbox outbox is the one place a code may be read back."""

from __future__ import annotations

import hashlib
import logging

import pytest
from rq import SimpleWorker
from rq.job import Job
from sqlalchemy import select

from wpotp.extensions import QUEUE_NAMES, db, get_queue, redis_client
from wpotp.models import ApiKey, Otp

from .support import code_for, error_code, send, verify

CALLER_CODE = "73914826"
LOGGERS = ("", "wpotp", "rq.worker", "rq")


class ListHandler(logging.Handler):
    """Keeps every record: its formatted text (with any traceback) and all its attributes."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []
        self.names: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        self.names.add(record.name)
        self.lines.append(self.format(record) + " " + repr(vars(record)))


@pytest.fixture
def captured_logs(caplog):
    caplog.set_level(logging.DEBUG)
    handler = ListHandler()
    saved = {}
    for name in LOGGERS:
        logger = logging.getLogger(name)
        saved[name] = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
    yield handler, caplog
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.removeHandler(handler)
        logger.setLevel(saved[name])


def _work(app) -> None:
    """A real RQ worker, logging everything it does."""
    with app.app_context():
        queues = [get_queue(name) for name in QUEUE_NAMES]
        SimpleWorker(queues, connection=redis_client.conn).work(burst=True, logging_level="DEBUG")


def _database_dump(app) -> list[str]:
    values = []
    with app.app_context(), db.engine.connect() as conn:
        for table in db.metadata.sorted_tables:
            for row in conn.execute(table.select()):
                values.extend(str(value) for value in row)
    return values


def _job_texts(app) -> list[str]:
    texts = []
    with app.app_context():
        conn = redis_client.conn
        for key in conn.scan_iter(match="rq:job:*"):
            job_id = key.decode().split(":", 2)[2]
            if ":" in job_id:
                continue
            job = Job.fetch(job_id, connection=conn)
            texts.append(f"{job.func_name} {job.args!r} {job.kwargs!r} {job.description} {job.return_value()!r}")
    return texts


def test_codes_and_keys_never_leave_as_plaintext(app, client, api_key, outbox, captured_logs):
    handler, caplog = captured_logs
    secret = api_key.secret
    key_tail = secret[15:]  # what is left once the displayed prefix is taken off
    answers = []

    def call(response):
        answers.append(response)
        return response

    first = call(send(client, api_key, "+905551110501", code=CALLER_CODE, reference="secret-flow"))
    second = call(send(client, api_key, "+905551110502", length=8))
    assert first.status_code == 201 and second.status_code == 201
    a_id, b_id = first.json["id"], second.json["id"]
    _work(app)
    generated = code_for(outbox, b_id)
    assert len(generated) == 8 and generated != CALLER_CODE
    assert code_for(outbox, a_id) == CALLER_CODE  # the outbox, test mode only, shows it
    codes = (CALLER_CODE, generated)

    wrong = call(verify(client, api_key, a_id, "00000000"))
    assert error_code(wrong) == "INVALID_CODE"
    bad_body = call(client.post(f"/v1/otp/{b_id}/verify", headers=api_key.headers,
                                json={"code": generated, "otpCode": generated}))
    assert error_code(bad_body) == "VALIDATION_ERROR"
    bad_type = call(client.post(f"/v1/otp/{b_id}/verify", headers=api_key.headers, json={"code": int(generated)}))
    assert error_code(bad_type) == "VALIDATION_ERROR"
    assert call(verify(client, api_key, a_id, CALLER_CODE)).status_code == 200
    assert error_code(call(verify(client, api_key, b_id, "11111111" if generated != "11111111" else "22222222"))) \
        == "INVALID_CODE"
    assert call(verify(client, api_key, b_id, generated)).status_code == 200
    again = call(verify(client, api_key, a_id, CALLER_CODE))
    assert error_code(again) == "OTP_ALREADY_VERIFIED"
    for path in (f"/v1/otp/{a_id}", f"/v1/otp/{b_id}", "/v1/otp", "/v1/otp?reference=secret-flow",
                 f"/v1/otp/{a_id}/attempts", f"/v1/otp/{b_id}/attempts", "/v1/logs", f"/v1/logs?otpId={a_id}"):
        call(client.get(path, headers=api_key.headers))
    assert [r.status_code for r in answers[-8:-2]] == [200] * 6  # /v1/logs may not exist yet
    _work(app)

    # (a) every value of every row of every table
    dump = _database_dump(app)
    assert any(a_id in value for value in dump)  # the dump does see the OTPs
    for value in dump:
        for code in codes:
            assert code not in value, f"code in the database: {value!r}"
        assert secret not in value and key_tail not in value, f"API key in the database: {value!r}"

    # (b) every log record, the RQ worker's included
    assert any(name.startswith("wpotp.") for name in handler.names)
    assert any(name.startswith("rq.worker") for name in handler.names)
    assert handler.lines
    logs = "\n".join(handler.lines) + "\n" + caplog.text
    for code in codes:
        assert code not in logs
    assert secret not in logs and key_tail not in logs

    # (c) every API answer: bodies and headers
    for r in answers:
        text = r.get_data(as_text=True) + str(r.headers)
        for code in codes:
            assert code not in text, (r.request.path, text)
        assert key_tail not in text

    # RQ job arguments, descriptions and results travel without the code
    jobs = _job_texts(app)
    assert jobs
    for text in jobs:
        for code in codes:
            assert code not in text, text

    # The stored hashes are keyed: not a plain SHA-256 of the code or of the key.
    with app.app_context():
        otps = {o.id: o for o in db.session.scalars(select(Otp)).all()}
        key_row = db.session.get(ApiKey, api_key.key_id)
        for otp_id, code in ((a_id, CALLER_CODE), (b_id, generated)):
            stored = otps[otp_id].code_hash
            for plain in (code, otp_id + code, f"{otp_id}:{code}", f"code:{otp_id}:{code}"):
                assert stored != hashlib.sha256(plain.encode()).hexdigest()
        assert key_row.key_hash != hashlib.sha256(secret.encode()).hexdigest()
        assert key_row.prefix != secret and len(key_row.prefix) < len(secret) // 2
