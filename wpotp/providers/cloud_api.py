"""Meta WhatsApp Business Cloud API (SPEC §7): template messages over the Graph API, and the
account's list of templates (`list_templates`, for `wpotp sync-templates`).

An OTP goes out as an AUTHENTICATION template with the code twice: as the body's `{{1}}`
and as the parameter of the copy-code button (Meta models that button as a URL button,
index "0"). The answer's `messages[0].id` (a wamid) is what receipts refer to later.

Meta's errors are classified by `error.code` (Meta asks integrators not to rely on HTTP
statuses or titles), falling back to the HTTP status when the body is not Meta's.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

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

# Permanent failures that mean "this recipient cannot get WhatsApp (now)": a channel `auto` OTP falls
# back to SMS on them (docs/channels.md), whether Meta says so in the send's answer or in a `failed`
# status webhook. 131026: undeliverable (no WhatsApp account, an old app, terms not accepted);
# 131049: Meta chose not to deliver (ecosystem engagement); 130472: the number is in one of Meta's
# experiments. Not 131030 (recipient not in the allowed list): a test number's setup, for the operator.
NOT_ON_WHATSAPP = {131026, 131049, 130472}

_TITLE_PREFIX = re.compile(r"^\(#\d+\)\s*")
REASON_MAX = 200
TEMPLATE_FIELDS = "name,language,status,category,components"
MAX_TEMPLATE_PAGES = 200  # 20,000 templates: far past Meta's per-account cap, so only a looping `next` hits it


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


# --- the account's templates: GET /{waba-id}/message_templates ----------------------------------

@dataclass(frozen=True)
class WabaTemplate:
    """One template as the WhatsApp Business account lists it, in the terms wpotp keeps."""

    name: str
    language: str
    category: str  # upper case, as Meta spells it (AUTHENTICATION, UTILITY, MARKETING)
    status: str  # upper case (APPROVED, PAUSED, ...); UNKNOWN when Meta gives none
    body: str  # the BODY component's text, "" without one
    copy_code_button: bool  # an AUTHENTICATION template whose send carries the code as a url button


def list_templates(waba_id: str) -> list[WabaTemplate]:
    """Every template of the account, page by page. `paging.next` is followed only on the
    configured Graph host (the bearer token goes with it). Raises ProviderError."""
    url: str | None = f"{graph_base()}/{waba_id}/message_templates"
    params: dict | None = {"fields": TEMPLATE_FIELDS, "limit": 100}
    found: list[WabaTemplate] = []
    for _ in range(MAX_TEMPLATE_PAGES):
        response = request("GET", url, params=params, headers=auth_headers())
        if not response.ok:
            raise error_from_response(response)
        page = _json_object(response)
        found.extend(t for t in (_waba_template(raw) for raw in page.get("data") or []) if t)
        url, params = _next_page(page), None
        if url is None:
            return found
    raise ProviderError(f"more than {MAX_TEMPLATE_PAGES} pages of templates", permanent=True, code="paging")


def _json_object(response: requests.Response) -> dict:
    try:
        page = response.json()
    except ValueError:
        page = None
    if not isinstance(page, dict):
        raise ProviderError("the answer was not a JSON object", permanent=False, code="bad_answer")
    return page


def _next_page(page: dict) -> str | None:
    """The next page's URL; the bearer token must not follow a link to some other host."""
    paging = page.get("paging")
    nxt = paging.get("next") if isinstance(paging, dict) else None
    if not isinstance(nxt, str) or not nxt:
        return None
    ours, theirs = urlsplit(current_app.config["WHATSAPP_GRAPH_URL"]), urlsplit(nxt)
    if (theirs.scheme, theirs.netloc) != (ours.scheme, ours.netloc):
        raise ProviderError(f"paging.next points at another host ({theirs.netloc})", permanent=True,
                            code="paging")
    return nxt


def _waba_template(raw: object) -> WabaTemplate | None:
    """Meta's template object; None when it lacks a name or language."""
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not isinstance(raw.get("language"), str):
        return None
    components = [c for c in raw.get("components") or [] if isinstance(c, dict)]
    category = str(raw.get("category") or "").upper()
    body = next((str(c.get("text") or "") for c in components if str(c.get("type")).upper() == "BODY"), "")
    return WabaTemplate(name=raw["name"], language=raw["language"], category=category,
                        status=str(raw.get("status") or "UNKNOWN").upper(), body=body,
                        copy_code_button=category == "AUTHENTICATION" and _has_code_button(components))


def _has_code_button(components: list[dict]) -> bool:
    """An OTP button (COPY_CODE, ONE_TAP, ZERO_TAP) reads back from Meta as type OTP or URL;
    either way the send must carry the code as the url button's parameter (`send_otp`)."""
    for component in components:
        if str(component.get("type")).upper() != "BUTTONS":
            continue
        for button in component.get("buttons") or []:
            if isinstance(button, dict) and str(button.get("type")).upper() in ("OTP", "URL"):
                return True
    return False
