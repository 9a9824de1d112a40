"""The Fraud guard page (issue 15, docs/fraud.md): the app's blocks in force, its recent refusals
with why, an unblock action and the guard's per-app settings. Changes are an admin's POST,
audit-logged, then a redirect (as admin.py's pages)."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from ..cache import bump_epoch
from ..extensions import db
from ..models import App, Event
from ..otp import fraud
from . import bp
from .audit import audit
from .auth import admin_required, current_console_app
from .forms import FraudForm, UnblockForm

REFUSALS = 50
LISTS = ("fraud_allow_whatsapp", "fraud_deny_whatsapp", "fraud_allow_sms", "fraud_deny_sms")
OVERRIDES = ("fraud_country_limit", "fraud_prefix_limit", "fraud_unverified_country", "fraud_unverified_prefix",
             "fraud_block_seconds")
GUARD = {None: "", True: "on", False: "off"}


def _page(form: FraudForm, status: int = 200):
    app = current_console_app()
    refusals = db.session.scalars(select(Event).where(Event.app_id == app.id, Event.type == "otp.blocked")
                                  .order_by(Event.created_at.desc(), Event.id).limit(REFUSALS)).all()
    return render_template("console/fraud.html", app=app, form=form, unblock_form=UnblockForm(),
                           blocks=fraud.current_blocks(app), refusals=refusals,
                           limits=fraud.thresholds(app)), status


@bp.get("/fraud")
def fraud_guard():
    app = current_console_app()
    form = FraudForm(obj=app)
    form.fraud_guard.data = GUARD[app.fraud_guard]
    return _page(form)


@bp.post("/fraud/settings")
@admin_required
def fraud_guard_settings():
    form = FraudForm()
    if not form.validate():
        flash(_("Nothing was saved: correct the fields marked below."), "error")
        return _page(form, 400)
    app = current_console_app()
    changes = _apply(app, form)
    if changes:
        audit("fraud.settings", app.id, app=app.name, changes=changes)
        db.session.commit()
        bump_epoch()  # every process guards with the new settings from its next request
        flash(_("Saved %(num)s fraud guard setting(s) of %(name)s.", num=len(changes), name=app.name), "success")
    else:
        flash(_("Nothing changed."), "info")
    return redirect(url_for("console.fraud_guard"))


def _apply(app: App, form: FraudForm) -> dict:
    wanted: dict = {"fraud_guard": {"": None, "on": True, "off": False}[form.fraud_guard.data]}
    for name in LISTS:
        wanted[name] = (getattr(form, name).data or "").strip()
    for name in OVERRIDES:
        value = getattr(form, name).data
        wanted[name] = (value.strip() or None) if isinstance(value, str) else value
    changes = {}
    for name, value in wanted.items():
        if getattr(app, name) != value:
            changes[name] = [getattr(app, name), value]
            setattr(app, name, value)
    return changes


@bp.post("/fraud/unblock")
@admin_required
def fraud_guard_unblock():
    form = UnblockForm()
    app = current_console_app()
    if not form.validate():
        flash(_("Not unblocked: that is not a block."), "error")
        return redirect(url_for("console.fraud_guard"))
    member = form.member.data
    label = fraud.Block(member, 0).label
    if fraud.unblock(app, member):
        audit("fraud.unblock", app.id, app=app.name, block=member, label=label)
        db.session.commit()
        flash(_("Unblocked %(label)s: sends to it are let through again.", label=label), "success")
    else:
        flash(_("%(label)s was not blocked (any more).", label=label), "info")
    return redirect(url_for("console.fraud_guard"))
