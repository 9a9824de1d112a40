"""What an app's WhatsApp AUTHENTICATION template must be, in Meta's terms (docs/channels.md,
"Autofill buttons"; docs/whatsapp.md).

Meta fixes the body of an authentication template ("*{{1}}* is your verification code.") and
lets the business choose: the security recommendation after it, the expiry warning in the
footer (`code_expiration_minutes`, 1-90; the button stops working after it), the button
(`otp_type` COPY_CODE, ONE_TAP or ZERO_TAP; the last two name the Android apps the code may be
handed to, `supported_apps`, and zero-tap needs `zero_tap_terms_accepted`) and how long Meta
keeps trying to deliver (`message_send_ttl_seconds`, 30-900 for authentication).

wpotp derives the time-based ones from the app's OTP lifetime (`App.otp_ttl`), so the message is
never delivered, and its button never works, after the code is dead. Creating and checking the
templates at Meta is template_sync.py's; the Graph calls are providers/cloud_api.py's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flask_babel import gettext as _

from ..models import App

OTP_TYPES = ("COPY_CODE", "ONE_TAP", "ZERO_TAP")
AUTOFILL_TYPES = ("ONE_TAP", "ZERO_TAP")

# Android's applicationId: two or more dot-separated segments, each a letter then letters, digits
# or underscores. Meta caps `package_name` at 224 characters.
PACKAGE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+$")
PACKAGE_NAME_MAX = 224
# The SMS Retriever app hash: the first 11 characters of base64(SHA-256(package + " " + cert)).
SIGNATURE_HASH = re.compile(r"^[A-Za-z0-9+/]{11}$")

CODE_EXPIRATION_MINUTES = (1, 90)  # Meta's range for the footer's code_expiration_minutes
AUTH_TTL_SECONDS = (30, 900)  # Meta's range of message_send_ttl_seconds for AUTHENTICATION


@dataclass(frozen=True)
class AuthTemplateOptions:
    """The options of one app's authentication template, as Meta names them."""

    otp_type: str
    supported_apps: tuple[tuple[str, str], ...]  # (package_name, signature_hash) pairs
    zero_tap_terms_accepted: bool
    add_security_recommendation: bool
    code_expiration_minutes: int
    message_send_ttl_seconds: int


def code_expiration_minutes(ttl_seconds: int) -> int:
    """Whole minutes, rounded down (the button must not outlive the code), within Meta's 1-90."""
    low, high = CODE_EXPIRATION_MINUTES
    return max(low, min(high, ttl_seconds // 60))


def message_send_ttl_seconds(ttl_seconds: int) -> int:
    """The OTP's lifetime, within what Meta allows for authentication messages (30 s - 15 min)."""
    low, high = AUTH_TTL_SECONDS
    return max(low, min(high, ttl_seconds))


def options_for(app: App) -> AuthTemplateOptions:
    autofill = app.otp_type in AUTOFILL_TYPES
    apps = ((app.android_package_name, app.android_signature_hash),) if autofill else ()
    return AuthTemplateOptions(
        otp_type=app.otp_type, supported_apps=apps,
        zero_tap_terms_accepted=app.otp_type == "ZERO_TAP" and app.zero_tap_terms_accepted,
        add_security_recommendation=bool(app.security_recommendation),
        code_expiration_minutes=code_expiration_minutes(app.otp_ttl),
        message_send_ttl_seconds=message_send_ttl_seconds(app.otp_ttl))


def button_problems(otp_type: str, package_name: str, signature_hash: str, terms_accepted: bool) -> dict[str, str]:
    """What is wrong with an app's button settings, by field name; empty when Meta would take them.

    The package name and hash are needed (and checked) only for ONE_TAP and ZERO_TAP; ZERO_TAP
    also needs the business to have accepted Meta's zero-tap terms.
    """
    if otp_type not in OTP_TYPES:
        return {"otp_type": _("Use one of %(types)s.", types=", ".join(OTP_TYPES))}
    if otp_type not in AUTOFILL_TYPES:
        return {}
    problems = {}
    if not package_name:
        problems["android_package_name"] = _("%(type)s needs the Android app's package name.", type=otp_type)
    elif len(package_name) > PACKAGE_NAME_MAX or not PACKAGE_NAME.match(package_name):
        problems["android_package_name"] = _("Write a package name like com.example.shop (two or more segments).")
    if not signature_hash:
        problems["android_signature_hash"] = _("%(type)s needs the app's 11-character signature hash.", type=otp_type)
    elif not SIGNATURE_HASH.match(signature_hash):
        problems["android_signature_hash"] = _("The signature hash is 11 characters of A-Z, a-z, 0-9, + and /.")
    if otp_type == "ZERO_TAP" and not terms_accepted:
        problems["zero_tap_terms_accepted"] = _("Zero-tap needs Meta's zero-tap terms accepted.")
    return problems


def creation_payload(name: str, language: str, options: AuthTemplateOptions) -> dict:
    """The body of POST /{waba-id}/message_templates for this authentication template."""
    button: dict = {"type": "OTP", "otp_type": options.otp_type}
    if options.otp_type in AUTOFILL_TYPES:
        button["supported_apps"] = [{"package_name": p, "signature_hash": h} for p, h in options.supported_apps]
    if options.otp_type == "ZERO_TAP":
        button["zero_tap_terms_accepted"] = options.zero_tap_terms_accepted
    return {"name": name, "language": language, "category": "AUTHENTICATION",
            "message_send_ttl_seconds": options.message_send_ttl_seconds,
            "components": [{"type": "BODY", "add_security_recommendation": options.add_security_recommendation},
                           {"type": "FOOTER", "code_expiration_minutes": options.code_expiration_minutes},
                           {"type": "BUTTONS", "buttons": [button]}]}


def edit_payload(options: AuthTemplateOptions) -> dict:
    """The body of POST /{template-id} that brings an existing template in line with `options`."""
    body = creation_payload("", "", options)
    return {"components": body["components"], "message_send_ttl_seconds": body["message_send_ttl_seconds"]}


def drift(remote, wanted: AuthTemplateOptions) -> list[str]:
    """How Meta's template (a cloud_api.WabaTemplate) differs from what the app wants; [] when in step.

    A missing expiry warning counts as drift (the app always wants one). The time-to-live is
    compared only when Meta reports it: not every Graph version lists `message_send_ttl_seconds`,
    and a check that always failed would be no check (`unchecked` names it then).
    """
    found = []
    if remote.category != "AUTHENTICATION":
        found.append(f"category is {remote.category or 'unknown'}, not AUTHENTICATION")
    have = {
        "otp_type": remote.otp_type,
        "supported_apps": tuple(sorted(remote.supported_apps)),
        "add_security_recommendation": bool(remote.add_security_recommendation),
        "code_expiration_minutes": remote.code_expiration_minutes,
        "message_send_ttl_seconds": remote.message_send_ttl_seconds,
    }
    want = {
        "otp_type": wanted.otp_type,
        "supported_apps": tuple(sorted(wanted.supported_apps)),
        "add_security_recommendation": wanted.add_security_recommendation,
        "code_expiration_minutes": wanted.code_expiration_minutes,
        "message_send_ttl_seconds": wanted.message_send_ttl_seconds,
    }
    if have["message_send_ttl_seconds"] is None:
        del want["message_send_ttl_seconds"]
    for field, value in want.items():
        if have[field] != value:
            found.append(f"{field} is {_show(have[field])} at Meta, the app wants {_show(value)}")
    return found


def unchecked(remote) -> list[str]:
    """What `drift` could not compare because Meta did not report it."""
    if remote.message_send_ttl_seconds is None:
        return ["message_send_ttl_seconds: Meta did not report it, so it was not checked"]
    return []


def _show(value) -> str:
    if value is None:
        return "unset"
    if isinstance(value, tuple):
        return ", ".join(f"{p}/{h}" for p, h in value) or "none"
    return str(value).lower() if isinstance(value, bool) else str(value)
