"""Choosing and rendering the message template for an OTP."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..cache import cached
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
    """By id if given; else the default template in `language`; else the default in the app's language.

    Served from the process's configuration cache (wpotp.cache): a template change reaches every
    process on its next request.
    """
    if template_id:
        template = template_by_id(template_id)
        if template is None or template.status != "APPROVED":
            raise TemplateNotFound(details={"templateId": template_id})
        if template.category != "AUTHENTICATION":
            raise ValidationError("An OTP needs an AUTHENTICATION template.",
                                  details={"fields": {"templateId": "not an AUTHENTICATION template"}})
        return template
    if language:
        found = cached(("otp_template", language), lambda s: _default_in(s, language), keep_misses=True)
        if found is None:
            raise TemplateNotFound(f"No OTP template in language {language!r}.", details={"language": language})
        return found
    for lang in dict.fromkeys((default_language, "en")):
        found = cached(("otp_template", lang), lambda s: _default_in(s, lang))  # noqa: B023 - called at once
        if found:
            return found
    found = cached(("otp_template", None), lambda s: _default_in(s, None))
    if found is None:
        raise TemplateNotFound("No OTP template is configured; run `flask --app wsgi wpotp init`.")
    return found


def template_by_id(template_id: str) -> Template | None:
    """A template as it is now, whatever its status (a queued OTP is sent with the template it
    was accepted with), from the configuration cache."""
    return cached(("template", template_id), lambda s: s.get(Template, template_id))


def _default_in(session: Session, language: str | None) -> Template | None:
    query = (select(Template).where(Template.status == "APPROVED", Template.category == "AUTHENTICATION")
             .order_by(Template.is_default.desc(), Template.created_at))
    if language is not None:
        query = query.where(Template.language == language)
    return session.scalars(query).first()


def render(template: Template, code: str, footer: str | None = None) -> str:
    """The OTP's text: the body with the code filled in, then the caller's footer, if any.

    Only text-carrying providers (the gateway, the sandbox) send this text; the Cloud API sends
    the approved template by name, so a footer cannot reach it there.
    """
    text = template.body.replace(CODE_PLACEHOLDER, code)
    return f"{text}\n\n{footer}" if footer else text


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
