"""Delivering one webhook: sign, POST (no redirects, a timeout), record the attempt, retry.

A delivery is claimed with a lease before its POST (`next_attempt_at` moves past the POST's
time limit), so two jobs never post the same attempt, and a worker that dies mid-POST only
delays the delivery: once the lease lapses the sweep queues it again.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta

import requests
from flask import current_app
from sqlalchemy import select, update

from .. import metrics
from ..extensions import db, get_queue, redis_client
from ..jobs.enqueue import job_alive
from ..models import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from ..providers.http import post_pinned
from ..util import random_base62, utcnow
from .events import PUBLIC_EVENTS, payload
from .guard import Unresolvable, UnsafeUrl, checked_addresses
from .signing import signed_headers, unseal_secret

JOB = "wpotp.jobs.webhooks.deliver_webhook_job"
EXCERPT = 300


def enqueue_delivery(delivery_id: str, delay: int = 0) -> None:
    queue = get_queue("webhooks")
    job_id = f"webhook-{delivery_id}-{random_base62(6)}"
    kwargs = dict(job_id=job_id, description=f"webhook {delivery_id}", result_ttl=300, failure_ttl=86400)
    if delay > 0:
        queue.enqueue_in(timedelta(seconds=delay), JOB, delivery_id, **kwargs)
    else:
        queue.enqueue(JOB, delivery_id, **kwargs)
    redis_client.conn.set(_job_key(delivery_id), job_id, ex=delay + 86400)


def _job_key(delivery_id: str) -> str:
    return f"wpotp:whjob:{delivery_id}"


def deliver(delivery_id: str) -> str:
    """Make one attempt of a due delivery. Returns what happened, for the job log."""
    cfg = current_app.config
    now = utcnow()
    lease = now + timedelta(seconds=cfg["WEBHOOK_TIMEOUT"] + 5)
    claimed = db.session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == "pending",
               WebhookDelivery.next_attempt_at <= now)
        .values(next_attempt_at=lease).execution_options(synchronize_session=False)).rowcount == 1
    db.session.commit()
    if not claimed:
        return "skipped"
    delivery = db.session.get(WebhookDelivery, delivery_id)
    endpoint = db.session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.app_id == delivery.app_id)).first()
    if endpoint is None:
        return _finish(delivery, "given_up", None, 0, None, "the app has no webhook endpoint any more")
    body = json.dumps(payload(db.session.get(Event, delivery.event_id)), separators=(",", ":")).encode()
    started = time.monotonic()
    try:
        secret = unseal_secret(endpoint.secret_sealed)
    except RuntimeError as exc:  # OTP_HASH_KEY changed: a failed attempt, until set-webhook is run again
        status_code, excerpt, error = None, None, str(exc)
    else:
        status_code, excerpt, error = _post(endpoint.url, body, delivery, secret)
    duration = int((time.monotonic() - started) * 1000)
    delivery.url = endpoint.url
    if status_code is not None and 200 <= status_code < 300:
        return _finish(delivery, "succeeded", status_code, duration, excerpt, None)
    delays = cfg["WEBHOOK_RETRY_DELAYS"]
    if delivery.attempts + 1 > len(delays):
        return _finish(delivery, "given_up", status_code, duration, excerpt, error)
    return _finish(delivery, "pending", status_code, duration, excerpt, error, retry_in=delays[delivery.attempts])


def _post(url: str, body: bytes, delivery: WebhookDelivery, secret: str) -> tuple[int | None, str | None, str | None]:
    """POST once, to an address the guard has just checked; returns (status code, response excerpt, error)."""
    cfg = current_app.config
    timeout = cfg["WEBHOOK_TIMEOUT"]
    # The timestamp is this attempt's, not the event's: a receiver's replay window judges the POST.
    headers = {"Content-Type": "application/json", "User-Agent": "wpotp-webhooks/1",
               "X-Wpotp-Event": delivery.event_type, "X-Wpotp-Delivery": delivery.event_id,
               **signed_headers(secret, body, int(time.time()))}
    try:
        addresses = checked_addresses(url, cfg["WEBHOOK_ALLOW_PRIVATE"], cfg["WEBHOOK_ALLOW_LOOPBACK"])
        with post_pinned(url, addresses, data=body, headers=headers, timeout=timeout,
                         verify=cfg["WEBHOOK_CA_BUNDLE"] or True) as response:
            raw = response.raw.read(EXCERPT, decode_content=True) or b""
            text = "".join(ch if ch.isprintable() else " " for ch in raw.decode("utf-8", "replace"))
            redirect = f"redirects are not followed ({response.headers.get('Location', '')[:100]})" \
                if 300 <= response.status_code < 400 else None
            return response.status_code, text.strip() or None, redirect
    except Unresolvable as exc:
        return None, None, str(exc)[:300]
    except UnsafeUrl as exc:
        return None, None, f"refused: {exc}"[:300]
    except requests.Timeout:
        return None, None, f"no answer within {timeout} s"
    except requests.exceptions.SSLError as exc:
        return None, None, f"TLS failed: {_tls_reason(exc)}"[:300]
    except requests.ConnectionError:
        return None, None, "could not connect"
    except requests.RequestException as exc:
        return None, None, f"request failed: {type(exc).__name__}"


def _tls_reason(exc: requests.exceptions.SSLError) -> str:
    """The innermost reason (e.g. "certificate verify failed: Hostname mismatch, ..."), not urllib3's wrapping."""
    reason = getattr(exc.args[0], "reason", exc.args[0]) if exc.args else exc
    while getattr(reason, "args", None) and isinstance(reason.args[0], Exception):
        reason = reason.args[0]
    return str(reason)


def _finish(delivery: WebhookDelivery, status: str, code: int | None, duration: int, excerpt: str | None,
            error: str | None, retry_in: int | None = None) -> str:
    now = utcnow()
    number = delivery.attempts + 1
    next_at = now + timedelta(seconds=retry_in) if retry_in is not None else None
    started_at = now - timedelta(milliseconds=duration)  # when the POST began, not when it ended
    db.session.add(WebhookAttempt(delivery_id=delivery.id, number=number, started_at=started_at, status_code=code,
                                  duration_ms=duration, response_excerpt=excerpt, error=error,
                                  next_attempt_at=next_at))
    delivery.attempts = number
    delivery.status = status
    delivery.last_status_code = code
    delivery.next_attempt_at = next_at
    if status != "pending":
        delivery.completed_at = now
    db.session.commit()
    metrics.webhook_attempt("retrying" if retry_in is not None else status, duration)
    if retry_in is not None:
        enqueue_delivery(delivery.id, delay=retry_in)
        return "retrying"
    return status


def rescue_due(limit: int = 500) -> int:
    """Queue pending deliveries that are due but have no live job (lost with Redis, or a killed
    worker's lease has lapsed). One waiting in the queue is left alone; the job's claim makes any
    duplicate harmless."""
    due = db.session.scalars(
        select(WebhookDelivery.id).where(WebhookDelivery.status == "pending",
                                         WebhookDelivery.next_attempt_at <= utcnow() - timedelta(seconds=5))
        .limit(limit)).all()
    conn = redis_client.conn
    lost = [d for d in due if not job_alive(conn.get(_job_key(d)), started_grace=0)]
    for delivery_id in lost:
        enqueue_delivery(delivery_id)
    return len(lost)


def redeliver(evt: Event) -> WebhookDelivery:
    """A fresh delivery of a public event to the app's current endpoint (the console and CLI use this).
    Internal events (otp.queued, ...) and receipts of a replaced message are never sent."""
    if evt.type not in PUBLIC_EVENTS or (evt.data or {}).get("superseded"):
        raise ValueError(f"{evt.type} events are internal and never sent to webhooks")
    now = utcnow()
    delivery = WebhookDelivery(app_id=evt.app_id, event_id=evt.id, event_type=evt.type, url="", status="pending",
                               attempts=0, next_attempt_at=now, created_at=now)
    endpoint = db.session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.app_id == evt.app_id)).first()
    if endpoint is None:
        raise ValueError("the app has no webhook endpoint")
    delivery.url = endpoint.url
    db.session.add(delivery)
    db.session.commit()
    enqueue_delivery(delivery.id)
    return delivery
