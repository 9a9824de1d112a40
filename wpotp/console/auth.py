"""Who may see the console: the login wall, roles, login/logout, the app switcher, and the
security headers every console answer carries."""

from __future__ import annotations

import time
from functools import wraps
from urllib.parse import urlsplit

from flask import (
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_limiter.errors import RateLimitExceeded
from flask_login import current_user, login_user, logout_user
from flask_wtf.csrf import CSRFError
from sqlalchemy import select
from werkzeug.exceptions import HTTPException
from werkzeug.security import check_password_hash, generate_password_hash

from ..extensions import db, limiter
from ..i18n import limit_words
from ..models import App, User, password_hash_method
from . import bp
from .audit import action_label, audit, readable_details
from .forms import LoginForm

PUBLIC_ENDPOINTS = {"console.login", "console.set_language"}
SESSION_APP = "console_app_id"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",  # pages may show a one-time secret or codes: never from a cache
}

_dummy_hashes: dict[str, str] = {}  # PASSWORD_HASH_METHOD -> a hash of no real password


def safe_next(target: str | None) -> str | None:
    """`target` if it is a path inside the console on this host, else None (no open redirect)."""
    if not target or not target.startswith("/console") or "\\" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or target.startswith("//"):
        return None
    return target


def is_admin() -> bool:
    return bool(current_user.is_authenticated and current_user.role == "admin")


def admin_required(view):
    """Logged in AND role admin; a viewer gets the 403 page."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        if not current_user.is_authenticated:
            return _to_login()
        if current_user.role != "admin":
            return error_page(403, _("Admins only"), _("Your role is viewer: this action needs an admin."))
        return view(*args, **kwargs)

    return wrapper


def current_console_app() -> App:
    """The app the console is looking at: the one picked in the switcher, else "default", else
    the oldest. With no app at all, creates "default" (as `wpotp init` does)."""
    if "console_app" in g:
        return g.console_app
    chosen = None
    app_id = session.get(SESSION_APP)
    if app_id:
        chosen = db.session.get(App, app_id)
    if chosen is None:
        chosen = db.session.scalars(select(App).where(App.name == "default")).first()
    if chosen is None:
        chosen = db.session.scalars(select(App).order_by(App.created_at, App.id)).first()
    if chosen is None:
        chosen = App(name="default")
        db.session.add(chosen)
        db.session.commit()
    g.console_app = chosen
    return chosen


def error_page(status: int, title: str, message: str, headers: dict | None = None):
    body = render_template("console/error.html", title=title, message=message, status=status)
    return body, status, headers or {}


def _to_login():
    target = safe_next(request.full_path.rstrip("?")) if request.method == "GET" else None
    location = url_for("console.login", next=target) if target else url_for("console.login")
    if request.headers.get("HX-Request"):
        return "", 204, {"HX-Redirect": location}  # htmx follows this instead of swapping in a login page
    return redirect(location)


@bp.before_request
def login_wall():
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if not current_user.is_authenticated:
        return _to_login()
    return None


@bp.after_request
def security_headers(response):
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


@bp.app_template_global()
def has_endpoint(name: str) -> bool:
    """True when a route named `name` exists (the nav links only pages that are built)."""
    return name in current_app.view_functions


@bp.app_template_global()
def audit_action_label(action: str) -> str:
    return action_label(action)


@bp.app_template_global()
def audit_details(details: dict | None) -> list[tuple[str, str]]:
    return readable_details(details)


@bp.context_processor
def console_context() -> dict:
    if not current_user.is_authenticated:
        return {"is_admin": False}
    apps = db.session.scalars(select(App).order_by(App.name)).all()
    return {"console_app": current_console_app(), "console_apps": apps, "is_admin": is_admin()}


def _login_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


def _password_matches(user: User | None, password: str) -> bool:
    """Check against a dummy hash when the email is unknown, so both cases cost the same."""
    if user is None:
        method = password_hash_method()
        if method not in _dummy_hashes:  # one per method: the dummy must cost what a real check does
            _dummy_hashes[method] = generate_password_hash("not a real password", method=method)
        check_password_hash(_dummy_hashes[method], password)
        return False
    return user.check_password(password)


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def login():
    form = LoginForm()
    next_url = safe_next(request.args.get("next"))
    if current_user.is_authenticated and request.method == "GET":
        return redirect(next_url or url_for("console.overview"))
    if form.validate_on_submit():
        email = form.email.data.strip().lower()
        user = db.session.scalars(select(User).where(User.email == email)).first()
        if _password_matches(user, form.password.data):
            session.clear()  # a fresh session at the privilege change
            login_user(user)
            audit("login", user.id)
            db.session.commit()
            return redirect(next_url or url_for("console.overview"))
        audit("login_failed", None, email=email[:254])
        db.session.commit()
        form.password.errors.append(_("Wrong email or password."))
        return render_template("console/login.html", form=form, next_url=next_url), 401
    return render_template("console/login.html", form=form, next_url=next_url)


@bp.post("/logout")
def logout():
    audit("logout", current_user.id)
    db.session.commit()
    logout_user()
    session.clear()
    flash(_("You are signed out."), "info")
    return redirect(url_for("console.login"))


@bp.post("/app")
def switch_app():
    """The header's app switcher (admins and viewers): remembered in the session."""
    chosen = db.session.get(App, request.form.get("app_id", "")[:40])
    if chosen is None:
        return error_page(404, _("No such app"), _("That app does not exist."))
    session[SESSION_APP] = chosen.id
    flash(_("Now looking at app %(name)s.", name=chosen.name), "info")
    return redirect(safe_next(request.form.get("next")) or url_for("console.overview"))


@bp.errorhandler(RateLimitExceeded)
def too_many_logins(exc: RateLimitExceeded):
    current = limiter.current_limit
    retry = max(1, int(current.reset_at - time.time()) + 1) if current else 60
    message = _("Too many sign-in attempts from your address (%(limit)s). Try again in %(seconds)s seconds.",
                limit=limit_words(str(exc.limit.limit)), seconds=retry)
    return error_page(429, _("Too many attempts"), message, {"Retry-After": str(retry)})


@bp.errorhandler(CSRFError)
def csrf_refused(exc: CSRFError):
    return error_page(400, _("Form refused"),
                      _("The form's security token is missing or out of date. Reload the page and submit the form "
                        "again."))


@bp.errorhandler(HTTPException)
def http_error(exc: HTTPException):
    title, message = http_error_text(exc)
    return error_page(exc.code or 500, title, message)


def http_error_text(exc: HTTPException) -> tuple[str, str]:
    """An HTTP error's title and explanation in the page's language (werkzeug's are English)."""
    known = {
        400: (_("Bad request"), _("The request could not be understood. Go back and try again.")),
        403: (_("Forbidden"), _("You may not open this page.")),
        404: (_("Not found"), _("There is nothing at this address. It may have been deleted, or the link is "
                                 "mistyped.")),
        405: (_("Method not allowed"), _("This page cannot be used that way.")),
        413: (_("Too large"), _("What was sent is too large.")),
        429: (_("Too many requests"), _("Too many requests: wait a moment and try again.")),
    }
    if exc.code in known:
        return known[exc.code]
    if exc.code and exc.code >= 500:
        return _("Server error"), _("Something went wrong on the server. Try again in a moment.")
    return exc.name, exc.description or ""
