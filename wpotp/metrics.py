"""Prometheus metrics: what every process counts, and `/metrics`, which reports them all.

Counting is in the process and costs no round trip: a counter or histogram update is a write
into a memory-mapped file (prometheus-client's multiprocess mode) or, without
PROMETHEUS_MULTIPROC_DIR, into the process's own registry. Figures that live in Redis or the
database (queue depths and oldest-job age, the webhook backlog, live workers) are read only
when `/metrics` is scraped (`StateCollector`).

Multiprocess mode (PROMETHEUS_MULTIPROC_DIR set, before this module is imported): every gunicorn
worker, `wpotp worker` and CLI process writes its own files in that directory and `/metrics`,
in whichever gunicorn worker answers, adds them all up: no figure is lost when a process exits
or double counted by a second scrape. The files are named after `<host>-<pid>`, not the pid
alone, so the web and worker containers of compose.yaml can share one directory (pids repeat
across containers). gunicorn's `child_exit` (gunicorn.conf.py) and a stopping `wpotp worker`
call `process_gone` for the live gauges. The directory must be emptied when the whole service
is restarted, never while a process of it runs (docs/operations.md).

OTP figures (sent, verified, failed, expired, ...) and verify outcomes are counted when the
transaction that records them commits (`stage`): a rolled-back change counts nothing.
Nothing here ever sees a code or an API key: labels are route templates, provider names,
outcomes and error classes.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import re
import socket
import time

from prometheus_client import values

MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
# '_' separates the parts of a metrics file's name: a host name must not bring one.
_HOST = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()) or "host"
_ident = {"pid": -1, "id": ""}


def process_identifier(pid: int | None = None) -> str:
    """`<host>-<pid>`: distinct for processes running at once, even across containers."""
    if pid is not None:
        return f"{_HOST}-{pid}"
    current = os.getpid()  # called on every update (prometheus-client checks for a fork): cached
    if current != _ident["pid"]:
        _ident["pid"], _ident["id"] = current, f"{_HOST}-{current}"
    return _ident["id"]


if MULTIPROC_DIR:
    os.makedirs(MULTIPROC_DIR, exist_ok=True)
    values.ValueClass = values.MultiProcessValue(process_identifier)

# After ValueClass is chosen: every metric below is made with it.
from flask import Blueprint, Flask, Response, current_app, g, jsonify, request  # noqa: E402
from prometheus_client import (  # noqa: E402
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily  # noqa: E402

disable_created_metrics()  # no `_created` series: multiprocess mode has none either, so output matches

log = logging.getLogger("wpotp.metrics")

# --- what is counted --------------------------------------------------------------------------------

HTTP_REQUESTS = Counter("wpotp_http_requests", "HTTP requests answered, by route template and status.",
                        ("method", "route", "status"))
HTTP_LATENCY = Histogram("wpotp_http_request_duration_seconds", "Time to answer a request (in the app).",
                         ("method", "route", "status"),
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
OTP_EVENTS = Counter("wpotp_otp_events", "OTP status changes committed (queued, sent, delivered, read, verified, "
                     "failed, expired, canceled, resent), by channel and provider.", ("event", "channel", "provider"))
VERIFY_OUTCOMES = Counter("wpotp_verify_outcomes", "Verify attempts, by result (verified, invalid_code, "
                          "otp_expired, too_many_attempts, ...).", ("result",))
PROVIDER_CALLS = Counter("wpotp_provider_calls", "Provider calls, by outcome (ok, retryable, permanent).",
                         ("provider", "outcome"))
PROVIDER_ERRORS = Counter("wpotp_provider_errors", "Failed provider calls, by error class (timeout, network, "
                          "a provider's own code, ...).", ("provider", "error"))
PROVIDER_LATENCY = Histogram("wpotp_provider_call_duration_seconds", "Time of one provider call (after the "
                             "WHATSAPP_MPS wait).", ("provider",),
                             buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))
THROTTLE_WAITS = Histogram("wpotp_throttle_wait_seconds", "Time a send waited for a WHATSAPP_MPS slot (0 when "
                           "one was free at once).", ("provider",),
                           buckets=(0, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10))
RATE_LIMITED = Counter("wpotp_rate_limit_refusals", "Requests refused by a rate limit (429 RATE_LIMITED), "
                       "by limit.", ("limit",))
WEBHOOK_ATTEMPTS = Counter("wpotp_webhook_deliveries", "Webhook delivery attempts, by outcome (succeeded, "
                           "retrying, given_up).", ("outcome",))
WEBHOOK_LATENCY = Histogram("wpotp_webhook_attempt_duration_seconds", "Time of one webhook POST, by outcome.",
                            ("outcome",), buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
JOBS = Counter("wpotp_jobs", "RQ jobs run by wpotp workers, by job and outcome (ok, error).", ("job", "outcome"))
JOB_LATENCY = Histogram("wpotp_job_duration_seconds", "Time of one RQ job.", ("job",),
                        buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
# A live gauge: a stopped process's share leaves the sum (process_gone).
WORKER_THREADS = Gauge("wpotp_worker_threads", "RQ worker threads of running `wpotp worker` processes.", (),
                       multiprocess_mode="livesum")


# --- the hooks the edge and the services call ---------------------------------------------------------

def channel_of(provider: str) -> str:
    return "sms" if provider.startswith("sms_") else "whatsapp"


def otp_event(event_type: str, otp: object) -> None:
    """An OTP status change (`otp.sent`, ...) written in the session's transaction: counted when it commits.
    `otp`: anything with `provider` (and `channel`) attributes; missing ones read `unknown`."""
    provider = getattr(otp, "provider", None) or "unknown"
    channel = getattr(otp, "channel", None) or channel_of(provider)
    stage(OTP_EVENTS.labels(event_type.removeprefix("otp."), channel, provider))


def verify_outcome(result: str) -> None:
    """A verify attempt's row, written in the session's transaction: counted when it commits."""
    stage(VERIFY_OUTCOMES.labels(result))


def provider_call(provider: str, started: float, error: Exception | None = None) -> None:
    """One provider call that ended now (`started`: its time.perf_counter())."""
    PROVIDER_LATENCY.labels(provider).observe(time.perf_counter() - started)
    if error is None:
        PROVIDER_CALLS.labels(provider, "ok").inc()
        return
    permanent = getattr(error, "permanent", False)
    PROVIDER_CALLS.labels(provider, "permanent" if permanent else "retryable").inc()
    PROVIDER_ERRORS.labels(provider, str(getattr(error, "code", None) or type(error).__name__)[:40]).inc()


def throttle_wait(provider: str, seconds: float) -> None:
    THROTTLE_WAITS.labels(provider).observe(seconds)


def rate_limited(limit: str) -> None:
    RATE_LIMITED.labels(limit[:60]).inc()


def webhook_attempt(outcome: str, duration_ms: int) -> None:
    WEBHOOK_ATTEMPTS.labels(outcome).inc()
    WEBHOOK_LATENCY.labels(outcome).observe(duration_ms / 1000)


def job_done(name: str, started: float, ok: bool) -> None:
    """One job that ended now (`started`: its time.monotonic())."""
    JOBS.labels(name, "ok" if ok else "error").inc()
    JOB_LATENCY.labels(name).observe(time.monotonic() - started)


def worker_started(threads: int) -> None:
    WORKER_THREADS.set(threads)


def process_gone(pid: int | None = None) -> None:
    """Drop a stopped process's live gauges (its counters stay: they are history)."""
    if not MULTIPROC_DIR:
        WORKER_THREADS.set(0)
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(process_identifier(pid), MULTIPROC_DIR)


# --- counted at commit ----------------------------------------------------------------------------------
#
# No session listener: the writers of OTP events commit with `wpotp.webhooks.events.commit_and_queue`,
# which calls `count_committed` once its commit went through. A transaction rolled back (or committed
# some other way) counts nothing.

_STAGED = "wpotp_metrics_staged"  # session.info: (the transaction, the counters it increments)


def stage(child) -> None:
    """Increment `child` (a labelled counter) once the session's current transaction commits."""
    from .extensions import db

    session = db.session()
    transaction = session.get_transaction()
    staged = session.info.get(_STAGED)
    if staged is None or staged[0] is not transaction:  # a new transaction: an earlier one's are gone
        staged = session.info[_STAGED] = (transaction, [])
    staged[1].append(child)


def count_committed(session, transaction) -> None:
    """What `transaction` (just committed) staged, counted now."""
    staged = session.info.pop(_STAGED, None)
    if staged is not None and staged[0] is transaction:
        for child in staged[1]:
            child.inc()


# --- requests -----------------------------------------------------------------------------------------

_ROUTES: dict[str, str] = {}
_REQUEST_SERIES: dict[tuple, tuple] = {}
_CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def _route_label(rule: str) -> str:
    """`/v1/otp/<otp_id:otp_id>/verify` as `/v1/otp/<otp_id>/verify` (worked out once per rule)."""
    label = _ROUTES.get(rule)
    if label is None:
        label = _ROUTES[rule] = _CONVERTER.sub(r"<\1>", rule)
    return label


def _count_request(response: Response) -> Response:
    started = g.get("started")  # set first thing by wpotp.logs.install_request_id
    if started is None:
        return response
    rule = request.url_rule
    route = _route_label(rule.rule) if rule is not None else "unmatched"  # never the raw path (ids)
    key = (request.method, route, response.status_code)
    series = _REQUEST_SERIES.get(key)
    if series is None:  # the labelled children, looked up once per route and status (labels() costs more)
        labels = (request.method, route, str(response.status_code))
        series = _REQUEST_SERIES[key] = (HTTP_REQUESTS.labels(*labels), HTTP_LATENCY.labels(*labels))
    series[0].inc()
    series[1].observe(time.monotonic() - started)
    return response


# --- state read at scrape time ------------------------------------------------------------------------

class StateCollector:
    """Queue depths and oldest-job ages, the batched-send and receipt lists, the webhook backlog and
    the live workers, read from Redis and the database when `/metrics` is scraped (a few commands and
    two small indexed queries per scrape, none per request). A source that does not answer sets
    `wpotp_scrape_error{source}` to 1 instead of failing the scrape."""

    def __init__(self, app: Flask):
        self.app = app
        self._ready_head: bytes | None = None  # the oldest batched send (read from Redis, aged from its row)

    def collect(self):
        errors = GaugeMetricFamily("wpotp_scrape_error", "1 when a source of scrape-time figures did not answer.",
                                   labels=("source",))
        for source, read in (("redis", self._from_redis), ("database", self._from_database)):
            try:
                yield from read()
                errors.add_metric((source,), 0)
            except Exception as exc:  # noqa: BLE001 - a scrape reports an outage, it does not fail on it
                log.warning("metrics: %s unavailable at scrape: %s", source, type(exc).__name__)
                errors.add_metric((source,), 1)
        yield errors

    def _from_redis(self):
        from .extensions import QUEUE_NAMES, redis_client
        from .jobs.enqueue import READY_KEY, workers_alive
        from .jobs.receipt_queue import RECEIPT_QUEUE as RECEIPT_KEY

        conn = redis_client.conn
        with conn.pipeline(transaction=False) as pipe:
            for name in QUEUE_NAMES:
                pipe.llen(f"rq:queue:{name}")
                pipe.zcard(f"rq:scheduled:{name}")
                pipe.zcard(f"rq:wip:{name}")
                pipe.zcard(f"rq:failed:{name}")
                pipe.lindex(f"rq:queue:{name}", 0)  # RQ pushes on the right and pops on the left
            pipe.llen(READY_KEY)
            pipe.lindex(READY_KEY, 0)
            pipe.llen(RECEIPT_KEY)
            replies = pipe.execute()
        jobs = GaugeMetricFamily("wpotp_queue_jobs", "RQ jobs per queue and state (queued, scheduled, started, "
                                 "failed).", labels=("queue", "state"))
        oldest = GaugeMetricFamily("wpotp_queue_oldest_job_age_seconds", "Age of the oldest job waiting in each "
                                   "queue (0 when none waits).", labels=("queue",))
        heads = []
        for index, name in enumerate(QUEUE_NAMES):
            queued, scheduled, started, failed, head = replies[index * 5: index * 5 + 5]
            for state, count in (("queued", queued), ("scheduled", scheduled), ("started", started),
                                 ("failed", failed)):
                jobs.add_metric((name, state), count)
            heads.append((name, head))
        with conn.pipeline(transaction=False) as pipe:
            for _name, head in heads:
                pipe.hget(b"rq:job:" + head, "enqueued_at") if head else pipe.echo(b"")
            enqueued = pipe.execute()
        now = time.time()
        for (name, _head), at in zip(heads, enqueued, strict=True):
            oldest.add_metric((name,), max(0.0, now - _rq_time(at)) if at else 0.0)
        ready, ready_head, receipts = replies[-3:]
        yield jobs
        yield oldest
        yield GaugeMetricFamily("wpotp_send_backlog", "Sends waiting in the batched send list (SEND_BATCH).",
                                value=ready)
        self._ready_head = ready_head
        yield GaugeMetricFamily("wpotp_receipt_backlog", "Receipts waiting in the receipt queue (RECEIPT_BATCH).",
                                value=receipts)
        yield GaugeMetricFamily("wpotp_workers_alive", "`wpotp worker` processes alive now.", value=workers_alive())

    def _from_database(self):
        from sqlalchemy import func, select

        from .extensions import db
        from .jobs.enqueue import parse_item
        from .models import Otp, WebhookDelivery
        from .util import utcnow

        now = utcnow()
        try:
            pending = db.session.execute(
                select(func.count(), func.min(WebhookDelivery.created_at),
                       func.count().filter(WebhookDelivery.next_attempt_at <= now),
                       func.min(WebhookDelivery.next_attempt_at))
                .where(WebhookDelivery.status == "pending")).one()
            head, waiting_since = self._ready_head, None
            if head:  # the oldest batched send: its OTP's last send time (one primary-key read)
                waiting_since = db.session.scalar(select(Otp.last_sent_at).where(Otp.id == parse_item(head)[0]))
        finally:
            db.session.rollback()
        count, first_created, due, first_due = pending
        backlog = GaugeMetricFamily("wpotp_webhook_backlog", "Webhook deliveries not yet done, by state: `due` now "
                                    "or `waiting` for a later retry.", labels=("state",))
        backlog.add_metric(("due",), due or 0)
        backlog.add_metric(("waiting",), (count or 0) - (due or 0))
        yield backlog
        yield GaugeMetricFamily("wpotp_webhook_oldest_undelivered_age_seconds", "Age of the oldest webhook delivery "
                                "not yet done (0 when none).", value=_age(now, first_created))
        yield GaugeMetricFamily("wpotp_webhook_oldest_due_overdue_seconds", "How long the most overdue due webhook "
                                "delivery has waited past its time (0 when none is due).",
                                value=_age(now, first_due) if due else 0.0)
        yield GaugeMetricFamily("wpotp_send_backlog_oldest_age_seconds", "Age of the oldest send waiting in the "
                                "batched send list (0 when none waits).", value=_age(now, waiting_since))


def _rq_time(raw: bytes) -> float:
    """An RQ timestamp (`2026-12-03T10:24:59.123456Z`) as epoch seconds."""
    from datetime import UTC, datetime

    text = raw.decode().rstrip("Z")
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def _age(now, then) -> float:
    return max(0.0, (now - then).total_seconds()) if then is not None else 0.0


# --- /metrics -----------------------------------------------------------------------------------------

bp = Blueprint("metrics", __name__)


def _process_figures() -> bytes:
    if MULTIPROC_DIR:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=MULTIPROC_DIR)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


@bp.get("/metrics")
def scrape():
    refusal = _refusal()
    if refusal is not None:
        return refusal
    state = CollectorRegistry(auto_describe=False)
    state.register(StateCollector(current_app._get_current_object()))
    return Response(_process_figures() + generate_latest(state), mimetype=CONTENT_TYPE_LATEST)


def _refusal() -> Response | None:
    """None when the caller may read /metrics: its address is in METRICS_ALLOW, or it sends
    `Authorization: Bearer <METRICS_TOKEN>`. Else 401 (a token is configured) or 403, as JSON."""
    cfg = current_app.config
    token = cfg.get("METRICS_TOKEN") or ""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return None
    if _allowed(request.remote_addr, cfg.get("METRICS_ALLOW") or ()):
        return None
    if token:
        answer = jsonify({"error": {"code": "unauthorized", "message": "Send Authorization: Bearer <METRICS_TOKEN>, "
                                    "or scrape from an address in METRICS_ALLOW."}})
        answer.status_code = 401
        answer.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return answer
    answer = jsonify({"error": {"code": "FORBIDDEN", "message": "This address is not in METRICS_ALLOW."}})
    answer.status_code = 403
    return answer


def _allowed(address: str | None, networks) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


def init_app(app: Flask) -> None:
    """The request counter (after every answer) and /metrics. The request id hook (wpotp.logs) sets g.started."""
    from .extensions import csrf, limiter_skips

    app.after_request(_count_request)
    limiter_skips(bp)
    csrf.exempt(bp)
    app.register_blueprint(bp)
