"""The app's own SMS texts, on the templates page (`/console/templates`): one text per language with
`{code}` and `{app}`, the GSM-7/UCS-2 segment count of each (counted here on every render and save,
and live in the browser by static/js/sms_texts.js), the built-in text where an app has none."""

from __future__ import annotations

from flask import flash, redirect, request, url_for
from flask_babel import gettext as _

from ..cache import bump_epoch
from ..extensions import db
from ..models import App
from ..otp.sms_text import TEXTS, preview, segments, text_for, text_problem
from . import bp
from .audit import audit
from .auth import admin_required, current_console_app

LANGUAGE_FIELD = "sms_lang_new"
MAX_LANGUAGES = 20


def languages_of(app: App) -> list[str]:
    """The built-in languages, the app's default and the ones it has texts for."""
    base = (app.default_language or "en").replace("-", "_").split("_")[0].lower()
    return sorted(set(TEXTS) | {base} | set(app.sms_texts or {}))


def sms_rows(app: App, texts: dict | None = None) -> list[dict]:
    """Per language: the app's own text (or ""), the built-in one, and what a user would get now
    (its encoding and segment count, with a sample code of the app's length)."""
    own = app.sms_texts if texts is None else texts
    rows = []
    for lang in languages_of(app) if texts is None else sorted(set(languages_of(app)) | set(texts)):
        text = (own or {}).get(lang, "")
        effective = text or text_for(lang)
        encoding, count = segments(preview(effective, app.name, app.otp_length))
        rows.append({"language": lang, "text": text, "builtin": text_for(lang), "encoding": encoding,
                     "segments": count, "preview": preview(effective, app.name, app.otp_length),
                     "problem": text_problem(text) if text else None})
    return rows


def sms_context(app: App) -> dict:
    return {"sms_app": app, "sms_rows": sms_rows(app)}


@bp.post("/templates/sms")
@admin_required
def save_sms_texts():
    app = current_console_app()
    texts = {}
    for lang in languages_of(app):
        value = (request.form.get(f"sms_{lang}") or "").strip()
        if value:
            texts[lang] = value
    new_lang = (request.form.get(LANGUAGE_FIELD) or "").strip().lower().replace("-", "_")
    new_text = (request.form.get("sms_text_new") or "").strip()
    if new_lang or new_text:
        if not new_lang.replace("_", "").isalpha() or not 2 <= len(new_lang) <= 16 or not new_text:
            flash(_("Nothing was saved: a new text needs a language code such as de or pt_br, and its text."), "error")
            return redirect(url_for("console.templates"))
        texts[new_lang] = new_text
    problems = {lang: text_problem(text) for lang, text in texts.items() if text_problem(text)}
    if problems or len(texts) > MAX_LANGUAGES:
        detail = "; ".join(f"{lang}: {problem}" for lang, problem in sorted(problems.items())) or \
            _("at most %(n)s languages", n=MAX_LANGUAGES)
        flash(_("Nothing was saved: %(detail)s.", detail=detail), "error")
        return redirect(url_for("console.templates"))
    before = app.sms_texts or {}
    if texts == before:
        flash(_("Nothing changed."), "info")
        return redirect(url_for("console.templates"))
    app.sms_texts = texts or None
    counts = {row["language"]: f'{row["encoding"]} × {row["segments"]}' for row in sms_rows(app, texts)
              if row["text"]}
    audit("templates.sms", app.id, app=app.name, languages=sorted(texts), segments=counts)
    db.session.commit()
    bump_epoch()
    flash(_("Saved the SMS texts of %(app)s: %(texts)s.", app=app.name,
            texts=", ".join(f"{k} {v}" for k, v in counts.items()) or _("the built-in texts")), "success")
    return redirect(url_for("console.templates"))
