"""Pull the WhatsApp Business account's message templates into the templates table.

The Graph API client (`GET /{waba-id}/message_templates`, paging, Meta's template objects) is
wpotp.providers.cloud_api.list_templates; this module decides what to upsert. Rows are matched by
(name, language) and updated in place; a local template Meta no longer lists is marked
NOT_IN_WABA, never deleted (OTP rows reference it). Afterwards every language with an
APPROVED AUTHENTICATION template has exactly one default among them.

`--create`, `--update` and `--check` (create_auth_templates, update_auth_templates,
check_auth_templates) go the other way: they create the app's authentication template at Meta
with the options of wpotp/otp/auth_templates.py (button type and Android apps, security
recommendation, expiry and time-to-live from the OTP lifetime), edit it where it has drifted,
and report where Meta's template differs from the app's settings.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field as dataclass_field

import click
from flask import current_app
from sqlalchemy import select

from ..cache import bump_epoch
from ..extensions import db
from ..models import App, Template
from ..providers.base import ProviderError
from ..providers.cloud_api import WabaTemplate, create_template, edit_template, list_templates
from .auth_templates import (
    AuthTemplateOptions,
    button_problems,
    creation_payload,
    drift,
    edit_payload,
    options_for,
    unchecked,
)

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


# --- creating and checking the app's authentication template (`--create`, `--check`) -------------

DEFAULT_TEMPLATE_NAME = "wpotp_verification"
TEMPLATE_NAME = re.compile(r"^[a-z0-9_]{1,512}$")  # Meta: lower case letters, digits and underscores


@dataclass
class TemplateReport:
    """One language of the app's authentication template, after --create or --check."""

    language: str
    state: str  # "created", "exists", "updated", "unchanged", "ok", "drift", "missing"
    status: str = ""  # Meta's status (APPROVED, PENDING, ...) where known
    problems: list[str] = dataclass_field(default_factory=list)
    notes: list[str] = dataclass_field(default_factory=list)  # what could not be checked

    def line(self, name: str) -> str:
        head = f"{self.state} {name}/{self.language}" + (f" ({self.status})" if self.status else "")
        return head + "".join(f"\n  - {p}" for p in self.problems) + "".join(f"\n  ? {n}" for n in self.notes)


def template_languages(name: str, languages: tuple[str, ...], app: App) -> list[str]:
    """The languages asked for; else those of the local AUTHENTICATION templates of that name; else the
    app's default language."""
    if languages:
        return list(dict.fromkeys(languages))
    local = db.session.scalars(select(Template.language).where(Template.name == name,
                                                               Template.category == "AUTHENTICATION")
                               .order_by(Template.language)).all()
    return list(dict.fromkeys(local)) or [app.default_language]


def check_settings(app: App, name: str) -> AuthTemplateOptions:
    """The app's options, or a TemplateSyncError naming what stops them reaching Meta."""
    if not TEMPLATE_NAME.match(name):
        raise TemplateSyncError(f"template name {name!r}: Meta takes lower case letters, digits and underscores")
    problems = button_problems(app.otp_type, app.android_package_name, app.android_signature_hash,
                               app.zero_tap_terms_accepted)
    if problems:
        raise TemplateSyncError(f"app {app.name!r}: " + " ".join(problems.values()))
    return options_for(app)


def create_auth_templates(app: App, name: str, languages: list[str]) -> Iterator[TemplateReport]:
    """Create the app's authentication template in each language the WABA lacks it in, reporting
    each as it goes (so a refusal half-way still shows what was created). A language that has it
    already is left alone (its drift, if any, is what --check reports)."""
    options = check_settings(app, name)
    waba_id = current_app.config["WHATSAPP_WABA_ID"]
    remote = _remote_by_language(name)
    for language in languages:
        if language in remote:
            yield TemplateReport(language, "exists", remote[language].status)
            continue
        try:
            answer = create_template(waba_id, creation_payload(name, language, options))
        except ProviderError as exc:
            raise TemplateSyncError(f"Meta refused {name}/{language}: {exc}") from None
        yield TemplateReport(language, "created", str(answer.get("status") or "PENDING").upper())


def update_auth_templates(app: App, name: str, languages: list[str]) -> Iterator[TemplateReport]:
    """Edit Meta's template in each language where it has drifted from the app's settings (button,
    security recommendation, expiry, time-to-live). A language Meta lacks is left to --create."""
    options = check_settings(app, name)
    remote = _remote_by_language(name)
    for language in languages:
        template = remote.get(language)
        if template is None:
            yield TemplateReport(language, "missing", problems=["not in the WhatsApp Business account; "
                                                                "create it with --create"])
            continue
        problems = drift(template, options)
        if not problems or template.category != "AUTHENTICATION":  # Meta does not change an approved category
            yield TemplateReport(language, "unchanged", template.status, problems)
            continue
        try:
            edit_template(template.id, edit_payload(options))
        except ProviderError as exc:
            raise TemplateSyncError(f"Meta refused the edit of {name}/{language}: {exc}") from None
        yield TemplateReport(language, "updated", problems=problems)


def check_auth_templates(app: App, name: str, languages: list[str]) -> list[TemplateReport]:
    """Compare Meta's template in each language with the app's settings; reads only."""
    options = check_settings(app, name)
    remote = _remote_by_language(name)
    reports = []
    for language in languages:
        template = remote.get(language)
        if template is None:
            reports.append(TemplateReport(language, "missing", problems=["not in the WhatsApp Business account; "
                                                                         "create it with --create"]))
            continue
        problems = drift(template, options)
        if template.status != "APPROVED":
            problems.append(f"status is {template.status}: Meta will not send it until it is APPROVED")
        reports.append(TemplateReport(language, "drift" if problems else "ok", template.status, problems,
                                      unchecked(template)))
    return reports


def _remote_by_language(name: str) -> dict[str, WabaTemplate]:
    try:
        remote = list_templates(current_app.config["WHATSAPP_WABA_ID"])
    except ProviderError as exc:
        raise TemplateSyncError(f"could not fetch the templates from Meta: {exc}") from None
    return {t.language: t for t in remote if t.name == name}
