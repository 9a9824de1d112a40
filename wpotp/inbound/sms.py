"""SMS delivery reports: /webhooks/sms/<provider> (twilio, vonage, http).

Each is authenticated the way its vendor does it, before anything is read into a receipt:
- twilio: `X-Twilio-Signature` = base64 HMAC-SHA1(auth token, the full URL + every POST
  parameter sorted by name, name and value concatenated). The URL is SMS_CALLBACK_BASE_URL's
  (when set: the one the sends named) or the one this server was called at.
- vonage: a signed DLR's `sig` (VONAGE_SIGNATURE_SECRET, VONAGE_SIGNATURE_METHOD: md5hash or
  an HMAC), else `?token=` = VONAGE_WEBHOOK_TOKEN (for accounts without signed webhooks).
- http: `X-Wpotp-Token` or `?token=` = SMS_HTTP_WEBHOOK_TOKEN.
A bad or missing credential is 401 and changes nothing; an unset secret refuses everything.
Once authenticated the answer is 2xx (vendors retry anything else): unknown ids and statuses
are acknowledged and ignored. The receipts go to `take_receipts` as WhatsApp's do.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from datetime import UTC, datetime

from flask import current_app, jsonify, request

from ..otp.receipts import Receipt, take_receipts
from . import bp

log = logging.getLogger("wpotp.inbound.sms")

# Twilio MessageStatus -> our receipt status (queued/accepted/sending/scheduled say nothing new).
TWILIO_STATUSES = {"sent": "sent", "delivered": "delivered", "undelivered": "failed", "failed": "failed"}
# Vonage DLR status (accepted/buffered/unknown: not final, ignored).
VONAGE_STATUSES = {"delivered": "delivered", "failed": "failed", "expired": "failed", "rejected": "failed"}
# Generic gateways: SMS Gateway for Android events, Jasmin's message_status, or a plain status.
HTTP_STATUSES = {"sms:sent": "sent", "sms:delivered": "delivered", "sms:failed": "failed",
                 "sent": "sent", "delivered": "delivered", "failed": "failed", "undelivered": "failed",
                 "delivrd": "delivered", "undeliv": "failed", "rejectd": "failed", "expired": "failed"}


def _unauthorized(what: str):
    return jsonify({"error": {"code": "unauthorized", "message": f"bad or missing {what}"}}), 401


def _take(provider: str, receipts: list[Receipt]):
    applied = take_receipts(receipts) if receipts else 0
    log.info("sms %s webhook: %d receipt(s), %d applied inline", provider, len(receipts), applied)
    return jsonify({"status": "ok"})


def _same(given: str, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def _reason(code: object, text: str) -> str:
    reason = f"{code}: {text}" if code not in (None, "", "0") else text
    return " ".join("".join(c if c.isprintable() else " " for c in reason).split())[:200]


# --- Twilio ---------------------------------------------------------------------------------------

@bp.post("/sms/twilio")
def twilio_status():
    form = request.form
    if not twilio_signature_ok(_public_url(), form.items(multi=True), request.headers.get("X-Twilio-Signature", "")):
        return _unauthorized("X-Twilio-Signature")
    sid, status = form.get("MessageSid") or form.get("SmsSid"), TWILIO_STATUSES.get(form.get("MessageStatus", ""))
    receipts = []
    if sid and status:
        error = _reason(form.get("ErrorCode"), form.get("MessageStatus", "")) if status == "failed" else None
        receipts.append(Receipt("sms_twilio", sid[:128], status, _now(), error))
    return _take("twilio", receipts)


def twilio_signature(token: str, url: str, params) -> str:
    """Twilio's signature of a form POST: the URL, then each parameter (sorted) as name + value."""
    data = url + "".join(name + value for name, value in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), data.encode("utf-8"), hashlib.sha1).digest()).decode()


def twilio_signature_ok(url: str, params, header: str) -> bool:
    token = current_app.config.get("TWILIO_AUTH_TOKEN") or ""
    return bool(token and header) and _same(header.strip(), twilio_signature(token, url, list(params)))


def _public_url() -> str:
    base = current_app.config.get("SMS_CALLBACK_BASE_URL") or ""
    if not base:
        return request.url
    query = request.query_string.decode("latin-1")
    return base + request.path + (f"?{query}" if query else "")


# --- Vonage ---------------------------------------------------------------------------------------

@bp.route("/sms/vonage", methods=["GET", "POST"])
def vonage_dlr():
    params = _vonage_params()
    if not vonage_authentic(params):
        return _unauthorized("signature or token")
    message_id, status = params.get("messageId"), VONAGE_STATUSES.get(str(params.get("status", "")).lower())
    receipts = []
    if isinstance(message_id, str) and message_id and status:
        error = _reason(params.get("err-code"), str(params.get("status"))) if status == "failed" else None
        receipts.append(Receipt("sms_vonage", message_id[:128], status, _now(), error))
    return _take("vonage", receipts)


def _vonage_params() -> dict:
    """A DLR comes as a GET query, a form POST or a JSON POST, as set on the account."""
    if request.method == "GET":
        return request.args.to_dict()
    if request.is_json:
        body = request.get_json(silent=True)
        return {k: v for k, v in body.items() if isinstance(v, str | int)} if isinstance(body, dict) else {}
    return request.form.to_dict()


def vonage_signature(params: dict, secret: str, method: str) -> str:
    """Vonage's signature: `&name=value` for each parameter but `sig`, sorted by name, with `&`
    and `=` in values replaced by `_`; then md5(that + secret) for md5hash, else HMAC(secret, that)."""
    text = "".join(f"&{k}={str(v).replace('&', '_').replace('=', '_')}" for k, v in sorted(params.items())
                   if k != "sig")
    if method == "md5hash":
        return hashlib.md5((text + secret).encode()).hexdigest()  # noqa: S324 (Vonage's scheme)
    return hmac.new(secret.encode(), text.encode(), getattr(hashlib, method)).hexdigest()


def vonage_authentic(params: dict) -> bool:
    cfg = current_app.config
    secret = cfg.get("VONAGE_SIGNATURE_SECRET") or ""
    if secret:
        sig = str(params.get("sig", ""))
        return bool(sig) and _same(sig.lower(), vonage_signature(params, secret, cfg["VONAGE_SIGNATURE_METHOD"]))
    return _same(request.args.get("token", ""), cfg.get("VONAGE_WEBHOOK_TOKEN") or "")


# --- a generic HTTP gateway -----------------------------------------------------------------------

@bp.post("/sms/http")
def http_dlr():
    given = request.headers.get("X-Wpotp-Token") or request.args.get("token", "")
    if not _same(given, current_app.config.get("SMS_HTTP_WEBHOOK_TOKEN") or ""):
        return _unauthorized("X-Wpotp-Token")
    found = http_receipt(request.get_json(silent=True) if request.is_json else request.form.to_dict())
    receipts = [Receipt("sms_http", found[0], found[1], _now(), found[2])] if found else []
    return _take("http", receipts)


def http_receipt(body: object) -> tuple[str, str, str | None] | None:
    """(message id, status, error) from SMS Gateway for Android's webhook (`event`,
    `payload.messageId`), Jasmin's DLR (`id`, `message_status`) or a plain `{id, status}`."""
    if not isinstance(body, dict):
        return None
    payload = body.get("payload") if isinstance(body.get("payload"), dict) else body
    message_id = payload.get("messageId") or payload.get("id") or payload.get("message_id")
    raw = body.get("event") or payload.get("message_status") or payload.get("status") or ""
    status = HTTP_STATUSES.get(str(raw).lower())
    if not isinstance(message_id, str | int) or not str(message_id) or status is None:
        return None
    error = _reason(payload.get("err") or payload.get("errorCode"), str(payload.get("reason") or raw)) \
        if status == "failed" else None
    return str(message_id)[:128], status, error


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
