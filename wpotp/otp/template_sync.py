"""Pull the WhatsApp Business account's message templates into the templates table.

The Graph API client (`GET /{waba-id}/message_templates`, paging, Meta's template objects) is
wpotp.providers.cloud_api.list_templates; this module decides what to upsert. Rows are matched by
(name, language) and updated in place; a local template Meta no longer lists is marked
NOT_IN_WABA, never deleted (OTP rows reference it). Afterwards every language with an
APPROVED AUTHENTICATION template has exactly one default among them.
"""

from __future__ import annotations

import click
from flask import current_app
from sqlalchemy import select

from ..cache import bump_epoch
from ..extensions import db
from ..models import Template
from ..providers.base import ProviderError
from ..providers.cloud_api import WabaTemplate, list_templates

NOT_IN_WABA = "NOT_IN_WABA"


class TemplateSyncError(click.ClickException):
    """Meta refused or could not be reached; the message says why (never the token)."""


def sync_problems(cfg) -> list[str]:
    """What stops a sync, each naming its setting; empty when WABA id, token and Graph URL are usable."""
    from config import provider_problems

    needed = ("WHATSAPP_TOKEN", "WHATSAPP_GRAPH_URL", "WHATSAPP_API_VERSION")  # not the phone id or webhook ones
    problems = [p for p in provider_problems(cfg, "cloud_api") if p.startswith(needed)]
    if not cfg["WHATSAPP_WABA_ID"]:
        problems.insert(0, "WHATSAPP_WABA_ID is not set")
    return problems


def sync_templates() -> dict[str, int]:
    """Fetch every template of WHATSAPP_WABA_ID and upsert it. Returns counts for the CLI:
    fetched, created, updated (rows that changed) and missing (local rows the WABA lacks)."""
    try:
        remote = [template_fields(t) for t in list_templates(current_app.config["WHATSAPP_WABA_ID"])]
    except ProviderError as exc:
        raise TemplateSyncError(f"could not fetch the templates from Meta: {exc}") from None
    counts = {"fetched": len(remote), "created": 0, "updated": 0, "missing": 0}
    existing = {(t.name, t.language): t for t in db.session.scalars(select(Template))}
    rows = dict(existing)
    for item in remote:
        key = (item["name"], item["language"])
        if key not in rows:
            rows[key] = Template(is_default=False, **item)
            db.session.add(rows[key])
            counts["created"] += 1
        elif update_fields(rows[key], item) and key in existing:
            counts["updated"] += 1
    listed = {(item["name"], item["language"]) for item in remote}
    for key, template in existing.items():
        if key not in listed:
            counts["missing"] += 1
            template.status = NOT_IN_WABA
    db.session.flush()
    ensure_defaults()
    db.session.commit()
    bump_epoch()  # every process sends with the synced templates from its next request
    return counts


def template_fields(remote: WabaTemplate) -> dict:
    """The account's template as Template fields, each cut to its column."""
    return {"name": remote.name[:512], "language": remote.language[:16], "category": remote.category[:32],
            "status": remote.status[:32], "body": remote.body, "copy_code_button": remote.copy_code_button}


def update_fields(template: Template, item: dict) -> bool:
    """Copy Meta's fields onto an existing row; True when something changed."""
    changed = False
    for field, value in item.items():
        if getattr(template, field) != value:
            setattr(template, field, value)
            changed = True
    return changed


def ensure_defaults() -> None:
    """One default per language among its APPROVED AUTHENTICATION templates.

    A default that is still approved stays; otherwise the first by name takes over. Rows that
    cannot be used for an OTP (not approved, not AUTHENTICATION) are never the default.
    """
    rows = db.session.scalars(select(Template).order_by(Template.language, Template.name)).all()
    usable: dict[str, list[Template]] = {}
    for row in rows:
        if row.status == "APPROVED" and row.category == "AUTHENTICATION":
            usable.setdefault(row.language, []).append(row)
        else:
            row.is_default = False
    for candidates in usable.values():
        keep = next((t for t in candidates if t.is_default), candidates[0])
        for template in candidates:
            template.is_default = template is keep
