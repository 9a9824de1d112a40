"""The audit log: every admin action in the console (and CLI), who, what, on what, from where."""

from __future__ import annotations

from flask import has_request_context, request
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
