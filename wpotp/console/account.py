"""The signed-in user's own account page (language and time zone, issue 16) and the header's
language switch. Neither is an admin action: every user, viewers too, sets their own."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, session, url_for
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_login import current_user

from config import CONSOLE_LANGUAGES

from ..extensions import db
from ..i18n import SESSION_LANGUAGE, all_timezones
from ..util import utcnow
from . import bp
from .audit import audit
from .auth import safe_next
from .forms import AccountForm


@bp.route("/account", methods=["GET", "POST"])
def account():
    form = AccountForm()
    if request.method == "GET":
        form.language.data = current_user.language or ""
        form.timezone.data = current_user.timezone or ""
        return _page(form)
    if not form.validate():
        flash(_("Nothing was saved: correct the fields marked below."), "error")
        return _page(form, 400)
    wanted = {"language": form.language.data or None, "timezone": form.timezone.data or None}
    changes = {k: [getattr(current_user, k), v] for k, v in wanted.items() if getattr(current_user, k) != v}
    if changes:
        for name, (_old, new) in changes.items():
            setattr(current_user, name, new)
        audit("account.update", current_user.id, changes=changes)
        db.session.commit()
        with force_locale(current_user.language or _request_language()):
            flash(_("Saved your language and time zone."), "success")
    else:
        flash(_("Nothing changed."), "info")
    return redirect(url_for("console.account"))


def _page(form: AccountForm, status: int = 200):
    return render_template("console/account.html", form=form, timezones=all_timezones(), now=utcnow()), status


def _request_language() -> str:
    from ..i18n import select_locale

    return select_locale()


@bp.post("/language")
def set_language():
    """The language switch (header and login page): on the user when signed in, else in the session."""
    chosen = request.form.get("language", "")
    target = safe_next(request.form.get("next"))
    if chosen in CONSOLE_LANGUAGES:
        if current_user.is_authenticated:
            if current_user.language != chosen:
                audit("account.update", current_user.id, changes={"language": [current_user.language, chosen]})
                current_user.language = chosen
                db.session.commit()
        else:
            session[SESSION_LANGUAGE] = chosen
    fallback = url_for("console.overview") if current_user.is_authenticated else url_for("console.login")
    return redirect(target or fallback)
