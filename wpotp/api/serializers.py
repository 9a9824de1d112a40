"""How objects look in /v1 answers: camelCase, ISO-8601 UTC with milliseconds. Never a code."""

from __future__ import annotations

from sqlalchemy import select

from ..extensions import db
from ..models import Event, Message, Otp, Template, VerifyAttempt
from ..otp.store import OtpView
from ..util import iso


def otp_summary(otp: Otp | OtpView) -> dict:
    return {
        "id": otp.id,
        "status": otp.status,
        "recipient": otp.recipient if otp.anonymised_at is None else None,
        "reference": otp.reference,
        "templateId": otp.template_id,
        "channel": otp.channel or "whatsapp",
        "expiresAt": iso(otp.expires_at),
        "createdAt": iso(otp.created_at),
    }


def otp_detail(otp: Otp | OtpView, with_timeline: bool = True) -> dict:
    data = otp_summary(otp)
    data.update({
        "language": otp.language,
        "mode": otp.mode,
        "attempts": otp.attempts,
        "attemptsRemaining": otp.attempts_remaining,
        "maxAttempts": otp.max_attempts,
        "resends": otp.generation - 1,
        "sentAt": iso(otp.sent_at),
        "deliveredAt": iso(otp.delivered_at),
        "readAt": iso(otp.read_at),
        "verifiedAt": iso(otp.verified_at),
        "failedAt": iso(otp.failed_at),
        "canceledAt": iso(otp.canceled_at),
        "expiredAt": iso(otp.expired_at),
        "error": otp.error,
        "anonymisedAt": iso(otp.anonymised_at),
    })
    if with_timeline:
        # An OtpView read with its events (wpotp.otp.store.read_otp) carries them: no second query.
        events = getattr(otp, "timeline", None)
        data["timeline"] = ([event_item(e) for e in events] if events is not None
                            else timeline(Event.otp_id == otp.id))
        with_channels(data["timeline"])
    return data


def with_channels(entries: list[dict]) -> list[dict]:
    """Each entry names its channel: the one its event recorded (queued, resent, sent), else
    that of the send before it (receipts, failures, verification), WhatsApp before any."""
    channel = "whatsapp"
    for entry in entries:
        channel = entry["channel"] = entry.get("channel") or channel
    return entries


def timeline(condition) -> list[dict]:
    """The events matching `condition` (one OTP's or one message's), oldest first."""
    events = db.session.scalars(select(Event).where(condition).order_by(Event.created_at, Event.id)).all()
    return [event_item(e) for e in events]


def event_item(event: Event) -> dict:
    return {"id": event.id, "type": event.type, "status": event.data.get("status"),
            "channel": event.data.get("channel"), "createdAt": iso(event.created_at),
            **({"error": event.data["error"]} if "error" in event.data else {}),
            **({"reason": event.data.get("reason")} if event.type == "otp.fallback" else {})}


def attempt_item(attempt: VerifyAttempt) -> dict:
    return {"createdAt": iso(attempt.created_at), "result": attempt.result, "ip": attempt.ip}


def template_item(template: Template) -> dict:
    return {
        "id": template.id,
        "name": template.name,
        "language": template.language,
        "category": template.category,
        "status": template.status,
        "body": template.body,
        "copyCodeButton": template.copy_code_button,
        "isDefault": template.is_default,
    }


def message_detail(message: Message, with_timeline: bool = True) -> dict:
    data = {
        "id": message.id,
        "status": message.status,
        "recipient": message.recipient if message.anonymised_at is None else None,
        "templateId": message.template_id,
        "language": message.language,
        "variables": message.variables,
        "mode": message.mode,
        "expiresAt": iso(message.expires_at),
        "createdAt": iso(message.created_at),
        "sentAt": iso(message.sent_at),
        "deliveredAt": iso(message.delivered_at),
        "readAt": iso(message.read_at),
        "failedAt": iso(message.failed_at),
        "expiredAt": iso(message.expired_at),
        "error": message.error,
    }
    if with_timeline:
        data["anonymisedAt"] = iso(message.anonymised_at)
        data["timeline"] = with_channels(timeline(Event.message_id == message.id))  # messages: WhatsApp only
    return data
