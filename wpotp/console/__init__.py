"""The admin console (SPEC §10): server-rendered pages under /console/.

Views live by page: auth.py (login, logout, the login wall, security headers, the app
switcher), admin.py (keys, users, audit, settings, sandbox, templates, webhooks), and
overview.py, otps.py, reports.py. A page module that is not there yet is skipped, so the
console runs while it is being built; any other import error is raised.
"""

from __future__ import annotations

import importlib

from flask import Blueprint

bp = Blueprint("console", __name__, url_prefix="/console")

from . import account, admin, auth, fraud, sms_texts  # noqa: E402,F401  (routes register on bp)

_OPTIONAL_PAGES = ("overview", "otps", "reports")


def _import_optional(name: str) -> bool:
    try:
        importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
        return False
    return True


_loaded = {name: _import_optional(name) for name in _OPTIONAL_PAGES}

if not _loaded["overview"]:

    @bp.get("/")
    def overview():
        """Stands in until overview.py exists: `/` and the logo link here."""
        from flask import render_template
        from flask_babel import gettext as _

        return render_template("console/error.html", title=_("Overview"),
                               message=_("The overview page is not built yet."), status=200)
