"""/compat/wawp — Wawp's OTP calls: GET or POST /v2/auth/otp/send and /v2/auth/otp/verify.

Wawp carries its credentials as parameters: `instance_id` (here, the app's public id `app_...`)
and `access_token` (a wpotp API key), in the query string or, for POST, in a JSON or form body.
The recipient is `chatId`: international digits without '+' (WhatsApp's `<digits>@c.us` too).
Verify names no OTP id, so it checks the app's newest active OTP for that chat. Errors are
Wawp-style: `{"code": "<lowercase name>", "message": ..., <details in snake_case>}`.
"""

from __future__ import annotations

import json
import re

from flask import g, jsonify, request
from pydantic import BaseModel, Field

from ..api.auth import require_key
from ..api.errors import as_error
from ..errors import InvalidPhone, OtpNotFound, Unauthorized, ValidationError
from ..extensions import client_ip
from ..models import ApiKey, App
from ..otp import queries, service
from ..otp.phones import normalize_recipient
from . import compat_blueprint, snake_name

_CHAT_ID = re.compile(r"^\+?([1-9][0-9]{5,14})(@c\.us|@s\.whatsapp\.net)?$")
_LANG = re.compile(r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})?$")
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


# --- parameters ---------------------------------------------------------------------------------

def _body() -> dict | None:
    """A POST's fields (JSON object or form); {} without a body, None when it cannot be read as either.

    Read once per request: the key extractor, the credential check and the call all ask for it.
    """
    if "wawp_body" not in g:
        g.wawp_body = _read_body()
    return g.wawp_body


def _read_body() -> dict | None:
    if request.method != "POST":
        return {}
    if request.mimetype in FORM_TYPES:
        return request.form.to_dict()
    raw = request.get_data(cache=True)
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def params(strict: bool = True) -> dict:
    """The call's parameters: the query string wins over the body, as Wawp documents them there."""
    body = _body()
    if body is None:
        if strict:
            raise ValidationError("The request body must be a JSON object or a form.",
                                  details={"fields": {"body": "not a JSON object or form"}})
        body = {}
    return {**body, **request.args.to_dict()}


def wawp_key() -> str | None:
    """`access_token`, wherever the call put it (the limiter and require_key ask for it here)."""
    value = params(strict=False).get("access_token")
    return (value.strip() or None) if isinstance(value, str) else None


bp = compat_blueprint("wawp", key_extractor=wawp_key)


def text(p: dict, name: str, max_length: int, *, required: bool = False) -> str | None:
    """A parameter as one line of text (no control characters, bounded), or None when absent."""
    value = p.get(name)
    if value is None or value == "":
        if required:
            raise ValidationError(f"{name} is required.", details={"fields": {name: "required"}})
        return None
    if not isinstance(value, str) or len(value) > max_length or not value.isprintable():
        raise ValidationError(f"{name} is not valid.",
                              details={"fields": {name: f"expected printable text of at most {max_length} characters"}})
    return value


def recipient(p: dict) -> str:
    """`905551112233` or `905551112233@c.us` -> `+905551112233`; the service checks it is a real number."""
    chat = p.get("chatId")
    if isinstance(chat, int) and not isinstance(chat, bool):
        p = {**p, "chatId": str(chat)}  # JSON clients may send the number as a number
    match = _CHAT_ID.match(text(p, "chatId", 64, required=True).strip())
    if match is None:
        raise InvalidPhone(details={"chatId": "international digits without +, like 905551112233"})
    return "+" + match.group(1)


def language(p: dict) -> str:
    lang = text(p, "lang", 16) or "en"  # Wawp's default
    if not _LANG.match(lang):
        raise ValidationError("lang is not a language code.", details={"fields": {"lang": "like en or pt_BR"}})
    return lang


def authorised() -> tuple[ApiKey, App]:
    """Both credentials must hold: a live access_token, and instance_id naming that key's app."""
    try:
        key, app = require_key()
    except Unauthorized:
        raise Unauthorized("Invalid access_token: missing, unknown or revoked.") from None
    if params(strict=False).get("instance_id") != app.id:
        raise Unauthorized("Invalid instance_id: it is not the app of this access_token.")
    return key, app


class SendParams(BaseModel):
    """The parameters of /v2/auth/otp/send as the functions above read them (`text`, `recipient`,
    `language`), for the dialect's OpenAPI document (wpotp/apidoc): Wawp's loose parameters are read
    by hand, not by this model; tests/apidoc's fuzzing holds the two to the same answers."""
    instance_id: str = Field(description="The app's id, `app_...`.")
    access_token: str = Field(description="A wpotp API key.")
    chatId: str = Field(max_length=64, pattern=r"^\+?[1-9][0-9]{5,14}(@c\.us|@s\.whatsapp\.net)?$",  # noqa: N815
                        examples=["905551112233"])
    lang: str | None = Field(None, max_length=16, pattern=r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})?$")
    footer: str | None = Field(None, max_length=200)


class VerifyParams(BaseModel):
    """The parameters of /v2/auth/otp/verify (see SendParams)."""
    instance_id: str = Field(description="The app's id, `app_...`.")
    access_token: str = Field(description="A wpotp API key.")
    chatId: str = Field(max_length=64, pattern=r"^\+?[1-9][0-9]{5,14}(@c\.us|@s\.whatsapp\.net)?$",  # noqa: N815
                        examples=["905551112233"])
    code: str = Field(min_length=1, max_length=16, examples=["482913"])


# --- calls --------------------------------------------------------------------------------------

@bp.route("/v2/auth/otp/send", methods=["GET", "POST"])
def send():
    key, app = authorised()
    p = params()
    req = service.SendRequest(recipient=recipient(p), language=language(p), footer=text(p, "footer", 200))
    otp, _created = service.send_otp(app, key, req)
    return jsonify({"code": "success", "message": "Verification code sent successfully",
                    "expires_in": otp.ttl_seconds, "job_id": otp.id})


@bp.route("/v2/auth/otp/verify", methods=["GET", "POST"])
def verify():
    _key, app = authorised()
    p = params()
    number, _country = normalize_recipient(recipient(p))
    code = text(p, "code", 16, required=True)
    otp = queries.latest_active_otp(app.id, number)
    if otp is None:
        raise OtpNotFound("No active verification code for this chatId: send one first (codes are single-use).")
    otp = service.verify_otp(app, otp.id, code, client_ip())
    return jsonify({"code": "success", "message": "Verification code verified successfully", "verified": True,
                    "job_id": otp.id})


# --- errors -------------------------------------------------------------------------------------

@bp.errorhandler(Exception)
def wawp_error(exc: Exception):
    """Every failure in Wawp's flat style, with the native status (401, 429 + Retry-After, ...)."""
    err = as_error(exc)
    details = {snake_name(name): value for name, value in err.details.items()}
    response = jsonify({**details, "code": err.code.lower(), "message": err.message})
    response.status_code = err.status
    response.headers.update(err.headers)
    return response
