"""Pull the WhatsApp Business account's message templates into the templates table.

`GET /{waba-id}/message_templates`, following `paging.next`. Rows are matched by
(name, language) and updated in place; a local template Meta no longer lists is marked
NOT_IN_WABA, never deleted (OTP rows reference it). Afterwards every language with an
APPROVED AUTHENTICATION template has exactly one default among them.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import click
from flask import current_app
from sqlalchemy import select

from ..extensions import db
from ..models import Template
from ..providers.base import ProviderError
from ..providers.cloud_api import auth_headers, error_from_response, graph_base
from ..providers.http import request

NOT_IN_WABA = "NOT_IN_WABA"
FIELDS = "name,language,status,category,components"
MAX_PAGES = 200  # 20,000 templates: far past Meta's per-account cap, so only a looping `next` hits it


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
        remote = fetch_templates()
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
    return counts


def fetch_templates() -> list[dict]:
    """Every template, page by page. `paging.next` is followed only on the configured Graph host."""
    cfg = current_app.config
    url: str | None = f"{graph_base()}/{cfg['WHATSAPP_WABA_ID']}/message_templates"
    params: dict | None = {"fields": FIELDS, "limit": 100}
    found: list[dict] = []
    for _ in range(MAX_PAGES):
        response = request("GET", url, params=params, headers=auth_headers())
        if not response.ok:
            raise error_from_response(response)
        page = _json(response)
        found.extend(t for t in (parse_template(raw) for raw in page.get("data") or []) if t)
        url, params = _next_page(page), None
        if url is None:
            return found
    raise ProviderError(f"more than {MAX_PAGES} pages of templates", permanent=True, code="paging")


def _json(response) -> dict:
    try:
        page = response.json()
    except ValueError:
        page = None
    if not isinstance(page, dict):
        raise ProviderError("the answer was not a JSON object", permanent=False, code="bad_answer")
    return page


def _next_page(page: dict) -> str | None:
    """The next page's URL; the bearer token must not follow a link to some other host."""
    paging = page.get("paging")
    nxt = paging.get("next") if isinstance(paging, dict) else None
    if not isinstance(nxt, str) or not nxt:
        return None
    ours, theirs = urlsplit(current_app.config["WHATSAPP_GRAPH_URL"]), urlsplit(nxt)
    if (theirs.scheme, theirs.netloc) != (ours.scheme, ours.netloc):
        raise ProviderError(f"paging.next points at another host ({theirs.netloc})", permanent=True,
                            code="paging")
    return nxt


def parse_template(raw: object) -> dict | None:
    """Meta's template object as Template fields; None when it lacks a name or language."""
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not isinstance(raw.get("language"), str):
        return None
    components = [c for c in raw.get("components") or [] if isinstance(c, dict)]
    category = str(raw.get("category") or "").upper()
    body = next((str(c.get("text") or "") for c in components if str(c.get("type")).upper() == "BODY"), "")
    return {"name": raw["name"][:512], "language": raw["language"][:16], "category": category[:32],
            "status": str(raw.get("status") or "UNKNOWN").upper()[:32], "body": body,
            "copy_code_button": category == "AUTHENTICATION" and _has_code_button(components)}


def _has_code_button(components: list[dict]) -> bool:
    """An OTP button (COPY_CODE, ONE_TAP, ZERO_TAP) reads back from Meta as type OTP or URL;
    either way the send must carry the code as the url button's parameter."""
    for component in components:
        if str(component.get("type")).upper() != "BUTTONS":
            continue
        for button in component.get("buttons") or []:
            if isinstance(button, dict) and str(button.get("type")).upper() in ("OTP", "URL"):
                return True
    return False


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
