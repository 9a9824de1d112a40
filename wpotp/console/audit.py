"""The audit log: every admin action in the console (and CLI), who, what, on what, from where."""

from __future__ import annotations

from flask import has_request_context, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from ..extensions import db
from ..models import AuditEntry

ANONYMOUS = "anonymous"


def audit(action: str, target: str | None = None, **details) -> AuditEntry:
    """Add an AuditEntry to the session for the signed-in user; the caller commits.

    `details` must never hold a secret (a password, an API key, a webhook secret)."""
    user = current_user if current_user and current_user.is_authenticated else None
    entry = AuditEntry(
        user_id=user.id if user else None,
        actor=user.email if user else ANONYMOUS,
        action=action,
        target=target,
        details=details,
        ip=(request.remote_addr or None) if has_request_context() else None,
    )
    db.session.add(entry)
    return entry


# How the audit page names actions and details (the stored entries keep the codes).
ACTION_LABELS = {
    "login": _l("Signed in"), "login_failed": _l("Failed sign-in"), "logout": _l("Signed out"),
    "key.create": _l("Created an API key"), "key.revoke": _l("Revoked an API key"),
    "user.create": _l("Added a user"), "user.role": _l("Changed a user's role"), "user.delete": _l("Deleted a user"),
    "settings.update": _l("Changed app settings"), "templates.sync": _l("Synced templates"),
    "webhook.set": _l("Set the webhook endpoint"), "webhook.rotate": _l("Rotated the webhook secret"),
    "webhook.redeliver": _l("Redelivered a webhook"), "fraud.settings": _l("Changed fraud guard settings"),
    "fraud.unblock": _l("Lifted a fraud block"), "sandbox.send": _l("Sent a test OTP"),
    "account.update": _l("Changed their language or time zone"), "templates.sms": _l("Changed the SMS texts"),
    "app.create": _l("Created an app"), "templates.seed": _l("Created the default templates"),
    "user.password": _l("Set a user's password"), "database.upgrade": _l("Upgraded the database"),
    "sweep": _l("Expired old OTPs"), "retention.purge": _l("Purged data past its retention"),
}
DETAIL_LABELS = {
    "name": _l("Name"), "mode": _l("Mode"), "app": _l("App"), "prefix": _l("Prefix"), "email": _l("Email"),
    "role": _l("Role"), "old": _l("Before"), "new": _l("After"), "generated_password": _l("Generated password"),
    "url": "URL", "events": _l("Events"), "new_secret": _l("New secret"), "ok": _l("Succeeded"),
    "error": _l("Error"), "delivery": _l("Delivery"), "previous": _l("Previous delivery"),
    "event_type": _l("Event"), "block": _l("Block"), "label": _l("Blocked"), "key": _l("Key"),
    "channel": _l("Channel"), "language": _l("Language"), "timezone": _l("Time zone"),
    "otp_length": _l("Code length"), "otp_ttl": _l("Code lifetime (seconds)"), "max_attempts": _l("Verify attempts"),
    "allowed_countries": _l("Allowed countries"), "api_rate_limit": _l("API rate limit"),
    "recipient_rate_limit": _l("Per-recipient limit"), "daily_send_cap": _l("Daily send cap"),
    "default_language": _l("Default language"), "fraud_guard": _l("Fraud guard"),
    "fetched": _l("Fetched"), "created": _l("Created"), "updated": _l("Updated"),
    "retention_days": _l("Keep data for (days)"), "fallback_after_seconds": _l("SMS fallback after (seconds)"),
    "otp_type": _l("Code button"), "android_package_name": _l("Android package name"),
    "android_signature_hash": _l("App signature hash"), "zero_tap_terms_accepted": _l("Zero-tap terms accepted"),
    "security_recommendation": _l("Security recommendation"), "languages": _l("Languages"),
    "segments": _l("Segments"), "host": _l("Host"), "os_user": _l("OS user (os_user)"),
}


def action_label(action: str) -> str:
    return str(ACTION_LABELS.get(action, action))


def _value(value) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return _("yes") if value else _("no")
    if isinstance(value, list):
        return ", ".join(_value(v) for v in value) or "—"
    if isinstance(value, dict):
        return "; ".join(f"{_label(k)}: {_value(v)}" for k, v in value.items())
    return str(value)


def _label(key: str) -> str:
    return str(DETAIL_LABELS.get(key, key.replace("_", " ")))


def readable_details(details: dict | None) -> list[tuple[str, str]]:
    """An entry's details as (label, text) lines, never JSON: a setting change reads
    "Code length = 6 → 8", a list "a, b", a flag "yes"."""
    lines = []
    for key, value in (details or {}).items():
        if key == "changes" and isinstance(value, dict):
            for name, change in value.items():
                if isinstance(change, list) and len(change) == 2:
                    lines.append((_label(name), f"{_value(change[0])} → {_value(change[1])}"))
                else:
                    lines.append((_label(name), _value(change)))
        else:
            lines.append((_label(key), _value(value)))
    return lines
