"""`flask --app wsgi wpotp ...` (SPEC §11). A secret a command creates is printed once,
alone on the last line of its output, so scripts can take it with `tail -n 1`."""

from __future__ import annotations

import re
import secrets
import sys

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import or_, select, update

from .cache import bump_epoch
from .extensions import db
from .models import ApiKey, App, AuditEntry, Event, User
from .otp.codes import hash_api_key
from .otp.templates import seed_default_templates
from .util import iso, random_base62, utcnow

cli = AppGroup("wpotp", help="wpotp administration.")

DEFAULT_ADMIN_EMAIL = "admin@localhost"


def find_app(name_or_id: str) -> App:
    app = db.session.scalars(select(App).where(or_(App.name == name_or_id, App.id == name_or_id))).first()
    if app is None:
        raise click.ClickException(f"no app named {name_or_id!r}; create it with `wpotp create-app --name ...`")
    return app


@cli.command("init")
def init_command() -> None:
    """Apply migrations; create the default app, templates and (if none) an admin user."""
    from . import upgrade_database

    upgrade_database(current_app)
    if db.session.scalars(select(App).where(App.name == "default")).first() is None:
        db.session.add(App(name="default"))
        click.echo("created app 'default'")
    created = seed_default_templates()
    if created:
        click.echo(f"created {created} default template(s)")
    password = None
    if db.session.scalars(select(User)).first() is None:
        password = secrets.token_urlsafe(12)
        user = User(email=DEFAULT_ADMIN_EMAIL, role="admin")
        user.set_password(password)
        db.session.add(user)
    db.session.commit()
    bump_epoch()  # the default app and templates
    click.echo("database is up to date")
    if password:
        click.echo(f"created admin user {DEFAULT_ADMIN_EMAIL}; its password is on the next line")
        click.echo(password)


@cli.command("create-user")
@click.option("--email", required=True)
@click.option("--password", default=None,
              help="the password; when left out it is prompted for (twice), or read from standard input's "
                   "first line when that is not a terminal")
@click.option("--role", type=click.Choice(["admin", "viewer"]), required=True)
def create_user_command(email: str, password: str | None, role: str) -> None:
    """Create a console user, or reset the password and role of an existing one."""
    if password is None:
        password = _read_password()
    if len(password) < 8:
        raise click.ClickException("the password must be at least 8 characters")
    email = email.strip().lower()
    user = db.session.scalars(select(User).where(User.email == email)).first()
    verb = "updated" if user else "created"
    if user is None:
        user = User(email=email, role=role)
        db.session.add(user)
    user.role = role
    user.set_password(password)
    db.session.commit()
    click.echo(f"{verb} {role} user {email}")


def _read_password() -> str:
    """Ask a person at a terminal (hidden, twice); take a script's first line of standard input.

    A password on the command line ends up in shell history and `ps`; these two ways do not.
    """
    stdin = sys.stdin
    if stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    line = stdin.readline().rstrip("\r\n")
    if not line:
        raise click.ClickException("no password: give --password, or the password on standard input")
    return line


@cli.command("create-app")
@click.option("--name", required=True)
def create_app_command(name: str) -> None:
    """Create an app; its public id is the last line."""
    name = name.strip()
    if not name or len(name) > 100:
        raise click.ClickException("the name must be 1 to 100 characters")
    if db.session.scalars(select(App).where(App.name == name)).first() is not None:
        raise click.ClickException(f"an app named {name!r} exists already")
    app = App(name=name)
    db.session.add(app)
    db.session.commit()
    bump_epoch()
    click.echo(f"created app {name!r}")
    click.echo(app.id)


def issue_key(app: App, mode: str, name: str = "") -> tuple[ApiKey, str]:
    """Make an API key; the secret is returned once and only its keyed hash is kept."""
    secret = f"wpotp_{mode}_{random_base62(40)}"
    key = ApiKey(app_id=app.id, mode=mode, name=name, key_hash=hash_api_key(secret), prefix=secret[:15])
    db.session.add(key)
    db.session.commit()
    return key, secret


@cli.command("create-key")
@click.option("--app", "app_name", required=True, help="the app's name or id")
@click.option("--mode", type=click.Choice(["test", "live"]), required=True)
@click.option("--name", default="", help="a label for staff")
def create_key_command(app_name: str, mode: str, name: str) -> None:
    """Create an API key: its id on the line before the last, the secret (shown once) on the last."""
    key, secret = issue_key(find_app(app_name), mode, name)
    click.echo(f"created {mode} key for app {app_name!r}; the secret is shown once, on the last line")
    click.echo(key.id)
    click.echo(secret)


KEY_ID = re.compile(r"^key_[0-9A-Za-z]{1,36}$")


@cli.command("list-keys")
@click.option("--app", "app_name", default=None, help="only this app's keys (its name or id)")
def list_keys_command(app_name: str | None) -> None:
    """One key a line, tab-separated: id, display prefix, mode, name, state (active/revoked), app.

    Never a secret: none is kept, only its keyed hash.
    """
    query = select(ApiKey, App.name).join(App, App.id == ApiKey.app_id)
    if app_name is not None:
        query = query.where(ApiKey.app_id == find_app(app_name).id)
    rows = db.session.execute(query.order_by(App.name, ApiKey.created_at, ApiKey.id)).all()
    for key, owner in rows:
        name = " ".join(key.name.split()) or "-"  # one field, whatever staff typed
        click.echo("\t".join((key.id, key.prefix, key.mode, name, "revoked" if key.revoked_at else "active", owner)))


@cli.command("revoke-key")
@click.argument("key_id")
def revoke_key_command(key_id: str) -> None:
    """Revoke an API key: from the next request on, in every process, calls with it answer 401.

    Revoking a revoked key changes nothing and succeeds; an unknown id is an error.
    """
    key = db.session.get(ApiKey, key_id) if KEY_ID.match(key_id) else None
    if key is None:
        raise click.ClickException(f"no key {key_id!r}; `wpotp list-keys` shows them")
    now = utcnow()
    revoked = db.session.execute(  # compare-and-set: two revocations at once write one audit entry
        update(ApiKey).where(ApiKey.id == key.id, ApiKey.revoked_at.is_(None)).values(revoked_at=now)
        .execution_options(synchronize_session=False)).rowcount == 1
    if not revoked:
        db.session.rollback()
        db.session.refresh(key)
        click.echo(f"key {key.id} ({key.prefix}) was already revoked at {iso(key.revoked_at)}")
        return
    db.session.add(AuditEntry(actor="cli", action="key.revoke", target=key.id,
                              details={"name": key.name, "prefix": key.prefix}))
    db.session.commit()
    click.echo(f"revoked key {key.id} ({key.prefix}): calls with it now get 401")


@cli.command("worker")
@click.option("--burst", is_flag=True, help="work until the queues are empty, then stop")
@click.option("--threads", type=click.IntRange(1, 256), default=None,
              help="jobs in flight at once in this process (default: WORKER_THREADS)")
def worker_command(burst: bool, threads: int | None) -> None:
    """An RQ worker on every queue, with the scheduler and the periodic-job ticker."""
    from .jobs.worker import run_workers

    app = current_app._get_current_object()
    run_workers(app, threads or app.config["WORKER_THREADS"], burst=burst)


@cli.command("sync-templates")
def sync_templates_command() -> None:
    """Pull the WhatsApp Business account's message templates (Cloud API) into wpotp."""
    from .otp.template_sync import sync_problems, sync_templates

    problems = sync_problems(current_app.config)
    if problems:
        raise click.ClickException("; ".join(problems))
    result = sync_templates()
    click.echo(" ".join(f"{k}={v}" for k, v in result.items()))


@cli.command("set-webhook")
@click.option("--app", "app_name", required=True, help="the app's name or id")
@click.option("--url", required=True, help="https://... where events are POSTed")
@click.option("--events", default="", help="comma-separated event names (default: every event)")
def set_webhook_command(app_name: str, url: str, events: str) -> None:
    """Set the app's webhook endpoint; a new signing secret is made and shown once, on the last line."""
    from .webhooks.endpoints import configure_endpoint

    app = find_app(app_name)
    try:
        endpoint, secret = configure_endpoint(app, url, events.split(","), current_app.config["WEBHOOK_ALLOW_PRIVATE"])
    except ValueError as exc:  # an unknown event, or an unsafe URL (UnsafeUrl)
        raise click.ClickException(str(exc)) from None
    db.session.commit()
    bump_epoch()
    click.echo(f"webhook for app {app.name!r}: {url} ({len(endpoint.events)} events); "
               "the signing secret is shown once, on the last line")
    click.echo(secret)


@cli.command("redeliver")
@click.argument("event_id")
def redeliver_command(event_id: str) -> None:
    """Queue a fresh delivery of an event to its app's current webhook endpoint."""
    from .webhooks.delivery import redeliver

    event = db.session.get(Event, event_id) if len(event_id) <= 40 else None
    if event is None:
        raise click.ClickException(f"no event {event_id!r}")
    try:
        delivery = redeliver(event)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"queued {event.type} {event.id} to {delivery.url}")
    click.echo(delivery.id)


@cli.command("sweep")
def sweep_command() -> None:
    """Expire due OTPs and rescue stuck sends, once."""
    from .otp.maintenance import sweep

    result = sweep()
    click.echo(" ".join(f"{k}={v}" for k, v in result.items()))


# --- retention (issue 17: wpotp/otp/retention.py, docs/operations.md "Retention") ---------------------

@cli.command("purge")
@click.option("--dry-run", is_flag=True, help="only count what retention would change; change nothing")
@click.option("--batch", type=click.IntRange(1, 100000), default=None,
              help="rows per transaction (default: PURGE_BATCH)")
def purge_command(dry_run: bool, batch: int | None) -> None:
    """Apply data retention once: past each app's retention period (its own, else RETENTION_DAYS),
    anonymise OTP and message recipients, drop verify attempts' IPs, delete events, send attempts and
    finished webhook deliveries. In batches, each its own short transaction; safe to run again."""
    from .otp.retention import purge, retention_days

    apps = db.session.scalars(select(App).order_by(App.name)).all()
    for app in apps:
        click.echo(f"app {app.name!r}: retention {retention_days(app)} days")
    result = purge(dry_run=dry_run, batch=batch)
    counts = " ".join(f"{k}={v}" for k, v in result.counts.items())
    if dry_run:
        click.echo(f"dry run, nothing changed; would change: {counts}")
        return
    if any(result.counts.values()):  # an operator's purge is an admin action (the periodic job's is not)
        db.session.add(AuditEntry(actor="cli", action="retention.purge", details=result.as_dict()))
        db.session.commit()
    click.echo(f"{counts} batches={result.batches}")
