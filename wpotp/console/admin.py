"""Admin pages: API keys, users, audit log, app settings, sandbox outbox, templates, webhooks.

Everyone signed in may read them; every change is an admin's POST (`admin_required`), writes
an audit entry, and redirects (POST-redirect-GET). A secret made by a POST (an API key, a
generated password, a webhook secret) is handed to the next page load once, through Redis,
and is gone on reload.
"""

from __future__ import annotations

import json
import secrets

from flask import abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import and_, func, select, update

from ..cache import bump_epoch
from ..cli import issue_key
from ..extensions import db, redis_client
from ..i18n import status_label
from ..models import ApiKey, AuditEntry, Event, Template, User, WebhookAttempt, WebhookDelivery
from ..providers.sandbox import read_outbox
from ..providers.sms_sandbox import read_sms_outbox
from ..util import utcnow
from ..webhooks.endpoints import configure_endpoint, find_endpoint, rotate_secret
from ..webhooks.events import DEFAULT_EVENTS
from . import bp
from .audit import audit
from .auth import admin_required, current_console_app
from .forms import AutofillForm, KeyForm, RoleForm, SandboxSendForm, SettingsForm, UserForm, WebhookForm

ONCE_TTL = 120  # seconds a one-time secret waits for the page that shows it
AUDIT_PAGE = 50
TEXT_SETTINGS = ("allowed_countries", "api_rate_limit", "recipient_rate_limit", "default_language")
SETTINGS_FIELDS = ("otp_length", "otp_ttl", "max_attempts", "allowed_countries", "api_rate_limit",
                   "recipient_rate_limit", "daily_send_cap", "default_language", "fallback_after_seconds",
                   "retention_days")
AUTOFILL_FIELDS = ("otp_type", "android_package_name", "android_signature_hash", "zero_tap_terms_accepted",
                   "security_recommendation")


# One-time secrets ---------------------------------------------------------------------------

def show_once(kind: str, value: dict) -> None:
    """Keep `value` for the next page load only (in Redis, not in the cookie session)."""
    token = secrets.token_urlsafe(24)
    redis_client.conn.set(f"wpotp:console:once:{token}", json.dumps(value), ex=ONCE_TTL)
    session[f"once_{kind}"] = token


def take_once(kind: str) -> dict | None:
    token = session.pop(f"once_{kind}", None)
    if not token:
        return None
    pipe = redis_client.conn.pipeline()
    pipe.get(f"wpotp:console:once:{token}")
    pipe.delete(f"wpotp:console:once:{token}")
    raw, _ = pipe.execute()
    return json.loads(raw) if raw else None


# API keys -----------------------------------------------------------------------------------

@bp.get("/keys")
def keys():
    app = current_console_app()
    rows = db.session.scalars(select(ApiKey).where(ApiKey.app_id == app.id)
                              .order_by(ApiKey.revoked_at.is_not(None), ApiKey.created_at.desc())).all()
    return render_template("console/keys.html", keys=rows, form=KeyForm(), created=take_once("key"),
                           sandbox_provider=current_app.config["WPOTP_PROVIDER"] == "sandbox")


@bp.post("/keys")
@admin_required
def create_key():
    form = KeyForm()
    if not form.validate():
        flash(_("The key was not created: %(errors)s", errors="; ".join(str(e) for errs in form.errors.values()
                                                                       for e in errs)), "error")
        return redirect(url_for("console.keys"))
    app = current_console_app()
    key, secret = issue_key(app, form.mode.data, form.name.data.strip())
    audit("key.create", key.id, name=key.name, mode=key.mode, app=app.id)
    db.session.commit()
    show_once("key", {"id": key.id, "name": key.name, "mode": key.mode, "secret": secret})
    return redirect(url_for("console.keys"))


@bp.post("/keys/<key_id>/revoke")
@admin_required
def revoke_key(key_id: str):
    key = db.session.get(ApiKey, key_id[:40]) or abort(404)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        audit("key.revoke", key.id, name=key.name, prefix=key.prefix)
        db.session.commit()
        flash(_("Key %(prefix)s… is revoked: calls with it now get 401.", prefix=key.prefix), "success")
    return redirect(url_for("console.keys"))


# Users --------------------------------------------------------------------------------------

@bp.get("/users")
def users():
    rows = db.session.scalars(select(User).order_by(User.email)).all()
    return render_template("console/users.html", users=rows, form=UserForm(), role_form=RoleForm(),
                           created=take_once("password"))


@bp.post("/users")
@admin_required
def create_user():
    form = UserForm()
    if form.validate():
        email = form.email.data.strip().lower()
        if db.session.scalars(select(User).where(User.email == email)).first() is None:
            return _add_user(email, form.role.data, form.password.data)
        form.email.errors.append(_("A user with this email exists already."))
    rows = db.session.scalars(select(User).order_by(User.email)).all()
    return render_template("console/users.html", users=rows, form=form, role_form=RoleForm(), created=None), 400


def _add_user(email: str, role: str, password: str | None):
    generated = not password
    password = password or secrets.token_urlsafe(12)
    user = User(email=email, role=role)
    user.set_password(password)
    db.session.add(user)
    db.session.flush()
    audit("user.create", user.id, email=email, role=role, generated_password=generated)
    db.session.commit()
    if generated:
        show_once("password", {"email": email, "secret": password})
    else:
        flash(_("Created %(role)s %(email)s.", role=status_label(role), email=email), "success")
    return redirect(url_for("console.users"))


def _admins() -> int:
    return db.session.scalar(select(func.count()).select_from(User).where(User.role == "admin"))


@bp.post("/users/<user_id>/role")
@admin_required
def user_role(user_id: str):
    user = db.session.get(User, user_id[:40]) or abort(404)
    form = RoleForm()
    if not form.validate():
        abort(400)
    old = user.role
    if old == form.role.data:
        return redirect(url_for("console.users"))
    if old == "admin" and _admins() <= 1:
        flash(_("%(email)s is the last admin: make another admin first.", email=user.email), "error")
        return redirect(url_for("console.users"))
    user.role = form.role.data
    audit("user.role", user.id, email=user.email, old=old, new=user.role)
    db.session.commit()
    flash(_("%(email)s is now %(role)s.", email=user.email, role=status_label(user.role)), "success")
    return redirect(url_for("console.users"))


@bp.post("/users/<user_id>/delete")
@admin_required
def delete_user(user_id: str):
    user = db.session.get(User, user_id[:40]) or abort(404)
    if user.id == current_user.id:
        flash(_("You cannot delete yourself: ask another admin."), "error")
    elif user.role == "admin" and _admins() <= 1:
        flash(_("%(email)s is the last admin and cannot be deleted.", email=user.email), "error")
    else:
        # The audit trail keeps the email in `actor`; only the link to the row goes.
        db.session.execute(update(AuditEntry).where(AuditEntry.user_id == user.id).values(user_id=None))
        audit("user.delete", user.id, email=user.email, role=user.role)
        db.session.delete(user)
        db.session.commit()
        flash(_("Deleted %(email)s.", email=user.email), "success")
    return redirect(url_for("console.users"))


# Audit log ----------------------------------------------------------------------------------

@bp.get("/audit", endpoint="audit")
def audit_page():
    action = request.args.get("action", "").strip()[:64]
    actor = request.args.get("actor", "").strip()[:254]
    before = request.args.get("before", type=int)
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(AUDIT_PAGE + 1)
    if action:
        query = query.where(AuditEntry.action == action)
    if actor:
        query = query.where(_actor_is(actor.lower()))
    if before:
        query = query.where(AuditEntry.id < before)
    rows = db.session.scalars(query).all()
    next_url = None
    if len(rows) > AUDIT_PAGE:
        rows = rows[:AUDIT_PAGE]
        next_url = url_for("console.audit", action=action or None, actor=actor or None, before=rows[-1].id)
    actions = db.session.scalars(select(AuditEntry.action).distinct().order_by(AuditEntry.action)).all()
    return render_template("console/audit.html", entries=rows, actions=actions, action=action, actor=actor,
                           next_url=next_url, first_url=url_for("console.audit", action=action or None,
                                                                actor=actor or None) if before else None)


def _actor_is(actor: str):
    """The filter of the Actor field: an email, `cli` (every CLI action) or `cli:<os user>` (as shown)."""
    if actor.startswith("cli:"):
        return and_(AuditEntry.actor == "cli", AuditEntry.details["os_user"].as_string() == actor[4:])
    return AuditEntry.actor == actor


# App settings -------------------------------------------------------------------------------

@bp.get("/settings")
def settings():
    app = current_console_app()
    return render_template("console/settings.html", form=SettingsForm(obj=app), app=app,
                           autofill=AutofillForm(obj=app))


@bp.post("/settings/autofill")
@admin_required
def update_autofill():
    """The WhatsApp code button of the app's authentication template (docs/channels.md)."""
    app = current_console_app()
    form = AutofillForm()
    if not form.validate():
        flash(_("Nothing was saved: correct the fields marked below."), "error")
        return render_template("console/settings.html", form=SettingsForm(obj=app), app=app, autofill=form), 400
    changes = _save_settings(app, {name: getattr(form, name).data for name in AUTOFILL_FIELDS})
    if changes:
        flash(_("Saved %(num)s setting(s) of %(name)s. Meta's template changes only when it is created or edited: "
                "run `wpotp sync-templates --update`.", num=len(changes), name=app.name), "success")
    else:
        flash(_("Nothing changed."), "info")
    return redirect(url_for("console.settings"))


def _save_settings(app, values: dict) -> dict:
    """Set the app's fields that differ from `values`; when any did, audit them (settings.update),
    commit and bump the cache epoch (every process serves them from its next request). The changes,
    {name: [old, new]}."""
    changes = {name: [getattr(app, name), value] for name, value in values.items() if getattr(app, name) != value}
    for name, (_old, value) in changes.items():
        setattr(app, name, value)
    if changes:
        audit("settings.update", app.id, app=app.name, changes=changes)
        db.session.commit()
        bump_epoch()
    return changes


@bp.post("/settings")
@admin_required
def update_settings():
    app = current_console_app()
    form = SettingsForm()
    if not form.validate() or not _language_has_template(form):
        flash(_("Nothing was saved: correct the fields marked below."), "error")
        return render_template("console/settings.html", form=form, app=app, autofill=AutofillForm(obj=app)), 400
    values = {}
    for name in SETTINGS_FIELDS:
        value = getattr(form, name).data
        if value is None and name in TEXT_SETTINGS:  # a field left out of the POST: as if sent empty
            value = ""
        if isinstance(value, str):
            value = value.strip() or (None if name in ("api_rate_limit", "recipient_rate_limit") else "")
        values[name] = value
    changes = _save_settings(app, values)
    if changes:
        flash(_("Saved %(num)s setting(s) of %(name)s.", num=len(changes), name=app.name), "success")
    else:
        flash(_("Nothing changed."), "info")
    return redirect(url_for("console.settings"))


def _language_has_template(form: SettingsForm) -> bool:
    """The default language must have an approved OTP template: else every send that names no
    language would fail with TEMPLATE_NOT_FOUND. Adds the field's error and answers False if not."""
    wanted = (form.default_language.data or "").strip()
    approved = db.session.scalars(select(Template.language).where(Template.status == "APPROVED",
                                                            Template.category == "AUTHENTICATION").distinct()).all()
    if wanted in approved:
        return True
    same_base = sorted(lang for lang in approved if lang.split("_")[0] == wanted.split("_")[0])
    message = _("No approved OTP template is in %(language)s: sends that name no language would fail. "
                "Approved languages: %(approved)s.", language=wanted, approved=", ".join(sorted(approved)) or "—")
    if same_base:
        message += " " + _("Did you mean %(languages)s?", languages=", ".join(same_base))
    form.default_language.errors = [*form.default_language.errors, message]
    return False


# Sandbox outbox -----------------------------------------------------------------------------

@bp.get("/sandbox")
def sandbox():
    return _sandbox_page(SandboxSendForm())


def _sandbox_page(form: SandboxSendForm, status: int = 200):
    app = current_console_app()
    both = sorted(read_outbox(limit=500) + read_sms_outbox(limit=500), key=lambda r: r["createdAt"], reverse=True)
    rows = [r for r in both if r.get("appId") == app.id][:100]
    return render_template("console/sandbox.html", messages=rows, app=app, send_form=form), status


@bp.post("/sandbox/send")
@admin_required
def sandbox_send():
    """Send a test OTP from the console: the service's own send, with the app's newest active test
    key, so it is rate-limited, fraud-guarded and logged as any API send is."""
    from ..errors import WpotpError
    from ..otp.service import SendRequest, send_otp

    form = SandboxSendForm()
    if not form.validate():
        return _sandbox_page(form, 400)
    app = current_console_app()
    key = db.session.scalars(select(ApiKey).where(ApiKey.app_id == app.id, ApiKey.mode == "test",
                                                  ApiKey.revoked_at.is_(None))
                             .order_by(ApiKey.created_at.desc())).first()
    if key is None:
        form.recipient.errors.append(_("This app has no active test key: create one on the API keys page first."))
        return _sandbox_page(form, 400)
    try:
        otp, _created = send_otp(app, key, SendRequest(recipient=form.recipient.data.strip(),
                                                       channel=form.channel.data))
    except WpotpError as exc:
        db.session.rollback()
        form.recipient.errors.append(_("Not sent: %(reason)s", reason=exc.message))
        return _sandbox_page(form, 400)
    audit("sandbox.send", otp.id, key=key.id, channel=form.channel.data)
    db.session.commit()
    flash(_("Test OTP %(id)s queued: its code shows here in a moment.", id=otp.id), "success")
    return redirect(url_for("console.sandbox"))


# Templates ----------------------------------------------------------------------------------

def _sync_configured() -> bool:
    return bool(current_app.config["WHATSAPP_WABA_ID"] and current_app.config["WHATSAPP_TOKEN"])


@bp.get("/templates")
def templates():
    from .sms_texts import sms_context

    rows = db.session.scalars(select(Template).order_by(Template.name, Template.language)).all()
    return render_template("console/templates.html", templates=rows, sync_configured=_sync_configured(),
                           **sms_context(current_console_app()))


@bp.post("/templates/sync")
@admin_required
def sync_templates_now():
    # Imported here, as redeliver below: they bring the provider HTTP client (requests, about
    # 5 MB of RSS) into the gunicorn worker that runs this, not into every one.
    from ..otp.template_sync import TemplateSyncError, sync_problems, sync_templates

    problems = sync_problems(current_app.config)
    if problems:
        flash(_("Cannot sync: %(problems)s.", problems="; ".join(problems)), "error")
        return redirect(url_for("console.templates"))
    try:
        counts = sync_templates()
    except TemplateSyncError as exc:
        db.session.rollback()
        audit("templates.sync", None, ok=False, error=exc.message[:300])
        db.session.commit()
        flash(_("Sync failed: %(error)s", error=exc.message), "error")
        return redirect(url_for("console.templates"))
    audit("templates.sync", None, ok=True, **counts)
    db.session.commit()
    flash(_("Synced from WhatsApp: %(counts)s.", counts=", ".join(f"{v} {k}" for k, v in counts.items())), "success")
    return redirect(url_for("console.templates"))


# Webhooks -----------------------------------------------------------------------------------

def _deliveries(app_id: str) -> list[WebhookDelivery]:
    return db.session.scalars(select(WebhookDelivery).where(WebhookDelivery.app_id == app_id)
                              .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id).limit(50)).all()


def _webhooks_page(form: WebhookForm, status: int = 200):
    app = current_console_app()
    endpoint = find_endpoint(app)
    return render_template("console/webhooks.html", app=app, endpoint=endpoint, form=form,
                           deliveries=_deliveries(app.id), created=take_once("webhook_secret")), status


@bp.get("/webhooks")
def webhooks():
    endpoint = find_endpoint(current_console_app())
    form = WebhookForm(data={"url": endpoint.url if endpoint else "",
                             "events": endpoint.events if endpoint else list(DEFAULT_EVENTS)})
    return _webhooks_page(form)


@bp.post("/webhooks")
@admin_required
def set_webhook():
    form = WebhookForm()
    if not form.validate():
        return _webhooks_page(form, 400)
    app = current_console_app()
    try:
        endpoint, secret = configure_endpoint(app, form.url.data.strip(), form.events.data,
                                              current_app.config["WEBHOOK_ALLOW_PRIVATE"], rotate=False)
    except ValueError as exc:  # UnsafeUrl, or an unknown event
        db.session.rollback()
        form.url.errors.append(str(exc))
        return _webhooks_page(form, 400)
    audit("webhook.set", app.id, url=endpoint.url, events=endpoint.events, new_secret=secret is not None)
    db.session.commit()
    bump_epoch()
    if secret:
        show_once("webhook_secret", {"secret": secret})
    flash(_("Webhook endpoint saved: %(url)s.", url=endpoint.url), "success")
    return redirect(url_for("console.webhooks"))


@bp.post("/webhooks/rotate")
@admin_required
def rotate_webhook_secret():
    app = current_console_app()
    endpoint = find_endpoint(app)
    if endpoint is None:
        flash(_("Set an endpoint first."), "error")
        return redirect(url_for("console.webhooks"))
    secret = rotate_secret(endpoint)
    audit("webhook.rotate", app.id, prefix=endpoint.secret_prefix)
    db.session.commit()
    bump_epoch()  # the old secret stops signing in every process
    show_once("webhook_secret", {"secret": secret})
    return redirect(url_for("console.webhooks"))


@bp.get("/webhooks/deliveries/<delivery_id>")
def webhook_delivery(delivery_id: str):
    delivery = _delivery_of_this_app(delivery_id)
    attempts = db.session.scalars(select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery.id)
                                  .order_by(WebhookAttempt.number)).all()
    event = db.session.get(Event, delivery.event_id)
    return render_template("console/webhook_delivery.html", delivery=delivery, attempts=attempts, event=event)


@bp.post("/webhooks/deliveries/<delivery_id>/redeliver")
@admin_required
def redeliver_webhook(delivery_id: str):
    from ..webhooks.delivery import redeliver

    delivery = _delivery_of_this_app(delivery_id)
    event = db.session.get(Event, delivery.event_id)
    try:
        fresh = redeliver(event)
    except ValueError as exc:
        flash(_("Not redelivered: %(reason)s.", reason=str(exc)), "error")
        return redirect(url_for("console.webhooks"))
    audit("webhook.redeliver", event.id, delivery=fresh.id, previous=delivery.id, event_type=event.type)
    db.session.commit()
    flash(_("Queued a new delivery of %(type)s (%(id)s).", type=event.type, id=event.id), "success")
    return redirect(url_for("console.webhook_delivery", delivery_id=fresh.id))


def _delivery_of_this_app(delivery_id: str) -> WebhookDelivery:
    """A delivery of the app the console is looking at; another app's answers 404 like a missing one."""
    delivery = db.session.get(WebhookDelivery, delivery_id[:40])
    if delivery is None or delivery.app_id != current_console_app().id:
        abort(404)
    return delivery
