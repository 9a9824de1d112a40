"""`flask --app wsgi wpotp ...` (SPEC §11). A secret a command creates is printed once,
alone on the last line of its output, so scripts can take it with `tail -n 1`."""

from __future__ import annotations

import getpass
import hashlib
import hmac
import os
import re
import secrets
import socket
import sys

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import func, or_, select, update

from .cache import bump_epoch
from .extensions import db
from .jobs.main import MAX_THREADS
from .models import ApiKey, App, AuditEntry, Event, User
from .otp.codes import hash_api_key
from .otp.templates import seed_default_templates
from .util import BASE62, iso, new_id, random_base62, utcnow

cli = AppGroup("wpotp", help="wpotp administration.")

DEFAULT_ADMIN_EMAIL = "admin@localhost"
CLI_ACTOR = "cli"  # AuditEntry.actor of every CLI action; who ran it is in details (os_user, host)


def os_user() -> str:
    """Who runs the command: the person behind `sudo -u wpotp ...` (SUDO_USER), else the login name."""
    return os.environ.get("SUDO_USER") or _login_name()


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no LOGNAME/USER and no passwd entry (a bare container)
        return f"uid-{os.getuid()}"


def cli_audit(action: str, target: str | None = None, **details) -> AuditEntry:
    """Add an audit entry for a CLI action to the session, as the console's audit() does; the caller
    commits it with the change, so a change and its entry land together or not at all.

    `details` must never hold a secret. The entry's actor is `cli`; the OS user (and, under sudo, the
    account it ran as) and the host name go into its details, and the console shows `cli:<os user>`."""
    who = {"os_user": os_user(), "host": socket.gethostname()[:100]}
    if who["os_user"] != _login_name():
        who["run_as"] = _login_name()
    entry = AuditEntry(actor=CLI_ACTOR, action=action, target=target, details={**details, **who})
    db.session.add(entry)
    return entry

def find_app(name_or_id: str) -> App:
    app = db.session.scalars(select(App).where(or_(App.name == name_or_id, App.id == name_or_id))).first()
    if app is None:
        raise click.ClickException(f"no app named {name_or_id!r}; create it with `wpotp create-app --name ...`")
    return app


# Database, apps, users ----------------------------------------------------------------------

@cli.command("init")
def init_command() -> None:
    """Apply migrations; create the default app, templates and (if none) an admin user."""
    from . import upgrade_database

    before = _schema_revision()
    upgrade_database(current_app)
    after = _schema_revision()
    if before != after:
        cli_audit("database.upgrade", None, **{"from": before, "to": after})
    if db.session.scalars(select(App).where(App.name == "default")).first() is None:
        app = App(name="default")
        db.session.add(app)
        db.session.flush()
        cli_audit("app.create", app.id, name=app.name)
        click.echo("created app 'default'")
    created = seed_default_templates()
    if created:
        cli_audit("templates.seed", None, created=created)
        click.echo(f"created {created} default template(s)")
    password = _first_admin()
    db.session.commit()
    bump_epoch()  # the default app and templates
    click.echo("database is up to date")
    if password:
        click.echo(f"created admin user {DEFAULT_ADMIN_EMAIL}; its password is on the next line")
        click.echo(password)


def _schema_revision() -> str | None:
    """The Alembic revision the database is at (None before the first migration)."""
    from alembic.runtime.migration import MigrationContext

    with db.engine.connect() as conn:
        heads = MigrationContext.configure(conn).get_current_heads()
    return ",".join(sorted(heads)) or None


def _first_admin() -> str | None:
    """When there is no user at all, add the admin `admin@localhost`; returns its password."""
    if db.session.scalars(select(User)).first() is not None:
        return None
    password = secrets.token_urlsafe(12)
    user = User(email=DEFAULT_ADMIN_EMAIL, role="admin")
    user.set_password(password)
    db.session.add(user)
    db.session.flush()
    cli_audit("user.create", user.id, email=user.email, role=user.role, generated_password=True)
    return password


@cli.command("create-user")
@click.option("--email", required=True)
@click.option("--password", default=None,
              help="the password; when left out it is prompted for (twice), or read from standard input's "
                   "first line when that is not a terminal")
@click.option("--role", type=click.Choice(["admin", "viewer"]), required=True)
def create_user_command(email: str, password: str | None, role: str) -> None:
    """Create a console user, or reset the password and role of an existing one."""
    email = email.strip().lower()
    user = db.session.scalars(select(User).where(User.email == email)).first()
    if user is not None and user.role == "admin" and role != "admin" and _admins() <= 1:
        raise click.ClickException(f"{email} is the last admin: make another admin first")
    if password is None:
        password = _read_password()
    if len(password) < 8:
        raise click.ClickException("the password must be at least 8 characters")
    verb = "updated" if user else "created"
    if user is None:
        user = User(email=email, role=role)
        user.set_password(password)
        db.session.add(user)
        db.session.flush()
        cli_audit("user.create", user.id, email=email, role=role, generated_password=False)
    else:
        _reset_user(user, role, password)
    db.session.commit()
    click.echo(f"{verb} {role} user {email}")


def _admins() -> int:
    return db.session.scalar(select(func.count()).select_from(User).where(User.role == "admin"))


def _reset_user(user: User, role: str, password: str) -> None:
    user.set_password(password)
    cli_audit("user.password", user.id, email=user.email)
    if user.role != role:
        cli_audit("user.role", user.id, email=user.email, old=user.role, new=role)
        user.role = role


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
    db.session.flush()
    cli_audit("app.create", app.id, name=name)
    db.session.commit()
    bump_epoch()
    click.echo(f"created app {name!r}")
    click.echo(app.id)


# API keys -----------------------------------------------------------------------------------

def issue_key(app: App, mode: str, name: str = "", *, commit: bool = True) -> tuple[ApiKey, str]:
    """Make an API key; the secret is returned once and only its keyed hash is kept.

    With `commit=False` the key is only added to the session, for the caller to commit with its
    audit entry."""
    secret = f"wpotp_{mode}_{random_base62(40)}"
    return _add_key(app, mode, name, secret, commit=commit), secret


def _add_key(app: App, mode: str, name: str, secret: str, key_id: str | None = None,
             commit: bool = True) -> ApiKey:
    key = ApiKey(id=key_id or new_id("key"), app_id=app.id, mode=mode, name=name, key_hash=hash_api_key(secret),
                 prefix=secret[:15])
    db.session.add(key)
    if commit:
        db.session.commit()
    return key


@cli.command("create-key")
@click.option("--app", "app_name", required=True, help="the app's name or id")
@click.option("--mode", type=click.Choice(["test", "live"]), required=True)
@click.option("--name", default="", help="a label for staff")
def create_key_command(app_name: str, mode: str, name: str) -> None:
    """Create an API key: its id on the line before the last, the secret (shown once) on the last."""
    app = find_app(app_name)
    key, secret = issue_key(app, mode, name, commit=False)
    cli_audit("key.create", key.id, name=key.name, mode=key.mode, app=app.id)
    db.session.commit()
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
    if not _revoke(key):
        db.session.rollback()
        db.session.refresh(key)
        click.echo(f"key {key.id} ({key.prefix}) was already revoked at {iso(key.revoked_at)}")
        return
    db.session.commit()
    click.echo(f"revoked key {key.id} ({key.prefix}): calls with it now get 401")


def _revoke(key: ApiKey, **why) -> bool:
    """Revoke `key` and add its audit entry, for the caller to commit; False if it was revoked already.

    Compare-and-set: two revocations at once write one audit entry."""
    revoked = db.session.execute(
        update(ApiKey).where(ApiKey.id == key.id, ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)).rowcount == 1
    if revoked:
        cli_audit("key.revoke", key.id, name=key.name, prefix=key.prefix, **why)
    return revoked


DEV_KEY_NAME = "make run"


@cli.command("dev-key")
@click.option("--app", "app_name", default="default", show_default=True, help="the app's name or id")
@click.option("--name", default=DEV_KEY_NAME, show_default=True,
              help="the label that marks the development key (its earlier keys carry it too)")
@click.option("--new", "fresh", is_flag=True, help="revoke the current development key and make another")
def dev_key_command(app_name: str, name: str, fresh: bool) -> None:
    """The development test key `make run` prints: the same key on every run, not one more each time.

    The app's active test keys named NAME are the development keys. The newest whose secret can be
    derived again (HMAC of SECRET_KEY and its id) is printed again; every other one (left by an
    older `make run`, or made with another SECRET_KEY) is revoked. With none left, a new one is made.
    Its id is on the line before the last, the secret on the last."""
    app = find_app(app_name)
    keys = db.session.scalars(select(ApiKey).where(ApiKey.app_id == app.id, ApiKey.mode == "test",
                                                   ApiKey.name == name, ApiKey.revoked_at.is_(None))
                              .order_by(ApiKey.created_at.desc(), ApiKey.id.desc())).all()
    kept = None if fresh else next((k for k in keys if k.key_hash == hash_api_key(dev_key_secret(k.id))), None)
    revoked = []
    for key in keys:
        if key is not kept and _revoke(key, reason="dev-key"):
            revoked.append(key.id)
    if kept is None:
        key_id = new_id("key")
        kept = _add_key(app, "test", name, dev_key_secret(key_id), key_id, commit=False)
        cli_audit("key.create", kept.id, name=name, mode="test", app=app.id, dev_key=True)
        summary = f"made a new development test key of app {app.name!r}"
    else:
        summary = f"reusing the development test key of app {app.name!r}"
    db.session.commit()
    click.echo(summary + (f"; revoked {', '.join(revoked)}" if revoked else ""))
    click.echo(kept.id)
    click.echo(dev_key_secret(kept.id))


def dev_key_secret(key_id: str) -> str:
    """The development key's secret, derived from SECRET_KEY and the key's id, so it need not be
    kept anywhere (the database holds only its keyed hash, like every key's). Whoever holds
    SECRET_KEY can sign console sessions and make keys anyway: the derivation adds no power."""
    digest = hmac.new(current_app.config["SECRET_KEY"].encode(), f"wpotp dev-key:{key_id}".encode(),
                      hashlib.sha512).digest()
    number, chars = int.from_bytes(digest, "big"), []
    while len(chars) < 40:
        number, digit = divmod(number, 62)
        chars.append(BASE62[digit])
    return "wpotp_test_" + "".join(chars)


# Workers, templates, webhooks, maintenance --------------------------------------------------

@cli.command("worker")
@click.option("--burst", is_flag=True, help="work until the queues are empty, then stop")
@click.option("--threads", type=click.IntRange(1, MAX_THREADS), default=None,
              help="jobs in flight at once in this process (default: WORKER_THREADS)")
def worker_command(burst: bool, threads: int | None) -> None:
    """An RQ worker on every queue, with the scheduler and the periodic-job ticker.

    Run from a shell (not in a test app), the process becomes the lean worker of
    wpotp/jobs/main.py: the same PID and options, without the web app's modules."""
    app = current_app._get_current_object()
    if not app.testing:
        from .jobs.main import exec_lean_worker

        exec_lean_worker(burst, threads)
    from .jobs.worker import run_workers

    run_workers(app, threads or app.config["WORKER_THREADS"], burst=burst)


@cli.command("sync-templates")
@click.option("--create", is_flag=True,
              help="first create the app's AUTHENTICATION template in each language the account lacks it in")
@click.option("--update", is_flag=True,
              help="edit Meta's template where it has drifted from the app's settings (then pull)")
@click.option("--check", is_flag=True,
              help="compare Meta's template with the app's settings; exit 1 on drift (changes nothing here)")
@click.option("--app", "app_name", default="default", show_default=True,
              help="the app whose button and OTP lifetime the template follows (--create, --update, --check)")
@click.option("--name", "template_name", default="wpotp_verification", show_default=True,
              help="the template's name at Meta (--create, --update, --check)")
@click.option("--language", "languages", multiple=True,
              help="a language to create or check (repeatable; default: the local templates of that name)")
def sync_templates_command(create: bool, update: bool, check: bool, app_name: str, template_name: str,
                           languages: tuple[str, ...]) -> None:
    """Pull the WhatsApp Business account's message templates (Cloud API) into wpotp.

    With --create, the app's authentication template (button type, Android app, security
    recommendation, expiry and time-to-live from its OTP lifetime) is created first in each
    language Meta lacks it in; with --update, Meta's template is edited where it has drifted;
    then the pull runs. --check alone only compares and reports (exit 1 on drift).
    """
    from .otp import template_sync as ts

    problems = ts.sync_problems(current_app.config)
    if problems:
        raise click.ClickException("; ".join(problems))
    if create or update or check:
        app = find_app(app_name)
        wanted = ts.template_languages(template_name, languages, app)
    if create:
        _change_templates("templates.create", ts.create_auth_templates(app, template_name, wanted), app,
                          template_name)
    if update:
        _change_templates("templates.update", ts.update_auth_templates(app, template_name, wanted), app,
                          template_name)
    if check and not (create or update):
        _check_templates(app, template_name, wanted)
        return
    try:
        result = ts.sync_templates()
    except ts.TemplateSyncError as exc:  # as the console: the failed try is on the record too
        db.session.rollback()
        cli_audit("templates.sync", None, ok=False, error=exc.message[:300])
        db.session.commit()
        raise
    cli_audit("templates.sync", None, ok=True, **result)
    db.session.commit()
    click.echo(" ".join(f"{k}={v}" for k, v in result.items()))
    if check:
        _check_templates(app, template_name, wanted)


def _change_templates(action: str, reports, app: App, template_name: str) -> None:
    """Print each language's outcome of --create/--update as it comes; a template Meta created or
    edited is written to the audit log at once, and so is a refusal (then the command stops)."""
    from .otp.template_sync import TemplateSyncError

    try:
        for report in reports:
            click.echo(report.line(template_name))
            if report.state in ("created", "updated"):
                cli_audit(action, app.id, app=app.name, template=template_name, language=report.language,
                          ok=True, status=report.status or None, drift=report.problems[:10])
                db.session.commit()
    except TemplateSyncError as exc:
        db.session.rollback()
        cli_audit(action, app.id, app=app.name, template=template_name, ok=False, error=exc.message[:300])
        db.session.commit()
        raise


def _check_templates(app: App, template_name: str, languages: list[str]) -> None:
    from .otp.template_sync import check_auth_templates

    reports = check_auth_templates(app, template_name, languages)
    for report in reports:
        click.echo(report.line(template_name))
    drifted = [r.language for r in reports if r.state != "ok"]
    if drifted:
        click.echo(f"drift in {len(drifted)} of {len(reports)} language(s): {', '.join(drifted)}", err=True)
        sys.exit(1)


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
    cli_audit("webhook.set", app.id, url=endpoint.url, events=endpoint.events, new_secret=True,
              prefix=endpoint.secret_prefix)
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
    cli_audit("webhook.redeliver", event.id, delivery=delivery.id, event_type=event.type)
    db.session.commit()
    click.echo(f"queued {event.type} {event.id} to {delivery.url}")
    click.echo(delivery.id)


@cli.command("sweep")
def sweep_command() -> None:
    """Expire due OTPs and rescue stuck sends, once."""
    from .otp.maintenance import sweep

    result = sweep()
    if any(result.values()):  # a sweep that found nothing to do changed nothing
        cli_audit("sweep", None, **result)
        db.session.commit()
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
        cli_audit("retention.purge", **result.as_dict())
        db.session.commit()
    click.echo(f"{counts} batches={result.batches}")
