"""Choosing and rendering the message template for an OTP."""

from __future__ import annotations

from sqlalchemy import select

from ..errors import TemplateNotFound, ValidationError
from ..extensions import db
from ..models import Template

CODE_PLACEHOLDER = "{{1}}"

# Seeded by `init`: Meta AUTHENTICATION-category bodies (Meta fixes this wording for the category).
# `wpotp_order_update` is a sample UTILITY template for POST /v1/messages in the sandbox; with the
# Cloud API, `sync-templates` marks it NOT_IN_WABA unless the business has one of that name.
DEFAULT_TEMPLATES = (
    {"name": "wpotp_verification", "language": "en", "category": "AUTHENTICATION",
     "body": "*{{1}}* is your verification code. For your security, do not share this code."},
    {"name": "wpotp_verification", "language": "tr", "category": "AUTHENTICATION",
     "body": "Doğrulama kodunuz *{{1}}*. Güvenliğiniz için bu kodu kimseyle paylaşmayın."},
    {"name": "wpotp_order_update", "language": "en", "category": "UTILITY",
     "body": "Your order {{1}} is {{2}}."},
)


def resolve_template(template_id: str | None, language: str | None, default_language: str) -> Template:
    """By id if given; else the default template in `language`; else the default in the app's language."""
    if template_id:
        template = db.session.get(Template, template_id)
        if template is None or template.status != "APPROVED":
            raise TemplateNotFound(details={"templateId": template_id})
        if template.category != "AUTHENTICATION":
            raise ValidationError("An OTP needs an AUTHENTICATION template.",
                                  details={"fields": {"templateId": "not an AUTHENTICATION template"}})
        return template
    approved = select(Template).where(Template.status == "APPROVED", Template.category == "AUTHENTICATION")
    best_first = (Template.is_default.desc(), Template.created_at)
    if language:
        found = db.session.scalars(approved.where(Template.language == language).order_by(*best_first)).first()
        if found is None:
            raise TemplateNotFound(f"No OTP template in language {language!r}.", details={"language": language})
        return found
    for lang in dict.fromkeys((default_language, "en")):
        found = db.session.scalars(approved.where(Template.language == lang).order_by(*best_first)).first()
        if found:
            return found
    found = db.session.scalars(approved.order_by(*best_first)).first()
    if found is None:
        raise TemplateNotFound("No OTP template is configured; run `flask --app wsgi wpotp init`.")
    return found


def render(template: Template, code: str) -> str:
    return template.body.replace(CODE_PLACEHOLDER, code)


def seed_default_templates() -> int:
    """Create the default templates that are missing; returns how many were created."""
    created = 0
    for spec in DEFAULT_TEMPLATES:
        exists = db.session.scalars(
            select(Template).where(Template.name == spec["name"], Template.language == spec["language"])
        ).first()
        if exists is None:
            is_auth = spec["category"] == "AUTHENTICATION"
            db.session.add(Template(name=spec["name"], language=spec["language"], body=spec["body"],
                                    category=spec["category"], copy_code_button=is_auth, status="APPROVED",
                                    is_default=is_auth))
            created += 1
    return created
