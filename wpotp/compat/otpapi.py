"""/compat/otpapi — the generic OTP API: appid-scoped calls, snake_case fields, key id + secret.

Its clients authenticate with `X-API-Key` (our key's public id, `key_...`) and `X-API-Secret`
(the key itself), HTTP Basic with the same pair, or `Authorization: Bearer` with the key or
base64("key_...:secret"). Fields other than the dialect's own (`appid`, `channel`, `from`,
`verification_id`) are the native API's under snake_case names: they are renamed and validated
by the very /v1 schemas, so both APIs accept exactly the same values. The reference documents
no error body, so errors keep the native envelope and statuses, with snake_case details.
"""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass
from typing import TypeVar

from flask import g, jsonify, request
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticError

from ..api.auth import KEY_PREFIXES, lookup_key, require_key
from ..api.errors import as_error
from ..api.logs import LogQuery, events_page, log_item
from ..api.otp import otp_filter
from ..api.reports import RateLimitQuery, ReportQuery, rate_limits_for, report_for
from ..api.schemas import ListOtpQuery, SendOtpBody, Strict, Text, VerifyBody, parse_body, parse_query
from ..api.serializers import attempt_item, otp_detail, otp_summary
from ..errors import OtpNotFound, Unauthorized, ValidationError, WpotpError
from ..extensions import client_ip
from ..models import ApiKey, App, Otp
from ..otp import queries, service
from ..otp.phones import normalize_recipient
from ..util import iso
from . import compat_blueprint, snake_name

T = TypeVar("T", bound=BaseModel)


class FieldsError(ValidationError):
    """Fields named as the client sent them (by `translate`): answered as they are."""


class ChannelNotSupported(WpotpError):
    status, code, message = 400, "CHANNEL_NOT_SUPPORTED", "wpotp sends OTPs over WhatsApp or SMS only."


CHANNELS = ("whatsapp", "sms")


# --- credentials ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Credentials:
    secret: str | None = None
    key_ids: tuple[str, ...] = ()  # public ids the client named; each must be the secret's key
    jwt: bool = False


def credentials() -> Credentials:
    """X-API-Key + X-API-Secret, else Basic (id:secret), else Bearer (the secret or base64 id:secret)."""
    if "otpapi_credentials" not in g:
        named = request.headers.get("X-API-Key", "").strip()
        ids = (named,) if named else ()
        secret = request.headers.get("X-API-Secret", "").strip()
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token, scheme = token.strip(), scheme.lower()
        if secret:
            found = Credentials(secret, ids)
        elif scheme == "bearer" and token.startswith(KEY_PREFIXES):
            found = Credentials(token, ids)
        elif scheme in ("basic", "bearer"):
            found = _pair(token, ids, jwt=scheme == "bearer" and token.count(".") == 2)
        else:
            found = Credentials(key_ids=ids)
        g.otpapi_credentials = found
    return g.otpapi_credentials


def _pair(token: str, ids: tuple[str, ...], jwt: bool) -> Credentials:
    """`base64(key id:secret)`, standard or URL-safe alphabet, padding optional."""
    try:
        raw = base64.b64decode(token.translate(str.maketrans("-_", "+/")) + "=" * (-len(token) % 4), validate=True)
        key_id, colon, secret = raw.decode().partition(":")
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        return Credentials(jwt=jwt)
    if not colon:
        return Credentials(jwt=jwt)
    return Credentials(secret.strip() or None, ids + ((key_id.strip(),) if key_id.strip() else ()))


def otpapi_key() -> str | None:
    """The secret, wherever the call put it (the limiter and lookup_key ask for it here)."""
    return credentials().secret


bp = compat_blueprint("otpapi", key_extractor=otpapi_key)


def authorise() -> tuple[ApiKey, App]:
    """(key, app) for the presented secret, provided every public id named with it is its own."""
    found, key = credentials(), lookup_key()
    if key is None:
        if found.jwt:
            raise Unauthorized("JWT bearer tokens are not supported; send base64(key id:secret) or the key itself.")
        raise Unauthorized()
    if not all(hmac.compare_digest(i.encode(), key.id.encode()) for i in found.key_ids):
        raise Unauthorized("The API key id does not belong to this secret.")
    return require_key()


# --- requests: the dialect's own fields, the rest translated onto the native schemas ---------------

class Own(Strict):
    """The dialect's own fields; every other field goes to `translate`."""
    model_config = ConfigDict(extra="allow", strict=True)
    appid: Text | None = Field(None, min_length=1, max_length=64)


class OwnQuery(Own):
    model_config = ConfigDict(extra="allow", strict=False)


class SendOwn(Own):
    appid: Text = Field(min_length=1, max_length=64)
    channel: Text = Field("whatsapp", max_length=32)
    from_: Text | None = Field(None, alias="from", max_length=64)  # a sender label: WhatsApp has no use for it


class ByIdOwn(Own):
    appid: Text = Field(min_length=1, max_length=64)
    verification_id: Text = Field(min_length=1, max_length=64)


class VerifyOwn(ByIdOwn):
    recipient: Text | None = Field(None, min_length=1, max_length=32)


class ByIdQuery(OwnQuery):
    verification_id: Text = Field(min_length=1, max_length=64)


SEND = {"recipient": "recipient", "template_id": "templateId", "reference": "reference",
        "language": "language", "length": "length", "ttl": "ttl"}
VERIFY = {"otp_code": "code"}
LIST = {name: name for name in ("status", "recipient", "reference", "from", "to", "limit", "cursor")}
LOGS = {"type": "type", "verification_id": "otpId", "message_id": "messageId", "from": "from", "to": "to",
        "limit": "limit", "cursor": "cursor"}
REPORT = {"from": "from", "to": "to", "interval": "interval"}
RATE_LIMITS = {"recipient": "recipient"}


def parse(app: App, own: type[T]) -> T:
    """The dialect's own fields from the body (POST) or query (GET), and `appid` checked.

    A wrong appid is 401 like wrong credentials: the key belongs to one app, and the SPEC's
    API never answers 403."""
    mine = parse_body(own) if request.method == "POST" else parse_query(own)
    if mine.appid is not None and mine.appid != app.id:
        raise Unauthorized("The appid is not the app of this API key.",
                           details={"fields": {"appid": "not the app of this API key"}})
    return mine


def translate(model: type[T] | None, mine: BaseModel, names: dict[str, str]) -> T | None:
    """Validate the remaining fields with the native schema `model`, under their native names;
    errors name the dialect's fields. Fields outside `names` are unknown."""
    data = mine.model_extra or {}
    unknown = sorted(name[:64] for name in data if name not in names)
    if unknown:
        raise FieldsError(f"Unknown fields: {', '.join(unknown)}.",
                              details={"fields": {name: "unknown field" for name in unknown}})
    if model is None:
        return None
    try:
        return model.model_validate({names[name]: value for name, value in data.items()})
    except PydanticError as exc:
        ours = {native: name for name, native in names.items()}
        fields = {ours.get(str(err["loc"][0]), str(err["loc"][0])) if err["loc"] else "body": err["msg"]
                  for err in exc.errors()}
        raise FieldsError(f"Invalid fields: {', '.join(sorted(fields))}.", details={"fields": fields}) from None


# --- answers --------------------------------------------------------------------------------------

RENAMED = {"otp_id": "verification_id"}


def snake(value):
    """camelCase keys to snake_case, all the way down (`QUEUED`-style keys stay as they are)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            name = snake_name(key)
            out[RENAMED.get(name, name)] = snake(item)
        return out
    if isinstance(value, list):
        return [snake(item) for item in value]
    return value


def verification(otp: Otp, detail: bool = True, with_timeline: bool = True) -> dict:
    """An OTP as this dialect shows it: the native fields in snake_case, its id as `verification_id`."""
    fields = snake(otp_detail(otp, with_timeline) if detail else otp_summary(otp))
    return {"verification_id": fields.pop("id"), **fields}


@bp.errorhandler(Exception)
def error(exc: Exception):
    """Every error of this dialect, classified as /v1 does (wpotp.api.errors.as_error), with
    snake_case details."""
    err = as_error(exc)
    body: dict = {"code": err.code, "message": err.message}
    if err.details:
        body["details"] = error_details(err)
    response = jsonify({"error": body})
    response.status_code = err.status
    response.headers.update(err.headers)
    return response


def error_details(err: WpotpError) -> dict:
    """snake_case keys (a service's `templateId` field is our `template_id`), and an unknown
    OTP's `id` is its `verification_id`."""
    if isinstance(err, FieldsError):
        return err.details
    details = snake(err.details)
    if err.code == OtpNotFound.code and "id" in details:
        details["verification_id"] = details.pop("id")
    return details


# --- routes ---------------------------------------------------------------------------------------

@bp.post("/otp/send")
def send():
    """201 with the new OTP (200 when `reference` returns an active one, as on /v1)."""
    key, app = authorise()
    mine = parse(app, SendOwn)
    channel = mine.channel.lower()
    if channel not in CHANNELS:
        raise ChannelNotSupported(details={"channel": mine.channel[:32], "supported": list(CHANNELS)})
    body = translate(SendOtpBody, mine, SEND)
    req = service.SendRequest(recipient=body.recipient, template_id=body.templateId, reference=body.reference,
                              length=body.length, ttl=body.ttl, language=body.language, channel=channel)
    otp, created = service.send_otp(app, key, req)
    return jsonify(verification(otp, detail=False)), 201 if created else 200


@bp.post("/otp/verify")
def verify():
    """A `recipient` that is not the OTP's answers OTP_NOT_FOUND, as an unknown id would, and
    spends no attempt: it says nothing about the id and never reaches the code check."""
    _key, app = authorise()
    mine = parse(app, VerifyOwn)
    body = translate(VerifyBody, mine, VERIFY)
    if mine.recipient is not None:
        recipient = normalize_recipient(mine.recipient)[0]
        if service.get_otp(app, mine.verification_id).recipient != recipient:
            raise OtpNotFound(details={"id": mine.verification_id[:64]})
    otp = service.verify_otp(app, mine.verification_id, body.code, client_ip())
    return jsonify({"verified": True, "verification_id": otp.id, "status": otp.status,
                    "verified_at": iso(otp.verified_at)})


@bp.post("/otp/resend")
def resend():
    _key, app = authorise()
    mine = parse(app, ByIdOwn)
    translate(None, mine, {})
    return jsonify(verification(service.resend_otp(app, mine.verification_id)))


@bp.get("/otp/status")
def status():
    _key, app = authorise()
    mine = parse(app, ByIdQuery)
    translate(None, mine, {})
    return jsonify(verification(service.get_otp(app, mine.verification_id, with_timeline=True)))


@bp.get("/otp/list")
def list_otps():
    _key, app = authorise()
    q = translate(ListOtpQuery, parse(app, OwnQuery), LIST)
    rows, next_cursor = queries.list_otps(app.id, otp_filter(q), q.limit, q.cursor)
    return jsonify({"data": [verification(o, with_timeline=False) for o in rows], "next_cursor": next_cursor})


@bp.get("/otp/attempts")
def attempts():
    _key, app = authorise()
    mine = parse(app, ByIdQuery)
    translate(None, mine, {})
    otp = service.get_otp(app, mine.verification_id)
    return jsonify({"verification_id": otp.id,
                    "data": [snake(attempt_item(a)) for a in queries.list_attempts(otp.id)]})


@bp.get("/otp/logs")
def logs():
    _key, app = authorise()
    rows, next_cursor = events_page(app.id, translate(LogQuery, parse(app, OwnQuery), LOGS))
    return jsonify({"data": [snake(log_item(e)) for e in rows], "next_cursor": next_cursor})


@bp.get("/otp/rate-limits")
def rate_limits():
    _key, app = authorise()
    return jsonify({"data": snake(rate_limits_for(app, translate(RateLimitQuery, parse(app, OwnQuery), RATE_LIMITS)))})


@bp.get("/otp/reports")
def reports():
    _key, app = authorise()
    return jsonify(snake(report_for(app.id, translate(ReportQuery, parse(app, OwnQuery), REPORT))))
