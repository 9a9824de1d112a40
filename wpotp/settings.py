"""The services' settings as one plain, frozen object, built from app.config once by create_app.

otp/service.py, otp/delivery.py, otp/maintenance.py, otp/receipts.py and otp/limits.py read `settings()` instead of
`current_app.config[...]` on their hot paths: one attribute read instead of a dict lookup per
setting, and one place that says which settings the services depend on. The config stays the
source (config.py, the environment); a change to `app.config` after create_app reaches the
services only through `refresh_settings(app)` (tests that switch a setting mid-test call it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from flask import Flask, current_app

EXTENSION = "wpotp.settings"


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    provider: str  # WPOTP_PROVIDER: where live keys' sends go
    recipient_rate_limit: str  # RECIPIENT_RATE_LIMIT, an app's own limit wins
    app_daily_send_cap: int  # APP_DAILY_SEND_CAP, an app's own cap wins
    send_retry_delays: tuple[int, ...]  # SEND_RETRY_DELAYS
    resend_max: int  # RESEND_MAX
    resend_interval: int  # RESEND_INTERVAL
    stuck_queued_after: int  # STUCK_QUEUED_AFTER
    send_batch: int  # SEND_BATCH (0: one RQ job per send)
    receipt_batch: int  # RECEIPT_BATCH (0: receipts applied in the webhook request)
    provider_timeout: int  # PROVIDER_TIMEOUT
    fraud_guard: bool  # FRAUD_GUARD, an app's own switch wins
    fraud_country_limit: str  # FRAUD_COUNTRY_LIMIT, an app's own wins
    fraud_prefix_limit: str  # FRAUD_PREFIX_LIMIT, an app's own wins
    fraud_prefix_digits: int  # FRAUD_PREFIX_DIGITS
    fraud_unverified_prefix: int  # FRAUD_UNVERIFIED_PREFIX, an app's own wins
    fraud_unverified_country: int  # FRAUD_UNVERIFIED_COUNTRY, an app's own wins
    fraud_conversion_window: int  # FRAUD_CONVERSION_WINDOW
    fraud_block_seconds: int  # FRAUD_BLOCK_SECONDS, an app's own wins
    sms_provider: str = "sandbox"  # SMS_PROVIDER: where live keys' channel-sms sends go
    fallback_after: int = 30  # FALLBACK_AFTER_SECONDS, an app's own wins
    redis_min_replicas: int = 0  # REDIS_MIN_REPLICAS: replicas that must hold a send's hand-off before its 201
    redis_replica_timeout: int = 500  # REDIS_REPLICA_TIMEOUT: milliseconds they have to take it
    retention_interval: int = 3600  # RETENTION_INTERVAL: seconds between the periodic retention jobs
    drain_linger_ms: int = 0  # DRAIN_LINGER_MS: how long an idle drain job waits for more before it ends

    @classmethod
    def from_config(cls, config: Mapping) -> ServiceSettings:
        return cls(provider=config["WPOTP_PROVIDER"], recipient_rate_limit=config["RECIPIENT_RATE_LIMIT"],
                   app_daily_send_cap=int(config["APP_DAILY_SEND_CAP"]),
                   send_retry_delays=tuple(int(d) for d in config["SEND_RETRY_DELAYS"]),
                   resend_max=int(config["RESEND_MAX"]), resend_interval=int(config["RESEND_INTERVAL"]),
                   stuck_queued_after=int(config["STUCK_QUEUED_AFTER"]), send_batch=int(config["SEND_BATCH"]),
                   receipt_batch=int(config["RECEIPT_BATCH"]),
                   provider_timeout=int(config["PROVIDER_TIMEOUT"]),
                   fraud_guard=bool(config["FRAUD_GUARD"]), fraud_country_limit=config["FRAUD_COUNTRY_LIMIT"],
                   fraud_prefix_limit=config["FRAUD_PREFIX_LIMIT"],
                   fraud_prefix_digits=int(config["FRAUD_PREFIX_DIGITS"]),
                   fraud_unverified_prefix=int(config["FRAUD_UNVERIFIED_PREFIX"]),
                   fraud_unverified_country=int(config["FRAUD_UNVERIFIED_COUNTRY"]),
                   fraud_conversion_window=int(config["FRAUD_CONVERSION_WINDOW"]),
                   fraud_block_seconds=int(config["FRAUD_BLOCK_SECONDS"]),
                   sms_provider=config.get("SMS_PROVIDER", "sandbox"),
                   fallback_after=int(config.get("FALLBACK_AFTER_SECONDS", 30)),
                   redis_min_replicas=int(config.get("REDIS_MIN_REPLICAS", 0)),
                   redis_replica_timeout=int(config.get("REDIS_REPLICA_TIMEOUT", 500)),
                   retention_interval=int(config.get("RETENTION_INTERVAL", 3600)),
                   drain_linger_ms=int(config.get("DRAIN_LINGER_MS", 0)))


def refresh_settings(app: Flask) -> ServiceSettings:
    """(Re)build the app's service settings from its config (create_app calls it once)."""
    built = app.extensions[EXTENSION] = ServiceSettings.from_config(app.config)
    return built


def settings() -> ServiceSettings:
    """The current app's service settings."""
    return current_app.extensions[EXTENSION]
