"""The tables. Times are naive UTC (`wpotp.util.utcnow`); ids are prefixed random strings."""

from __future__ import annotations

import enum
from datetime import datetime

from flask import current_app
from flask_login import UserMixin
from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text, false, text, true
from sqlalchemy.orm import Mapped, mapped_column
from werkzeug.security import check_password_hash, generate_password_hash

from .extensions import db
from .util import new_id, utcnow


class OtpStatus(enum.StrEnum):
    QUEUED = "QUEUED"
    SENT = "SENT"
    DELIVERED = "DELIVERED"
    READ = "READ"
    VERIFIED = "VERIFIED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"
    CANCELED = "CANCELED"


# Statuses in which an OTP can still be verified, resent or canceled.
ACTIVE_STATUSES = (OtpStatus.QUEUED, OtpStatus.SENT, OtpStatus.DELIVERED, OtpStatus.READ)
TERMINAL_STATUSES = (OtpStatus.VERIFIED, OtpStatus.FAILED, OtpStatus.EXPIRED, OtpStatus.CANCELED)
_ACTIVE_SQL = "status IN ('QUEUED','SENT','DELIVERED','READ')"


class App(db.Model):
    """An integrating application: owns keys, OTPs and its own OTP settings and limits."""

    __tablename__ = "apps"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("app"))
    name: Mapped[str] = mapped_column(String(100), unique=True)
    otp_length: Mapped[int] = mapped_column(Integer, default=6)
    otp_ttl: Mapped[int] = mapped_column(Integer, default=300)
    max_attempts: Mapped[int] = mapped_column(Integer, default=5)
    # Comma-separated ISO 3166 regions; empty means every country.
    allowed_countries: Mapped[str] = mapped_column(String(1000), default="")
    # Overrides of the global settings; NULL means "use the setting".
    api_rate_limit: Mapped[str | None] = mapped_column(String(100))
    recipient_rate_limit: Mapped[str | None] = mapped_column(String(100))
    daily_send_cap: Mapped[int | None] = mapped_column(Integer)
    default_language: Mapped[str] = mapped_column(String(16), default="en")
    # The fraud guard (wpotp/otp/fraud.py, docs/fraud.md). Geo permissions per channel: comma-separated
    # ISO regions, empty = no list. The rest override the FRAUD_* settings; NULL means "use the setting".
    fraud_allow_whatsapp: Mapped[str] = mapped_column(String(1000), default="", server_default="")
    fraud_deny_whatsapp: Mapped[str] = mapped_column(String(1000), default="", server_default="")
    fraud_allow_sms: Mapped[str] = mapped_column(String(1000), default="", server_default="")
    fraud_deny_sms: Mapped[str] = mapped_column(String(1000), default="", server_default="")
    fraud_guard: Mapped[bool | None] = mapped_column(Boolean)
    fraud_country_limit: Mapped[str | None] = mapped_column(String(100))
    fraud_prefix_limit: Mapped[str | None] = mapped_column(String(100))
    fraud_unverified_prefix: Mapped[int | None] = mapped_column(Integer)
    fraud_unverified_country: Mapped[int | None] = mapped_column(Integer)
    fraud_block_seconds: Mapped[int | None] = mapped_column(Integer)
    # The WhatsApp authentication template's button (wpotp/otp/auth_templates.py, docs/channels.md
    # "Autofill buttons"): COPY_CODE, ONE_TAP or ZERO_TAP; the Android app that one-tap and zero-tap
    # hand the code to (package name, 11-character signature hash); whether the business accepted
    # Meta's zero-tap terms; and the body's "For your security, do not share this code."
    otp_type: Mapped[str] = mapped_column(String(16), default="COPY_CODE", server_default="COPY_CODE")
    android_package_name: Mapped[str] = mapped_column(String(224), default="", server_default="")
    android_signature_hash: Mapped[str] = mapped_column(String(11), default="", server_default="")
    zero_tap_terms_accepted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    security_recommendation: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # Channel `auto` (docs/channels.md): seconds without a delivery receipt before the SMS fallback;
    # NULL uses FALLBACK_AFTER_SECONDS, 0 turns the no-receipt fallback off.
    fallback_after_seconds: Mapped[int | None] = mapped_column(Integer)
    # The app's own SMS texts by language ({"en": "{code} is your {app} code"}); NULL or a missing
    # language uses the built-in text (wpotp/otp/sms_text.py).
    sms_texts: Mapped[dict | None] = mapped_column(JSON)
    # Days after which OTP recipients are anonymised and old events deleted (wpotp/otp/retention.py);
    # NULL means RETENTION_DAYS.
    retention_days: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    def allowed_country_set(self) -> set[str]:
        return {c.strip().upper() for c in self.allowed_countries.split(",") if c.strip()}


class ApiKey(db.Model):
    """A key's secret is kept only as a keyed hash; `prefix` is what staff see."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("key"))
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    mode: Mapped[str] = mapped_column(String(8))  # "test" or "live"
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(24))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)


class Template(db.Model):
    """A WhatsApp message template. `{{1}}` in the body is where the code goes."""

    __tablename__ = "templates"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("tpl"))
    name: Mapped[str] = mapped_column(String(512))
    language: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(32), default="AUTHENTICATION")
    body: Mapped[str] = mapped_column(Text)
    copy_code_button: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(32), default="APPROVED")
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    __table_args__ = (Index("ix_templates_name_language", "name", "language", unique=True),)


class Otp(db.Model):
    """One verification. The code exists here only as `code_hash` (HMAC of id + code), and the codes
    resends replaced only as `superseded_code_hashes` (the same HMAC)."""

    __tablename__ = "otps"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("otp"))
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id"))
    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    mode: Mapped[str] = mapped_column(String(8))
    provider: Mapped[str] = mapped_column(String(16))
    # The channel of the last send: "whatsapp" or "sms" (SPEC §12; `auto` is stored as the one it used).
    channel: Mapped[str] = mapped_column(String(8), default="whatsapp", server_default="whatsapp")
    # The SMS fallback of channel `auto` (wpotp/otp/fallback.py): NULL none asked for, "armed" on
    # WhatsApp and may still fall back, "done" fell back to SMS (at most once), "refused" the fraud
    # guard refused the SMS (the OTP failed).
    fallback: Mapped[str | None] = mapped_column(String(8))
    recipient: Mapped[str] = mapped_column(String(32))
    country: Mapped[str | None] = mapped_column(String(2))
    reference: Mapped[str | None] = mapped_column(String(128))
    # Free text appended to the message where the provider can carry it (Wawp's `footer`).
    footer: Mapped[str | None] = mapped_column(String(200))
    template_id: Mapped[str] = mapped_column(ForeignKey("templates.id"))
    language: Mapped[str] = mapped_column(String(16))
    code_hash: Mapped[str] = mapped_column(String(64))
    # The keyed hashes (like code_hash) of the codes resends replaced, oldest first, space-separated:
    # such a code answers OTP_CANCELED ("replaced by a resend") and spends no attempt. NULL: none.
    superseded_code_hashes: Mapped[str | None] = mapped_column(Text)
    code_length: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=OtpStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    # 1 for the first send, +1 for each resend; a job or receipt for an older generation changes nothing.
    generation: Mapped[int] = mapped_column(Integer, default=1)
    ttl_seconds: Mapped[int] = mapped_column(Integer)
    provider_message_id: Mapped[str | None] = mapped_column(String(128), index=True)
    error: Mapped[str | None] = mapped_column(String(500))
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_sent_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime)
    read_at: Mapped[datetime | None] = mapped_column(DateTime)
    verified_at: Mapped[datetime | None] = mapped_column(DateTime)
    failed_at: Mapped[datetime | None] = mapped_column(DateTime)
    canceled_at: Mapped[datetime | None] = mapped_column(DateTime)
    expired_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Set by retention (wpotp/otp/retention.py): the number is gone (`recipient` is ""), and only
    # its keyed hash (`recipient_hash`, HMAC under OTP_HASH_KEY, like API keys) and `country` remain.
    anonymised_at: Mapped[datetime | None] = mapped_column(DateTime)
    recipient_hash: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        # Listing and keyset paging per app, newest first.
        Index("ix_otps_app_created", "app_id", "created_at", "id"),
        Index("ix_otps_app_recipient", "app_id", "recipient"),
        # The sweeper's scans.
        Index("ix_otps_status_expires", "status", "expires_at"),
        Index("ix_otps_fallback_sent", "fallback", "last_sent_at"),
        # A reference is unique per app among active OTPs (SPEC §4): enforced by the database.
        Index(
            "uq_otps_app_reference_active",
            "app_id",
            "reference",
            unique=True,
            sqlite_where=text(f"reference IS NOT NULL AND {_ACTIVE_SQL}"),
            postgresql_where=text(f"reference IS NOT NULL AND {_ACTIVE_SQL}"),
        ),
        Index("ix_otps_app_reference", "app_id", "reference"),
    )

    @property
    def attempts_remaining(self) -> int:
        return max(0, self.max_attempts - self.attempts)


class VerifyAttempt(db.Model):
    """Every call to verify, whatever its outcome."""

    __tablename__ = "verify_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    otp_id: Mapped[str] = mapped_column(ForeignKey("otps.id"), index=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id"))
    result: Mapped[str] = mapped_column(String(32))
    ip: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    __table_args__ = (Index("ix_verify_attempts_app_created", "app_id", "created_at"),)


class SendAttempt(db.Model):
    """Every call to a provider: which message, how long it took, and what went wrong."""

    __tablename__ = "send_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    otp_id: Mapped[str | None] = mapped_column(ForeignKey("otps.id"), index=True)
    message_id: Mapped[str | None] = mapped_column(ForeignKey("messages.id"), index=True)
    generation: Mapped[int] = mapped_column(Integer)
    provider: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(8), default="whatsapp", server_default="whatsapp")
    ok: Mapped[bool] = mapped_column(Boolean)
    provider_message_id: Mapped[str | None] = mapped_column(String(128), index=True)
    permanent: Mapped[bool | None] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(String(500))
    latency_ms: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class MessageStatus(enum.StrEnum):
    QUEUED = "QUEUED"
    SENT = "SENT"
    DELIVERED = "DELIVERED"
    READ = "READ"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"


class Message(db.Model):
    """A non-OTP template message (POST /v1/messages). Its variables are not secrets."""

    __tablename__ = "messages"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("msg"))
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id"))
    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    mode: Mapped[str] = mapped_column(String(8))
    provider: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str] = mapped_column(String(32))
    country: Mapped[str | None] = mapped_column(String(2))
    template_id: Mapped[str] = mapped_column(ForeignKey("templates.id"))
    language: Mapped[str] = mapped_column(String(16))
    variables: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=MessageStatus.QUEUED)
    provider_message_id: Mapped[str | None] = mapped_column(String(128), index=True)
    error: Mapped[str | None] = mapped_column(String(500))
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime)
    read_at: Mapped[datetime | None] = mapped_column(DateTime)
    failed_at: Mapped[datetime | None] = mapped_column(DateTime)
    expired_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Set by retention: `recipient` is "" and `variables` are emptied.
    anonymised_at: Mapped[datetime | None] = mapped_column(DateTime)

    __table_args__ = (
        Index("ix_messages_app_created", "app_id", "created_at", "id"),
        Index("ix_messages_status_expires", "status", "expires_at"),
    )


class Event(db.Model):
    """Append-only: one row per status change or receipt. Never holds a code."""

    __tablename__ = "events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("evt"))
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id"))
    otp_id: Mapped[str | None] = mapped_column(ForeignKey("otps.id"), index=True)
    message_id: Mapped[str | None] = mapped_column(ForeignKey("messages.id"), index=True)
    type: Mapped[str] = mapped_column(String(40))
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    __table_args__ = (Index("ix_events_app_created", "app_id", "created_at", "id"),)


class ReportRollup(db.Model):
    """OTP counts of one app in one UTC hour (`span` "hour") or whole UTC day (`span` "day", `hour` its
    midnight: the sums of its hours), per channel, status and country ("" = unknown), kept by the sweep
    (wpotp/reports/rollups.py): the reports read these for hours the rollup has reached."""

    __tablename__ = "report_rollups"

    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id"), primary_key=True)
    span: Mapped[str] = mapped_column(String(4), primary_key=True)
    hour: Mapped[datetime] = mapped_column(DateTime, primary_key=True)
    channel: Mapped[str] = mapped_column(String(8), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    country: Mapped[str] = mapped_column(String(2), primary_key=True)
    n: Mapped[int] = mapped_column(Integer)
    sent: Mapped[int] = mapped_column(Integer)
    delivered: Mapped[int] = mapped_column(Integer)


class ReportRollupDurations(db.Model):
    """The verified OTPs' milliseconds to verify of one app, channel and UTC hour (`span` "hour") or
    whole UTC day (`span` "day", `hour` its midnight: the day's hours merged, so a report by UTC day
    takes one run a day): sorted 32-bit ints, so a report's median over any range of hours is exact."""

    __tablename__ = "report_rollup_durations"

    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id"), primary_key=True)
    span: Mapped[str] = mapped_column(String(4), primary_key=True)
    hour: Mapped[datetime] = mapped_column(DateTime, primary_key=True)
    channel: Mapped[str] = mapped_column(String(8), primary_key=True)
    millis: Mapped[bytes] = mapped_column(LargeBinary)


class ReportRollupState(db.Model):
    """One row (id 1): every hour before `rolled_until` is rolled up for every app; `rechecked_at` is
    when the recent rolled hours were last rolled again (for receipts that land late)."""

    __tablename__ = "report_rollup_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rolled_until: Mapped[datetime | None] = mapped_column(DateTime)
    rechecked_at: Mapped[datetime | None] = mapped_column(DateTime)


def password_hash_method() -> str:
    """The configured Werkzeug method for new password hashes."""
    return current_app.config.get("PASSWORD_HASH_METHOD", "scrypt")


class User(UserMixin, db.Model):
    """A console user. Passwords are stored as Werkzeug's salted hashes, by PASSWORD_HASH_METHOD
    (scrypt unless set); each hash names its method, so older ones still check."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("usr"))
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))  # "admin" or "viewer"
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # The console's language ("en", "tr") and IANA time zone for this user; NULL: from the
    # browser / CONSOLE_LANGUAGE, and CONSOLE_TIMEZONE (wpotp/i18n.py).
    language: Mapped[str | None] = mapped_column(String(8), nullable=True)
    timezone: Mapped[str | None] = mapped_column(String(64), nullable=True)

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password, method=password_hash_method())

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)


class WebhookEndpoint(db.Model):
    """An app's webhook endpoint. The signing secret is stored encrypted (it must be usable to sign)."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("whe"))
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id"), unique=True)
    url: Mapped[str] = mapped_column(String(2048))
    secret_sealed: Mapped[str] = mapped_column(Text)
    secret_prefix: Mapped[str] = mapped_column(String(16))
    events: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    secret_rotated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class WebhookDelivery(db.Model):
    """One event owed to one endpoint: written with the event (an outbox), retried until done."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("whd"))
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id"))
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id"), index=True)
    event_type: Mapped[str] = mapped_column(String(40))
    url: Mapped[str] = mapped_column(String(2048))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending, succeeded, given_up
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime)

    __table_args__ = (
        Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_app_created", "app_id", "created_at"),
    )


class WebhookAttempt(db.Model):
    """Every POST to an endpoint: when, what came back, how long it took, when the next try is."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer)
    response_excerpt: Mapped[str | None] = mapped_column(String(300))
    error: Mapped[str | None] = mapped_column(String(300))
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime)


class AuditEntry(db.Model):
    """Every admin action in the console or CLI: who, what, on what, from where."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    actor: Mapped[str] = mapped_column(String(254))  # the user's email, or "cli" (details.os_user: who)
    action: Mapped[str] = mapped_column(String(64))  # e.g. "key.create", "webhook.rotate"
    target: Mapped[str | None] = mapped_column(String(64))  # an id: key_..., app_..., usr_...
    details: Mapped[dict] = mapped_column(JSON, default=dict)  # never a secret
    ip: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)

    @property
    def actor_label(self) -> str:
        """Who, as the audit page shows it: the email, or `cli:<os user>` for a CLI action."""
        who = (self.details or {}).get("os_user") if self.actor == "cli" else None
        return f"cli:{who}" if who else self.actor
