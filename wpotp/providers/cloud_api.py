"""Meta WhatsApp Business Cloud API (SPEC §7): template messages over the Graph API, and the
account's list of templates (`list_templates`, `create_template` and `edit_template`, for `wpotp sync-templates`).

An OTP goes out as an AUTHENTICATION template with the code twice: as the body's `{{1}}`
and as the parameter of the template's OTP button (Meta models every OTP button, copy code,
one-tap autofill and zero-tap alike, as a URL button, index "0", at send time: the button type,
the Android app it hands the code to and the message's time-to-live are the template's, fixed
when it is created; see `create_template` and wpotp/otp/auth_templates.py). The answer's
`messages[0].id` (a wamid) is what receipts refer to later.

Meta's errors are classified by `error.code` (Meta asks integrators not to rely on HTTP
statuses or titles), falling back to the HTTP status when the body is not Meta's.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from flask import current_app

from .base import OutboundOtp, OutboundTemplate, Provider, ProviderError, SendResult
from .http import Response, request

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
TEMPLATE_FIELDS = "id,name,language,status,category,components,message_send_ttl_seconds"
MAX_TEMPLATE_PAGES = 200  # 20,000 templates: far past Meta's per-account cap, so only a looping `next` hits it


class CloudApiProvider(Provider):
    name = "cloud_api"
    throttled = True

    def send_otp(self, message: OutboundOtp) -> SendResult:
        payload = template_payload(message.recipient, message.template_name, message.language,
                                   otp_components(message.code, message.copy_code_button))
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


def otp_components(code: str, otp_button: bool) -> list[dict]:
    """The send components of an authentication template: the code as the body's only parameter and,
    when the template has its OTP button (COPY_CODE, ONE_TAP or ZERO_TAP: Meta wants the same shape
    for all three), again as the parameter of button 0, sub_type url. Meta refuses the send when the
    button component is missing for a template that has one, or present for one that has none."""
    code_parameter = [{"type": "text", "text": code}]
    components: list[dict] = [{"type": "body", "parameters": code_parameter}]
    if otp_button:
        components.append({"type": "button", "sub_type": "url", "index": "0", "parameters": code_parameter})
    return components


def template_payload(recipient: str, name: str, language: str, components: list[dict]) -> dict:
    """Meta wants the number as digits only: E.164 without the '+'."""
    template: dict = {"name": name, "language": {"code": language}}
    if components:
        template["components"] = components
    return {"messaging_product": "whatsapp", "to": recipient.lstrip("+"), "type": "template",
            "template": template}


def _message_id(response: Response) -> str | None:
    try:
        messages = response.json().get("messages")
        message_id = messages[0]["id"]
    except (ValueError, AttributeError, LookupError, TypeError):
        return None
    return message_id if isinstance(message_id, str) and message_id else None


def _meta_error(response: Response) -> dict:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return {}
    return error if isinstance(error, dict) else {}


def error_from_response(response: Response, secrets: tuple[str, ...] = ()) -> ProviderError:
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
    # The authentication options (None where Meta reports none): the OTP button's type, the Android
    # apps of a ONE_TAP/ZERO_TAP button, the body's security recommendation, the footer's expiry
    # warning and the message time-to-live. `id` is Meta's template id.
    id: str = ""
    otp_type: str | None = None
    supported_apps: tuple[tuple[str, str], ...] = ()
    add_security_recommendation: bool | None = None
    code_expiration_minutes: int | None = None
    message_send_ttl_seconds: int | None = None


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


def _json_object(response: Response) -> dict:
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
    body_component = _component(components, "BODY")
    footer = _component(components, "FOOTER")
    button = _otp_button(components) if category == "AUTHENTICATION" else None
    otp_type, apps = _button_options(button) if button else (None, ())
    return WabaTemplate(name=raw["name"], language=raw["language"], category=category,
                        status=str(raw.get("status") or "UNKNOWN").upper(),
                        body=str(body_component.get("text") or ""),
                        copy_code_button=category == "AUTHENTICATION" and _has_code_button(components),
                        id=str(raw.get("id") or ""), otp_type=otp_type, supported_apps=apps,
                        add_security_recommendation=_bool_or_none(body_component.get("add_security_recommendation")),
                        code_expiration_minutes=_int_or_none(footer.get("code_expiration_minutes")),
                        message_send_ttl_seconds=_int_or_none(raw.get("message_send_ttl_seconds")))


def _component(components: list[dict], kind: str) -> dict:
    return next((c for c in components if str(c.get("type")).upper() == kind), {})


def _otp_button(components: list[dict]) -> dict | None:
    for component in components:
        if str(component.get("type")).upper() == "BUTTONS":
            for button in component.get("buttons") or []:
                if isinstance(button, dict) and str(button.get("type")).upper() in ("OTP", "URL"):
                    return button
    return None


def _button_options(button: dict) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    """(otp_type, supported apps) of an OTP button. Meta reads it back either as type OTP with
    `otp_type` and `supported_apps`, or (older Graph versions) as a URL button whose
    https://www.whatsapp.com/otp/code/?otp_type=...&package_name=...&signature_hash=... carries them."""
    if str(button.get("type")).upper() == "OTP":
        otp_type = str(button.get("otp_type") or "COPY_CODE").upper()
        listed = button.get("supported_apps")
        raw_apps = listed if isinstance(listed, list) else [button]  # a lone package_name/signature_hash pair
        apps = tuple((str(a["package_name"]), str(a["signature_hash"])) for a in raw_apps
                     if isinstance(a, dict) and a.get("package_name") and a.get("signature_hash"))
        return otp_type, apps
    query = parse_qs(urlsplit(str(button.get("url") or "")).query)
    otp_type = (query.get("otp_type") or [None])[0]
    apps = tuple(zip(query.get("package_name", []), query.get("signature_hash", []), strict=False))
    return (otp_type.upper() if otp_type else None), apps


def _bool_or_none(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def edit_template(template_id: str, payload: dict) -> dict:
    """POST /{template-id}: new components and time-to-live for an existing template (Meta allows
    an approved template one edit a day, ten a month; name, language and category stay). Raises
    ProviderError."""
    if not template_id.isdigit():
        raise ProviderError(f"Meta gave no usable id for the template ({template_id!r})", permanent=True,
                            code="bad_answer")
    response = request("POST", f"{graph_base()}/{template_id}", json=payload, headers=auth_headers())
    if not response.ok:
        raise error_from_response(response)
    return _json_object(response)


def create_template(waba_id: str, payload: dict) -> dict:
    """POST /{waba-id}/message_templates: a new template (auth_templates.creation_payload builds an
    authentication one). Returns Meta's answer ({"id", "status", "category"}). Raises ProviderError."""
    response = request("POST", f"{graph_base()}/{waba_id}/message_templates", json=payload, headers=auth_headers())
    if not response.ok:
        raise error_from_response(response)
    return _json_object(response)


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
