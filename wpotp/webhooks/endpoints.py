"""Setting an app's webhook endpoint and rotating its signing secret: shared by the CLI
(`wpotp set-webhook`) and the console. The caller commits, then calls `wpotp.cache.bump_epoch()`
(the endpoint is cached in every process); a new secret is returned once."""

from __future__ import annotations

from flask import current_app
from sqlalchemy import select

from ..extensions import db
from ..models import App, WebhookEndpoint
from ..util import utcnow
from .events import DEFAULT_EVENTS, PUBLIC_EVENTS
from .guard import check_url
from .signing import new_secret, seal_secret


def parse_events(wanted: list[str]) -> list[str]:
    """The events asked for, in SPEC order; none means SPEC §6's (DEFAULT_EVENTS: all but the opt-in
    otp.fallback). ValueError on an unknown one."""
    names = [e.strip() for e in wanted if e.strip()] or list(DEFAULT_EVENTS)
    unknown = sorted(set(names) - set(PUBLIC_EVENTS))
    if unknown:
        raise ValueError(f"unknown events: {', '.join(unknown)}; known: {', '.join(PUBLIC_EVENTS)}")
    return [e for e in PUBLIC_EVENTS if e in names]


def find_endpoint(app: App) -> WebhookEndpoint | None:
    return db.session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.app_id == app.id)).first()


def configure_endpoint(app: App, url: str, events: list[str], allow_private: bool,
                       rotate: bool = True) -> tuple[WebhookEndpoint, str | None]:
    """Point the app's webhooks at `url` for `events`. A new endpoint always gets a secret;
    an existing one keeps its secret unless `rotate`. Raises ValueError (UnsafeUrl is one).
    Loopback follows the app's WEBHOOK_ALLOW_LOOPBACK (development), whatever `allow_private`."""
    chosen = parse_events(events)
    check_url(url, allow_private, current_app.config["WEBHOOK_ALLOW_LOOPBACK"])
    endpoint = find_endpoint(app)
    if endpoint is None:
        endpoint = WebhookEndpoint(app_id=app.id)
        db.session.add(endpoint)
        rotate = True
    endpoint.url, endpoint.events = url, chosen
    return endpoint, rotate_secret(endpoint) if rotate else None


def rotate_secret(endpoint: WebhookEndpoint) -> str:
    """A fresh signing secret; the old one stops signing as soon as the caller commits."""
    secret = new_secret()
    endpoint.secret_sealed, endpoint.secret_prefix = seal_secret(secret), secret[:10]
    endpoint.secret_rotated_at = utcnow()
    return secret
