"""Non-OTP template messages (POST /v1/messages): an order update, a reminder.

They travel the OTP's road (an RQ job, the same providers, the same throughput cap and
receipts) with their own statuses: QUEUED -> SENT -> DELIVERED -> READ, or FAILED, or
EXPIRED when no send succeeded before `expires_at`. They count against the app's daily
send cap, not the per-recipient OTP limit.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select, update

from .errors import CountryNotAllowed, NotFound, ServiceUnavailable, TemplateNotFound, ValidationError
from .extensions import db, job_queue
from .models import ApiKey, App, Event, Message, MessageStatus, Template
from .otp.delivery import TooLate, call_provider, record_send, retry_delay
from .otp.events import record_message_event
from .otp.limits import app_daily_limit, consume
from .otp.phones import normalize_recipient
from .otp.receipts import replay_early_receipts
from .otp.service import QUEUE_OUTAGES, provider_for
from .providers import OutboundTemplate, ProviderError, get_provider
from .util import new_id, utcnow
from .webhooks.events import commit_and_queue

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
_MESSAGE_ID = re.compile(r"^msg_[0-9A-Za-z]{1,36}$")
ACTIVE = (MessageStatus.QUEUED, MessageStatus.SENT, MessageStatus.DELIVERED)


@dataclass
class MessageRequest:
    recipient: str
    template_id: str
    variables: dict[str, str] = field(default_factory=dict)
    expires_in: int = 300


def placeholders(body: str) -> list[str]:
    """The template's parameter names in the order they fill: {{1}}, {{2}}, ... (numeric first)."""
    names = list(dict.fromkeys(_PLACEHOLDER.findall(body)))
    return sorted(names, key=lambda n: (0, int(n)) if n.isdigit() else (1, n))


def render(body: str, variables: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: variables.get(m.group(1), m.group(0)), body)


def _template_for(req: MessageRequest) -> Template:
    template = db.session.get(Template, req.template_id) if len(req.template_id) <= 40 else None
    if template is None or template.status != "APPROVED":
        raise TemplateNotFound(details={"templateId": req.template_id})
    if template.category == "AUTHENTICATION":
        raise ValidationError("Authentication templates carry codes: send them with POST /v1/otp/send.",
                              details={"fields": {"templateId": "an AUTHENTICATION template"}})
    expected, given = set(placeholders(template.body)), set(req.variables)
    if expected != given:
        fields = {name: "missing" for name in sorted(expected - given)}
        fields.update({name: "not in the template" for name in sorted(given - expected)})
        raise ValidationError("The variables do not match the template's placeholders.",
                              details={"fields": {f"variables.{k}": v for k, v in fields.items()},
                                       "expected": placeholders(template.body)})
    return template


def send_message(app: App, api_key: ApiKey, req: MessageRequest) -> Message:
    recipient, country = normalize_recipient(req.recipient)
    allowed = app.allowed_country_set()
    if allowed and country not in allowed:
        raise CountryNotAllowed(details={"country": country, "allowed": sorted(allowed)})
    template = _template_for(req)
    now = utcnow()
    message = Message(id=new_id("msg"), app_id=app.id, api_key_id=api_key.id, mode=api_key.mode,
                      provider=provider_for(api_key), recipient=recipient, country=country,
                      template_id=template.id, language=template.language, variables=dict(req.variables),
                      status=MessageStatus.QUEUED, expires_at=now + timedelta(seconds=req.expires_in),
                      created_at=now)
    db.session.add(message)
    db.session.flush()
    record_message_event(message, "message.queued", at=now, status=MessageStatus.QUEUED)
    consume([app_daily_limit(app)])  # counted once the row is in; a refusal rolls it back
    commit_and_queue()
    try:
        job_queue().queue_message(message.id)
    except QUEUE_OUTAGES as exc:  # only an unreachable queue undoes the insert; other errors are 500s
        db.session.rollback()
        db.session.execute(Event.__table__.delete().where(Event.message_id == message.id))
        db.session.execute(Message.__table__.delete().where(Message.id == message.id))
        commit_and_queue()
        raise ServiceUnavailable("The queue is unavailable; the message was not created. Retry.") from exc
    return message


def get_message(app: App, message_id: str) -> Message:
    message = db.session.get(Message, message_id) if _MESSAGE_ID.match(message_id) else None
    if message is None or message.app_id != app.id:
        raise NotFound("No message with that id.", details={"id": message_id[:64]})
    return message


def deliver_message(message_id: str, try_number: int = 1) -> str:
    """The worker's half: render, send, record; retry within the message's lifetime."""
    message = db.session.get(Message, message_id)
    if message is None or message.status != MessageStatus.QUEUED:
        return "skipped"
    if message.expires_at <= utcnow():
        _finish(message, MessageStatus.EXPIRED, "expired_at", None)
        return "expired"
    template = db.session.get(Template, message.template_id)
    names = placeholders(template.body)
    outbound = OutboundTemplate(message_id=message.id, app_id=message.app_id, recipient=message.recipient,
                                template_name=template.name, language=template.language,
                                body=render(template.body, message.variables),
                                parameters=tuple(message.variables[n] for n in names))
    provider = get_provider(message.provider)
    started = time.monotonic()
    try:
        result = call_provider(provider, provider.send_template, outbound, expires_at=message.expires_at)
    except TooLate:
        _finish(message, MessageStatus.EXPIRED, "expired_at", None)
        return "expired"
    except ProviderError as exc:
        record_send(provider.name, started, message_id=message.id, error=exc)
        delay = retry_delay(exc, try_number)
        if delay is not None and (message.expires_at - utcnow()).total_seconds() > delay:
            commit_and_queue()
            job_queue().queue_message(message.id, try_number + 1, delay)
            return "retrying"
        _finish(message, MessageStatus.FAILED, "failed_at", str(exc))
        return "failed"
    record_send(provider.name, started, message_id=message.id, provider_message_id=result.provider_message_id)
    now = utcnow()
    moved = db.session.execute(
        update(Message).where(Message.id == message.id, Message.status == MessageStatus.QUEUED)
        .values(status=MessageStatus.SENT, sent_at=now, provider_message_id=result.provider_message_id)
        .execution_options(synchronize_session=False)).rowcount == 1
    if moved:
        record_message_event(message, "message.sent", at=now, status=MessageStatus.SENT, provider=provider.name)
    commit_and_queue()
    replay_early_receipts(provider.name, result.provider_message_id)  # receipts that beat this commit
    if moved:
        provider.after_sent(outbound, result)
    return "sent"


def _finish(message: Message, status: MessageStatus, column: str, error: str | None) -> None:
    now = utcnow()
    values = {"status": status, column: now}
    if error:
        values["error"] = error[:500]
    moved = db.session.execute(
        update(Message).where(Message.id == message.id, Message.status == MessageStatus.QUEUED).values(values)
        .execution_options(synchronize_session=False)).rowcount == 1
    if moved:
        extra = {"error": error[:500]} if error else {}
        record_message_event(message, f"message.{status.lower()}", at=now, status=status, **extra)
    commit_and_queue()


def expire_due_messages(limit: int = 500) -> int:
    """QUEUED messages past their expiry (their sends never went out) become EXPIRED."""
    due = db.session.scalars(select(Message).where(Message.status == MessageStatus.QUEUED,
                                                   Message.expires_at <= utcnow()).limit(limit)).all()
    for message in due:
        _finish(message, MessageStatus.EXPIRED, "expired_at", None)
    return len(due)

