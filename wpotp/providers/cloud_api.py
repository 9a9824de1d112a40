"""Meta WhatsApp Business Cloud API (SPEC §7): template messages over the Graph API.

An OTP goes out as an AUTHENTICATION template with the code twice: as the body's `{{1}}`
and as the parameter of the copy-code button (Meta models that button as a URL button,
index "0"). The answer's `messages[0].id` (a wamid) is what receipts refer to later.

Meta's errors are classified by `error.code` (Meta asks integrators not to rely on HTTP
statuses or titles), falling back to the HTTP status when the body is not Meta's.
"""

from __future__ import annotations

import logging
import re

import requests
from flask import current_app

from .base import OutboundOtp, OutboundTemplate, Provider, ProviderError, SendResult
from .http import request

log = logging.getLogger("wpotp.providers.cloud_api")

# Worth trying again, with the provider's hint of how long to wait (seconds) where it has one.
RETRYABLE = {
    1: None,  # API unknown (often transient)
    2: None,  # API service: temporary downtime or overload
    4: 2.0,  # application call-rate limit
    80007: 2.0,  # WABA call-rate limit
    130429: 2.0,  # Cloud API throughput reached
    131000: None,  # something went wrong (Meta's side)
    131016: None,  # service unavailable
    131056: 6.0,  # (business, consumer) pair rate limit: about one message per 6 s to one user
}
# The operator must fix settings (token, permissions, account): failed, and shown as a configuration fault.
CONFIG_FAULTS = {0, 3, 10, 190, 131005, 131031, 131042, 133010} | set(range(200, 300))
# Documented permanent ones; any other 4xx is permanent too.
PERMANENT = {131026, 131008, 131009, 131047, 131051, 132000, 132001, 132005, 132007, 132012, 132015, 132016}

_TITLE_PREFIX = re.compile(r"^\(#\d+\)\s*")
REASON_MAX = 200


class CloudApiProvider(Provider):
    name = "cloud_api"
    throttled = True

    def send_otp(self, message: OutboundOtp) -> SendResult:
        code_parameter = [{"type": "text", "text": message.code}]
        components: list[dict] = [{"type": "body", "parameters": code_parameter}]
        if message.copy_code_button:
            components.append({"type": "button", "sub_type": "url", "index": "0", "parameters": code_parameter})
        payload = template_payload(message.recipient, message.template_name, message.language, components)
        return self._post(payload, secrets=(message.code,), about=message.otp_id)

    def send_template(self, message: OutboundTemplate) -> SendResult:
        components = []
        if message.parameters:
            components.append({"type": "body",
                               "parameters": [{"type": "text", "text": p} for p in message.parameters]})
        payload = template_payload(message.recipient, message.template_name, message.language, components)
        return self._post(payload, secrets=(), about=message.message_id)

    def _post(self, payload: dict, *, secrets: tuple[str, ...], about: str) -> SendResult:
        """POST /{phone-number-id}/messages. Never logs the payload: it carries the code."""
        cfg = current_app.config
        url = f"{graph_base()}/{cfg['WHATSAPP_PHONE_NUMBER_ID']}/messages"
        response = request("POST", url, json=payload, headers=auth_headers())
        if response.ok:
            message_id = _message_id(response)
            if message_id:
                return SendResult(provider_message_id=message_id)
            error = ProviderError("the answer carried no message id", permanent=False, code="bad_answer")
        else:
            error = error_from_response(response, secrets=secrets)
        log.warning("cloud_api send for %s failed (%s): %s", about,
                    "permanent" if error.permanent else "retryable", error)
        raise error


def graph_base() -> str:
    cfg = current_app.config
    return f"{cfg['WHATSAPP_GRAPH_URL'].rstrip('/')}/{cfg['WHATSAPP_API_VERSION']}"


def auth_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {current_app.config['WHATSAPP_TOKEN']}"}


def template_payload(recipient: str, name: str, language: str, components: list[dict]) -> dict:
    """Meta wants the number as digits only: E.164 without the '+'."""
    template: dict = {"name": name, "language": {"code": language}}
    if components:
        template["components"] = components
    return {"messaging_product": "whatsapp", "to": recipient.lstrip("+"), "type": "template",
            "template": template}


def _message_id(response: requests.Response) -> str | None:
    try:
        messages = response.json().get("messages")
        message_id = messages[0]["id"]
    except (ValueError, AttributeError, LookupError, TypeError):
        return None
    return message_id if isinstance(message_id, str) and message_id else None


def _meta_error(response: requests.Response) -> dict:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return {}
    return error if isinstance(error, dict) else {}


def error_from_response(response: requests.Response, secrets: tuple[str, ...] = ()) -> ProviderError:
    """Classify a non-2xx Graph answer: Meta's `error.code` first, the HTTP status otherwise.

    The reason is Meta's title (its "(#code)" prefix dropped), plus the details when they add
    something, with the code being sent and the token blanked out should Meta echo them.
    """
    error = _meta_error(response)
    meta_code = error.get("code")
    status = response.status_code
    reason = _reason(error, secrets) or f"HTTP {status} from the Graph API"
    if not isinstance(meta_code, int):
        retryable = status >= 500 or status == 429
        return ProviderError(reason, permanent=not retryable, code=f"http_{status}",
                             retry_after=2.0 if status == 429 else None, config_fault=status in (401, 403))
    if meta_code in RETRYABLE:
        return ProviderError(reason, permanent=False, code=str(meta_code), retry_after=RETRYABLE[meta_code])
    if meta_code in CONFIG_FAULTS:
        return ProviderError(reason, permanent=True, code=str(meta_code), config_fault=True)
    retryable = meta_code not in PERMANENT and (status >= 500 or status == 429)
    return ProviderError(reason, permanent=not retryable, code=str(meta_code))


def _reason(error: dict, secrets: tuple[str, ...]) -> str:
    title = _TITLE_PREFIX.sub("", str(error.get("message") or "")).strip().rstrip(".")
    data = error.get("error_data")
    details = str(data.get("details") or "").strip().rstrip(".") if isinstance(data, dict) else ""
    reason = title
    if details and details.lower() not in title.lower():
        reason = f"{title} ({details})" if title else details
    for secret in (*secrets, current_app.config["WHATSAPP_TOKEN"]):
        if secret:
            reason = reason.replace(secret, "***")
    return " ".join(reason.split())[:REASON_MAX]
