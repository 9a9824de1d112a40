"""Logs never carry a secret: the gateway's URL token (/webhooks/gateway/<token>), an API key or a
code in a query string (Wawp's `access_token`, verify's `code`)."""

from __future__ import annotations

import importlib.util
import logging
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

from gunicorn.config import Config

from wpotp.logs import loggable_path, loggable_query

TOKEN = "t" * 32


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


def test_request_log_redacts_the_gateway_token(make_app, app):
    gateway = make_app(WPOTP_PROVIDER="gateway", GATEWAY_KIND="waha", GATEWAY_URL="http://127.0.0.1:9",
                       GATEWAY_SESSION="default", GATEWAY_WEBHOOK_TOKEN=TOKEN)
    lines = Lines()
    logger = logging.getLogger("wpotp.request")
    logger.addHandler(lines)
    try:
        r = gateway.test_client().post(f"/webhooks/gateway/{TOKEN}", json={"event": "session.status"})
    finally:
        logger.removeHandler(lines)
    assert r.status_code == 200
    assert lines.lines and all(TOKEN not in line for line in lines.lines)
    assert any("/webhooks/gateway/***" in line for line in lines.lines)


def test_the_request_line_names_method_path_status_time_and_client(app):
    lines = Lines()
    logger = logging.getLogger("wpotp.request")
    logger.addHandler(lines)
    try:
        r = app.test_client().get("/healthz", environ_base={"REMOTE_ADDR": "203.0.113.7"})
    finally:
        logger.removeHandler(lines)
    assert r.status_code == 200
    method, path, status, took, client = lines.lines[-1].split()
    assert (method, path, status, client) == ("GET", "/healthz", "200", "203.0.113.7")
    assert took.endswith("ms") and float(took[:-2]) >= 0


def test_gunicorn_writes_no_second_line_per_request_unless_web_access_log_names_a_file(monkeypatch):
    monkeypatch.delenv("WEB_ACCESS_LOG", raising=False)
    assert gunicorn_settings().accesslog is None  # wpotp.request already logs every request
    monkeypatch.setenv("WEB_ACCESS_LOG", "-")
    assert gunicorn_settings().accesslog == "-"


def test_loggable_path_keeps_other_paths():
    assert loggable_path("/v1/otp/otp_abc/verify") == "/v1/otp/otp_abc/verify"
    assert loggable_path(f"/webhooks/gateway/{TOKEN}/messages.update") == "/webhooks/gateway/***/messages.update"


# --- gunicorn's access log ------------------------------------------------------------------------

SECRET_KEY = "wpotp_test_" + "k" * 32


def gunicorn_settings():
    """gunicorn.conf.py as gunicorn reads it (a file, not an importable module name)."""
    path = Path(__file__).resolve().parent.parent / "gunicorn.conf.py"
    spec = importlib.util.spec_from_file_location("gunicorn_settings", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def access_line(fmt: str, path: str, query: str) -> str:
    """The line gunicorn's access log writes for one request, through the configured logger class."""
    settings = gunicorn_settings()
    cfg = Config()
    cfg.set("accesslog", "-")
    cfg.set("access_log_format", fmt)
    logger = settings.RedactingLogger(cfg)
    lines = Lines()
    logger.access_log.addHandler(lines)
    raw_uri = f"{path}?{query}" if query else path
    environ = {"REQUEST_METHOD": "GET", "RAW_URI": raw_uri, "PATH_INFO": path, "QUERY_STRING": query,
               "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "HTTP_AUTHORIZATION": f"Bearer {SECRET_KEY}"}
    req = SimpleNamespace(headers=[("AUTHORIZATION", f"Bearer {SECRET_KEY}"), ("X-API-KEY", SECRET_KEY)])
    resp = SimpleNamespace(status="200 OK", sent=2, headers=[("X-Request-Id", "req_1")])
    try:
        logger.access(resp, req, environ, timedelta(milliseconds=3))
    finally:
        for log in (logger.access_log, logger.error_log):  # gunicorn's loggers are global: leave them bare
            for handler in list(log.handlers):
                log.removeHandler(handler)
    [line] = lines.lines
    return line


WAWP_QUERY = f"chatId=905551112233&instance_id=app_1&access_token={SECRET_KEY}&code=482913&lang=en"


def test_gunicorn_access_log_as_configured_shows_the_path_without_secrets():
    line = access_line(gunicorn_settings().access_log_format, "/compat/wawp/v2/auth/otp/verify", WAWP_QUERY)
    assert '"GET /compat/wawp/v2/auth/otp/verify" 200' in line
    assert SECRET_KEY not in line and "482913" not in line
    line = access_line(gunicorn_settings().access_log_format, f"/webhooks/gateway/{TOKEN}", "")
    assert "/webhooks/gateway/***" in line and TOKEN not in line


def test_gunicorn_access_log_redacts_the_request_line_query_and_key_headers():
    fmt = '"%(r)s" q=%(q)s raw=%({raw_uri}e)s qs=%({query_string}e)s a=%({authorization}i)s k=%({x-api-key}i)s'
    line = access_line(fmt, "/compat/wawp/v2/auth/otp/send", WAWP_QUERY.replace("&code=482913", ""))
    safe = "chatId=905551112233&instance_id=app_1&access_token=***&lang=en"
    assert f'"GET /compat/wawp/v2/auth/otp/send?{safe} HTTP/1.1"' in line
    assert f"q={safe} " in line and f"raw=/compat/wawp/v2/auth/otp/send?{safe} " in line and f"qs={safe} " in line
    assert "a=*** k=***" in line
    assert SECRET_KEY not in line


def test_loggable_query_hides_secret_parameters_however_they_are_spelled():
    assert loggable_query(f"access_token={SECRET_KEY}") == "access_token=***"
    assert loggable_query(f"a=1&access%5Ftoken={SECRET_KEY}&ACCESS_TOKEN=x&code=1234") == \
        "a=1&access%5Ftoken=***&ACCESS_TOKEN=***&code=***"
    assert loggable_query("chatId=905551112233&lang=en") == "chatId=905551112233&lang=en"
    assert loggable_query("") == ""


# --- the request id, from the request to the jobs it causes ---------------------------------------

def _json_lines():
    """The `wpotp` logger's lines as the JSON objects its formatter writes."""
    from wpotp.logs import JsonFormatter

    lines = Lines()
    lines.setFormatter(JsonFormatter())
    return lines


def test_the_callers_request_id_reaches_the_jobs_it_causes(make_app, api_key):
    import json

    from .helpers import work_queues
    from .webhooks.support import set_webhook

    per_job = make_app(SEND_BATCH=0)  # one send job per OTP, enqueued by the request
    set_webhook(per_job, "http://127.0.0.1:9/hook", events=["otp.sent"])  # refused: a retry is enqueued too
    lines = _json_lines()
    logger = logging.getLogger("wpotp")
    logger.addHandler(lines)
    try:
        r = per_job.test_client().post("/v1/otp/send", headers={**api_key.headers, "X-Request-Id": "trace-4711-abcd"},
                                       json={"recipient": "+905551112233"})
        other = per_job.test_client().post("/v1/otp/send", headers=api_key.headers,
                                           json={"recipient": "+905551112244"})
        work_queues(per_job)
    finally:
        logger.removeHandler(lines)
    assert r.status_code == 201 and r.headers["X-Request-Id"] == "trace-4711-abcd"
    made = other.headers["X-Request-Id"]
    assert made.startswith("req_")
    entries = [json.loads(line) for line in lines.lines]
    jobs = [e for e in entries if e.get("job_id")]
    by_id = {}
    for entry in jobs:
        by_id.setdefault(entry["request_id"], set()).add(entry["msg"].split()[1] if entry["msg"].startswith("job ")
                                                          else "")
    # Each request's send job, the sandbox receipts that send queued, the webhook delivery its event queued.
    for request_id in ("trace-4711-abcd", made):
        assert {"send_otp_job", "apply_receipt_job", "deliver_webhook_job"} <= by_id.get(request_id, set()), by_id
    assert all(e.get("request_id") in ("trace-4711-abcd", made) for e in jobs), jobs


def test_a_drain_job_serving_many_requests_carries_no_request_id(app, api_key):
    import json

    from .helpers import work_queues

    assert app.config["SEND_BATCH"] > 0
    lines = _json_lines()
    logger = logging.getLogger("wpotp")
    logger.addHandler(lines)
    try:
        for i in range(2):
            app.test_client().post("/v1/otp/send", headers={**api_key.headers, "X-Request-Id": f"trace-batch-{i}0000"},
                                   json={"recipient": f"+9055511122{i}3"})
        work_queues(app)
    finally:
        logger.removeHandler(lines)
    drains = [json.loads(line) for line in lines.lines if "drain_sends_job" in line]
    assert drains and all("request_id" not in e for e in drains), drains


def test_an_unfit_request_id_is_replaced(client):
    for unfit in ("short", "x" * 65, "tab\tinside-it"):
        r = client.get("/healthz", headers={"X-Request-Id": unfit})
        assert r.headers["X-Request-Id"].startswith("req_") and r.headers["X-Request-Id"] != unfit
