"""/compat/whatotp — placeholder; routes come with issue 7."""

from __future__ import annotations

from . import compat_blueprint

bp = compat_blueprint("whatotp")
