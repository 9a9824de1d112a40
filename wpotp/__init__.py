"""wpotp: a self-hosted WhatsApp one-time-password service."""

from __future__ import annotations

import time
from pathlib import Path

import click
from flask import Flask, redirect, request, url_for
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix

from config import Config, ConfigError, provider_problems, sms_provider_problems

from .extensions import csrf, db, init_limiter, limiter_skips, login_manager, redis_client
from .i18n import init_babel
from .logs import configure_logging, install_request_id
from .settings import refresh_settings

MIGRATIONS_DIR = str(Path(__file__).resolve().parent.parent / "migrations")


def create_app(config: Config | None = None, serve_http: bool = True) -> Flask:
    """Build the Flask app. No side effects at import time; everything hangs off `config`.

    serve_http=False builds what a worker process needs (the database, Redis, the limiter, the
    queue, the CLI, /metrics' counters) without the API, the dialects, the console and the
    receipt endpoints: their modules (pydantic's schemas, the forms, the pages) are not even
    imported, about 10 MB of the worker's memory (`wpotp worker`, wpotp/jobs/main.py)."""
    if config is None:
        config = Config.from_env()
    elif not hasattr(config, "SQLALCHEMY_DATABASE_URI"):
        config.load()
    app = Flask(__name__, instance_path=str(config.INSTANCE_DIR))
    app.config.from_mapping(config.as_flask_config())
    _check_provider(app)
    configure_logging(app)
    if app.config["TRUSTED_PROXIES"]:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["TRUSTED_PROXIES"], x_proto=1, x_host=1)

    install_request_id(app)  # first, so even a request the limiter refuses carries its id
    app.before_request(refuse_long_streams)  # before anything (the limiter, for Wawp) reads the body
    db.init_app(app)
    login_manager.init_app(app)
    init_babel(app)  # the console's languages and time zones (wpotp/i18n.py)
    csrf.init_app(app)
    init_limiter(app)  # limiter.init_app, with this app's storage options only
    redis_client.init_app(app)
    from .jobs import port as queue_port

    queue_port.init_app(app)  # the queue port services hand work to (extensions.job_queue)
    refresh_settings(app)  # the services' settings, read from app.config once (settings.py)
    with app.app_context():
        _tune_sqlite(db.engine)
        _ping_when_idle(db.engine, app.config["DATABASE_PING_AFTER_MS"] / 1000)

    from . import models
    from .cache import watch_bulk_changes
    from .cli import cli

    watch_bulk_changes()  # the one Session listener left: hand-run bulk UPDATEs of cached rows
    app.cli.add_command(cli)
    app.cli.add_command(migration_commands)
    from . import metrics

    if not serve_http:
        metrics.init_app(app)  # the job counters; /metrics is registered but nobody asks a worker
        return app
    from .api import bp as api_bp
    from .api.errors import register_error_handlers
    from .compat import register_compat
    from .console import bp as console_bp
    from .health import bp as health_bp
    from .inbound import bp as inbound_bp

    login_manager.user_loader(lambda user_id: db.session.get(models.User, user_id))
    csrf.exempt(api_bp)  # the API authenticates with keys, not cookies
    app.register_blueprint(api_bp)
    app.register_blueprint(limiter_skips(health_bp))
    csrf.exempt(inbound_bp)  # providers authenticate by signature or URL token
    limiter_skips(inbound_bp)  # receipts must never be refused for volume
    app.register_blueprint(inbound_bp)
    app.register_blueprint(console_bp)
    register_compat(app)
    metrics.init_app(app)  # /metrics, and a count and a latency for every answer (wpotp/metrics.py)
    app.add_url_rule("/", "root", lambda: redirect(url_for("console.overview")))
    register_error_handlers(app)
    return app


def init_migrations(app: Flask) -> None:
    """Flask-Migrate, for what runs migrations: `flask db ...`, `wpotp init` and the tests.

    Nothing else imports it: Alembic, with the Mako and Pygments it pulls in, is about 12 MB of
    every gunicorn worker's and worker process's memory that serving never uses
    (docs/performance.md)."""
    if "migrate" not in app.extensions:
        from flask_migrate import Migrate

        Migrate(app, db, directory=MIGRATIONS_DIR)


def upgrade_database(app: Flask) -> None:
    """Apply every migration not yet applied (in an app context of `app`)."""
    init_migrations(app)
    from flask_migrate import upgrade

    upgrade(directory=MIGRATIONS_DIR)


@click.command("db", add_help_option=False,
               context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def migration_commands(ctx: click.Context) -> None:
    """Database migrations (Flask-Migrate's `flask db ...`: upgrade, downgrade, current, ...)."""
    from flask.cli import ScriptInfo

    info = ctx.find_object(ScriptInfo)
    init_migrations(info.load_app())
    from flask_migrate.cli import db as commands  # added by init_migrations' Migrate too

    commands.main(args=ctx.args, prog_name=ctx.command_path, obj=info, standalone_mode=True)


def refuse_long_streams() -> None:
    """A body without Content-Length (Transfer-Encoding: chunked) over MAX_CONTENT_LENGTH is a
    413, as one with a Content-Length is. werkzeug stops reading such a stream at the limit
    without a word, so every reader would see a truncated body (a 400 "not JSON", a form cut
    short): read it here once (it is cached for them) and look for one byte past the limit."""
    limit = request.max_content_length
    if limit is None or request.content_length is not None or "wsgi.input_terminated" not in request.environ:
        return
    if len(request.get_data(cache=True)) >= limit and request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()


def _check_provider(app: Flask) -> None:
    """Refuse to start with a provider whose settings are incomplete, naming each one."""
    name = app.config["WPOTP_PROVIDER"]
    problems = provider_problems(app.config, name)
    if problems:
        raise ConfigError(f"WPOTP_PROVIDER={name} is not configured: " + "; ".join(problems))
    sms = app.config.get("SMS_PROVIDER", "sandbox")
    problems = sms_provider_problems(app.config, sms)
    if problems:
        raise ConfigError(f"SMS_PROVIDER={sms} is not configured: " + "; ".join(problems))


def _ping_when_idle(engine, after: float) -> None:
    """SQLAlchemy's pool_pre_ping, for connections that sat in the pool `after` seconds or more.

    pool_pre_ping tests every connection the pool hands out: one more round trip to the database
    on every request and twice per send batch. A connection checked in moments ago is all but
    certainly alive; one that waited (through a restart, a failover, a pooler's idle timeout) is
    tested, and a dead one is replaced before anybody uses it (DisconnectionError: the pool
    reconnects, up to three times). The rare dead one that slips through (the server went away
    within `after`) fails its statement as it would without a pool; SQLAlchemy then invalidates
    every connection as old as it, the request answers 503 and the next ones reconnect.
    after=0 (DATABASE_PING_AFTER_MS=0) leaves pool_pre_ping on instead. SQLite has nothing to ping."""
    if after <= 0 or engine.dialect.name == "sqlite":
        return
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _idle_since(_dbapi_conn, record):
        record.info["wpotp_idle_since"] = time.monotonic()  # .info goes with the DBAPI connection

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_conn, record, _proxy):
        since = record.info.get("wpotp_idle_since")
        if since is None or time.monotonic() - since < after:  # new, or back in the pool only just now
            return
        try:
            dialect.do_ping(dbapi_conn)
        except Exception as exc:  # noqa: BLE001  (any failure: this connection is not to be used)
            raise sa_exc.DisconnectionError(f"the pooled connection failed its ping: {exc}") from exc


def _tune_sqlite(engine) -> None:
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):  # WAL lets readers run while a writer commits
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()
