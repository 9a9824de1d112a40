"""/metrics (issue 17): what is counted moves by exactly what happened, through real sends, a real
worker and a real sweep; queue and backlog figures are read from Redis and the database at scrape
time; only allowed addresses or the bearer token may read it; and under gunicorn with two workers
(plus the worker process) every process's figures are added up, a dead worker's included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from config import Config, ConfigError
from wpotp.extensions import db
from wpotp.models import Otp
from wpotp.util import utcnow

from .conftest import TEST_REDIS_URL
from .doubles import HttpDouble, Reply
from .webhooks.support import invoke, set_webhook

ROOT = Path(__file__).resolve().parent.parent
CODE = "135790"
VERIFY = "/v1/otp/<otp_id>/verify"


# --- reading a scrape --------------------------------------------------------------------------------

def parse(text: str) -> dict[tuple[str, frozenset], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(figures: dict, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in figures.items() if n == name and wanted <= have)


def scrape(client) -> dict:
    r = client.get("/metrics")
    assert r.status_code == 200, r.data[:300]
    assert r.content_type.startswith("text/plain")
    return parse(r.get_data(as_text=True))


def send(client, key, recipient: str, **extra):
    return client.post("/v1/otp/send", headers=key.headers, json={"recipient": recipient, "code": CODE, **extra})


# --- counting, in one process ------------------------------------------------------------------------

def test_counters_move_by_what_happened(make_app, api_key, run_worker):
    app = make_app(RECIPIENT_RATE_LIMIT="2/15minutes")
    client = app.test_client()
    before = scrape(client)
    ids = [send(client, api_key, f"+9055511122{i:02d}").json["id"] for i in range(3)]
    failing = send(client, api_key, "+15005550001")  # the sandbox's permanent failure
    assert failing.status_code == 201
    assert [send(client, api_key, "+905551119999").status_code for _ in range(3)] == [201, 201, 429]
    run_worker()
    assert client.post(f"/v1/otp/{ids[0]}/verify", headers=api_key.headers, json={"code": CODE}).status_code == 200
    assert client.post(f"/v1/otp/{ids[1]}/verify", headers=api_key.headers, json={"code": "000000"}).status_code == 400
    assert client.post(f"/v1/otp/{ids[0]}/verify", headers=api_key.headers, json={"code": CODE}).status_code == 409
    with app.app_context():  # the third one's time runs out; the sweep marks it
        db.session.execute(update(Otp).where(Otp.id == ids[2]).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    assert invoke(app, "sweep").exit_code == 0
    after = scrape(client)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("wpotp_http_requests_total", route="/v1/otp/send", method="POST", status="201") == 6
    assert moved("wpotp_http_requests_total", route="/v1/otp/send", status="429") == 1
    assert moved("wpotp_http_requests_total", route=VERIFY, status="200") == 1
    assert moved("wpotp_http_requests_total", route=VERIFY, status="400") == 1
    assert moved("wpotp_http_requests_total", route=VERIFY, status="409") == 1
    assert moved("wpotp_http_request_duration_seconds_count", route="/v1/otp/send") == 7
    wa = {"channel": "whatsapp", "provider": "sandbox"}
    assert moved("wpotp_otp_events_total", event="queued", **wa) == 6
    assert moved("wpotp_otp_events_total", event="sent", **wa) == 5
    assert moved("wpotp_otp_events_total", event="failed", **wa) == 1
    assert moved("wpotp_otp_events_total", event="verified", **wa) == 1
    assert moved("wpotp_otp_events_total", event="expired", **wa) == 1
    assert moved("wpotp_otp_events_total", event="delivered", **wa) == 5  # the sandbox's receipts
    assert moved("wpotp_otp_events_total", event="read", **wa) == 5
    assert moved("wpotp_verify_outcomes_total", result="verified") == 1
    assert moved("wpotp_verify_outcomes_total", result="invalid_code") == 1
    assert moved("wpotp_verify_outcomes_total", result="otp_already_verified") == 1
    assert moved("wpotp_provider_calls_total", provider="sandbox", outcome="ok") == 5
    assert moved("wpotp_provider_calls_total", provider="sandbox", outcome="permanent") == 1
    assert moved("wpotp_provider_errors_total", provider="sandbox") == 1
    assert moved("wpotp_provider_call_duration_seconds_count", provider="sandbox") == 6
    assert moved("wpotp_rate_limit_refusals_total") == 1
    assert moved("wpotp_jobs_total", outcome="error") == 0
    assert moved("wpotp_jobs_total", job="sweep_job", outcome="ok") == 0  # the CLI sweeps without a job


def test_a_rolled_back_change_counts_nothing(app, api_key):
    client = app.test_client()
    otp_id = send(client, api_key, "+905551112233").json["id"]
    before = scrape(client)
    with app.app_context():
        from wpotp.otp import service

        otp = db.session.get(Otp, otp_id)
        db.session.execute(update(Otp).where(Otp.id == otp_id).values(expires_at=utcnow()))
        service.record_event(otp, "otp.expired")  # written, then thrown away
        db.session.rollback()
        db.session.commit()
    after = scrape(client)
    assert value(after, "wpotp_otp_events_total", event="expired") == value(before, "wpotp_otp_events_total",
                                                                              event="expired")


def test_sends_answered_before_a_worker_runs_show_as_queue_depth_and_age(make_app, api_key, run_worker):
    per_job = make_app(SEND_BATCH=0)  # one RQ job per send, on the `otp` queue
    client = per_job.test_client()
    for i in range(3):
        assert send(client, api_key, f"+9055511133{i:02d}").status_code == 201
    waiting = scrape(client)
    assert value(waiting, "wpotp_queue_jobs", queue="otp", state="queued") == 3
    assert value(waiting, "wpotp_queue_oldest_job_age_seconds", queue="otp") > 0
    assert value(waiting, "wpotp_scrape_error", source="redis") == 0
    run_worker(per_job)
    done = scrape(client)
    assert value(done, "wpotp_queue_jobs", queue="otp", state="queued") == 0
    assert value(done, "wpotp_queue_oldest_job_age_seconds", queue="otp") == 0


def test_batched_sends_waiting_show_as_the_send_backlog(app, api_key, run_worker):
    client = app.test_client()
    assert app.config["SEND_BATCH"] > 0
    for i in range(2):
        assert send(client, api_key, f"+9055511144{i:02d}").status_code == 201
    waiting = scrape(client)
    assert value(waiting, "wpotp_send_backlog") == 2
    assert value(waiting, "wpotp_send_backlog_oldest_age_seconds") > 0
    run_worker()
    done = scrape(client)
    assert value(done, "wpotp_send_backlog") == 0
    assert value(done, "wpotp_send_backlog_oldest_age_seconds") == 0


def test_failing_webhooks_show_as_retries_and_a_backlog(make_app, api_key, run_worker):
    app = make_app(WEBHOOK_RETRY_DELAYS=[3600])
    with HttpDouble(lambda seen: Reply(status=500)) as receiver:
        set_webhook(app, receiver.url + "/hook", events=["otp.sent"])
        client = app.test_client()
        before = scrape(client)
        for i in range(2):
            assert send(client, api_key, f"+9055511155{i:02d}").status_code == 201
        run_worker(app)
        assert len(receiver.seen) == 2
    after = scrape(client)
    assert value(after, "wpotp_webhook_deliveries_total", outcome="retrying") - value(
        before, "wpotp_webhook_deliveries_total", outcome="retrying") == 2
    assert value(after, "wpotp_webhook_backlog", state="waiting") == 2
    assert value(after, "wpotp_webhook_backlog", state="due") == 0
    assert value(after, "wpotp_webhook_oldest_undelivered_age_seconds") > 0
    assert value(after, "wpotp_scrape_error", source="database") == 0


def test_meta_calls_errors_by_class_throttle_waits_and_receipts_are_counted(make_app, graph_double, run_worker):
    from .helpers import make_key
    from .providers.cloud_api.graph import SETTINGS, meta_error, status_item
    from .providers.cloud_api.support import post_receipts

    cloud = make_app(WHATSAPP_GRAPH_URL=graph_double.url, WHATSAPP_MPS=1, **SETTINGS)
    key = make_key(cloud, mode="live")
    client = cloud.test_client()
    before = scrape(client)
    graph_double.replies.append(meta_error(131026, "Message undeliverable."))  # the first send: permanent
    for i in range(3):
        assert send(client, key, f"+9055511166{i:02d}").status_code == 201
    run_worker(cloud)
    assert len(graph_double.sends) == 3
    post_receipts(client, status_item(graph_double.wamids[-1], "delivered"), status_item(graph_double.wamids[-1],
                                                                                           "delivered"))
    after = scrape(client)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    meta = {"channel": "whatsapp", "provider": "cloud_api"}
    assert moved("wpotp_provider_calls_total", provider="cloud_api", outcome="ok") == 2
    assert moved("wpotp_provider_calls_total", provider="cloud_api", outcome="permanent") == 1
    assert moved("wpotp_provider_errors_total", provider="cloud_api", error="131026") == 1
    assert moved("wpotp_provider_call_duration_seconds_count", provider="cloud_api") == 3
    assert moved("wpotp_throttle_wait_seconds_count", provider="cloud_api") == 3  # every capped send takes a slot
    assert moved("wpotp_otp_events_total", event="sent", **meta) == 2
    assert moved("wpotp_otp_events_total", event="failed", **meta) == 1
    assert moved("wpotp_otp_events_total", event="delivered", **meta) == 1  # the repeat moved nothing


@pytest.fixture
def graph_double(app):
    from .providers.cloud_api.graph import GraphDouble

    with GraphDouble() as double:
        yield double


# --- who may read it ---------------------------------------------------------------------------------

def test_metrics_answer_loopback_by_default_and_refuse_others_in_json(app):
    client = app.test_client()
    assert client.get("/metrics").status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::ffff:127.0.0.1"}).status_code == 200
    refused = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert refused.status_code == 403 and refused.json["error"]["code"] == "FORBIDDEN"
    assert client.post("/metrics").json["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_metrics_token_lets_any_address_in_and_a_wrong_one_is_401(make_app):
    import ipaddress

    token = "m" * 24
    app = make_app(METRICS_TOKEN=token, METRICS_ALLOW=(ipaddress.ip_network("10.0.0.0/8"),))
    client = app.test_client()
    outside = {"REMOTE_ADDR": "203.0.113.9"}
    assert client.get("/metrics", environ_base=outside, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    for headers in ({}, {"Authorization": "Bearer " + "x" * 24}, {"Authorization": f"Basic {token}"}):
        r = client.get("/metrics", environ_base=outside, headers=headers)
        assert r.status_code == 401 and r.json["error"]["code"] == "unauthorized", headers
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.2.3.4"}).status_code == 200
    assert client.get("/metrics").status_code == 401  # loopback is no longer in the list


def test_metrics_settings_are_checked_at_start(monkeypatch):
    monkeypatch.setenv("METRICS_ALLOW", "127.0.0.1/32, not-a-network")
    with pytest.raises(ConfigError, match="METRICS_ALLOW"):
        Config.from_env()
    monkeypatch.setenv("METRICS_ALLOW", "")
    monkeypatch.setenv("METRICS_TOKEN", "short")
    with pytest.raises(ConfigError, match="METRICS_TOKEN"):
        Config.from_env()


def test_no_code_or_key_reaches_the_metrics(app, api_key, run_worker):
    client = app.test_client()
    otp_id = send(client, api_key, "+905551112233").json["id"]
    run_worker()
    client.post(f"/v1/otp/{otp_id}/verify", headers=api_key.headers, json={"code": CODE})
    text = client.get("/metrics").get_data(as_text=True)
    assert CODE not in text and api_key.secret not in text and otp_id not in text and "+90555" not in text


def test_paths_outside_the_api_answer_in_their_areas_style(client):
    for path in ("/metrics/nope", "/healthz/nope", "/webhooks/nope"):
        r = client.get(path)
        assert r.status_code == 404 and r.json["error"]["code"] == "NOT_FOUND", path
    for path in ("/nope", "/console/nope"):
        r = client.get(path)
        assert r.status_code == 404 and r.content_type.startswith("text/html"), path
        assert "Page not found" in r.get_data(as_text=True)
    assert client.get("/console").status_code == 308  # redirects stay redirects


# --- across processes: gunicorn with two workers, the worker process, a worker's death -----------------

def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def _sends_counted_in(directory: Path, pid: int) -> float:
    """What one process's own counter file says of answered sends (the file a dead process leaves)."""
    from prometheus_client.multiprocess import MultiProcessCollector

    files = list(directory.glob(f"counter_*-{pid}.db"))
    return sum(s.value for metric in MultiProcessCollector.merge(files) for s in metric.samples
               if s.name == "wpotp_http_requests_total" and s.labels.get("route") == "/v1/otp/send")


@pytest.fixture
def served(backend, app, api_key, tmp_path):
    """gunicorn -c gunicorn.conf.py wsgi:app with 2 workers and PROMETHEUS_MULTIPROC_DIR, on the test
    database and Redis; yields (base url, its process, the environment, the metrics directory)."""
    _name, url, instance = backend
    port, directory = _free_port(), tmp_path / "prometheus"
    env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": TEST_REDIS_URL, "WPOTP_INSTANCE_DIR": str(instance),
           "OTP_HASH_KEY": app.config["OTP_HASH_KEY"], "SECRET_KEY": app.config["SECRET_KEY"],
           "WPOTP_ENV": "development", "BIND_HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": "2",
           "WEB_THREADS": "2", "PROMETHEUS_MULTIPROC_DIR": str(directory), "SANDBOX_RECEIPT_DELAY": "0",
           "RECEIPT_BATCH": "0", "FRAUD_GUARD": "false", "API_RATE_LIMIT": "100000/minute",
           "LOG_LEVEL": "WARNING"}
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], cwd=ROOT,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until(lambda: _answers(base) and len(_children(server.pid)) == 2, server)
        yield base, server, env, directory
    finally:
        server.terminate()
        server.wait(timeout=30)


def _answers(base: str) -> bool:
    try:
        return requests.get(base + "/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _wait_until(ready, server, tries: int = 600) -> None:
    for _ in range(tries):
        if server.poll() is not None:
            pytest.fail(f"gunicorn exited with {server.returncode}")
        if ready():
            return
        threading.Event().wait(0.05)
    pytest.fail("gunicorn did not become ready")


def _scrape_http(base: str) -> dict:
    r = requests.get(base + "/metrics", headers={"Connection": "close"}, timeout=10)
    assert r.status_code == 200, r.text[:300]
    return parse(r.text)


def test_two_gunicorn_workers_and_the_worker_process_add_up_exactly(served, api_key):
    base, server, env, directory = served
    before = _scrape_http(base)
    headers = {**api_key.headers, "Connection": "close"}  # a new connection each: both workers take some
    sent = []

    def one_send() -> None:
        r = requests.post(base + "/v1/otp/send", headers=headers, timeout=10,
                          json={"recipient": f"+9055512{len(sent):05d}", "code": CODE})
        assert r.status_code == 201, r.text
        sent.append(r.json()["id"])

    workers = sorted(_children(server.pid))
    while len(sent) < 4 or not all(_sends_counted_in(directory, pid) for pid in workers):
        assert len(sent) < 60, "one gunicorn worker took every request"
        one_send()
    # One worker dies (gunicorn starts another): what it counted must stay in the sum.
    victim = workers[0]
    served_by_victim = _sends_counted_in(directory, victim)
    os.kill(victim, signal.SIGTERM)
    _wait_until(lambda: victim not in _children(server.pid) and len(_children(server.pid)) == 2
                and _answers(base), server)
    for _ in range(3):
        one_send()
    # The real worker process sends them all (sandbox), and the sandbox's receipts.
    worker = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "wpotp", "worker", "--burst"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert worker.wait(timeout=120) == 0
    for otp_id in sent[:2]:
        r = requests.post(f"{base}/v1/otp/{otp_id}/verify", headers=headers, json={"code": CODE}, timeout=10)
        assert r.status_code == 200, r.text
    r = requests.post(f"{base}/v1/otp/{sent[2]}/verify", headers=headers, json={"code": "000000"}, timeout=10)
    assert r.status_code == 400

    scrapes = [_scrape_http(base) for _ in range(4)]  # each answered by either worker
    n = len(sent)

    def moved(after, name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    for after in scrapes:
        assert moved(after, "wpotp_http_requests_total", route="/v1/otp/send", status="201") == n
        assert moved(after, "wpotp_http_requests_total", route=VERIFY, status="200") == 2
        assert moved(after, "wpotp_otp_events_total", event="queued", provider="sandbox") == n
        assert moved(after, "wpotp_otp_events_total", event="sent", provider="sandbox") == n
        assert moved(after, "wpotp_otp_events_total", event="verified", provider="sandbox") == 2
        assert moved(after, "wpotp_verify_outcomes_total", result="invalid_code") == 1
        assert moved(after, "wpotp_provider_calls_total", provider="sandbox", outcome="ok") == n
        assert moved(after, "wpotp_provider_call_duration_seconds_count", provider="sandbox") == n
        assert value(after, "wpotp_send_backlog") == 0
        assert value(after, "wpotp_worker_threads") == 0  # the burst worker has stopped: its live gauge is gone
    assert served_by_victim > 0
    writers = {path.stem.rpartition("-")[2] for path in directory.glob("counter_*.db")}
    # The dead gunicorn worker's files and the worker process's are among those summed (the replacement
    # writes one only if it happened to take a counted request).
    assert {str(victim), str(worker.pid)} <= writers and len(writers) >= 3


# --- the documents operators load: every metric they name exists ------------------------------------

def _exported_families(client) -> set[str]:
    text = client.get("/metrics").get_data(as_text=True)
    return {family.name for family in text_string_to_metric_families(text) if family.name.startswith("wpotp_")}


def _named_in(text: str) -> set[str]:
    import re

    names = set(re.findall(r"\b(wpotp_[a-z_]+)", text))
    return {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in names}


def test_every_metric_the_alert_rules_and_dashboard_name_is_exported(app, api_key, run_worker):
    import json

    import yaml

    client = app.test_client()
    send(client, api_key, "+905551112233")  # so that the labelled series exist
    run_worker()
    exported = _exported_families(client)
    rules = yaml.safe_load((ROOT / "deploy/prometheus/wpotp-alerts.yml").read_text())
    expressions = " ".join(rule["expr"] for group in rules["groups"] for rule in group["rules"])
    dashboard = json.loads((ROOT / "docs/grafana-dashboard.json").read_text())
    queries = " ".join(t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", []))
    documented = (ROOT / "docs/operations.md").read_text().split("## Metrics", 1)[1].split("\n## ", 1)[0]
    for source, text in (("alerts", expressions), ("dashboard", queries), ("operations.md", documented)):
        named = _named_in(text)
        assert named and named <= exported, (source, sorted(named - exported))
    assert exported - _named_in(documented) == set(), "metrics missing from docs/operations.md"
