"""What Meta's Graph API checks about authentication templates, for the Graph double (graph.py).

`creation_problem` refuses a POST message_templates body the way Meta would (Meta's
authentication-template docs: copy code, one-tap autofill, zero-tap; message time-to-live):
an unknown field, a HEADER or body text (the body is Meta's), code_expiration_minutes outside
1-90, message_send_ttl_seconds outside 30-900, a ONE_TAP/ZERO_TAP button without supported_apps
of a valid package name and an 11-character signature hash, a ZERO_TAP button without
zero_tap_terms_accepted. `read_back` is the template as GET message_templates lists it then.
`send_problem` refuses a send whose template is unknown, not approved, or whose components do
not match it.
"""

from __future__ import annotations

import re
import zlib

AUTH_BODY = "*{{1}}* is your verification code."
SECURITY = " For your security, do not share this code."
OTP_TYPES = ("COPY_CODE", "ONE_TAP", "ZERO_TAP")
PACKAGE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+$")
SIGNATURE_HASH = re.compile(r"^[A-Za-z0-9+/]{11}$")
TEMPLATE_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
TOP_LEVEL = {"name", "language", "category", "components", "message_send_ttl_seconds", "allow_category_change"}
BUTTON_FIELDS = {"type", "otp_type", "text", "autofill_text", "zero_tap_terms_accepted", "supported_apps"}
MAX_CODE = 15  # Meta: an authentication code is at most 15 characters


def auth_template(name: str, language: str, *, otp_type: str = "COPY_CODE", status: str = "APPROVED",
                  apps: tuple[tuple[str, str], ...] = (), security: bool = True, expiry: int | None = 5,
                  ttl: int | None = None, button: bool = True) -> dict:
    """An AUTHENTICATION template as GET message_templates lists it."""
    components: list[dict] = [{"type": "BODY", "text": AUTH_BODY + (SECURITY if security else ""),
                               "add_security_recommendation": security}]
    if expiry is not None:
        components.append({"type": "FOOTER", "text": f"This code expires in {expiry} minutes.",
                           "code_expiration_minutes": expiry})
    if button:
        otp_button: dict = {"type": "OTP", "otp_type": otp_type, "text": "Copy code"}
        if apps:
            otp_button["supported_apps"] = [{"package_name": p, "signature_hash": h} for p, h in apps]
        if otp_type != "COPY_CODE":
            otp_button["autofill_text"] = "Autofill"
        components.append({"type": "BUTTONS", "buttons": [otp_button]})
    template = {"name": name, "language": language, "status": status, "category": "AUTHENTICATION",
                "components": components, "id": str(zlib.crc32(f"{name}/{language}".encode()))}
    if ttl is not None:
        template["message_send_ttl_seconds"] = ttl
    return template


# --- POST /{waba-id}/message_templates --------------------------------------------------------------

def creation_problem(body: dict) -> str | None:
    unknown = set(body) - TOP_LEVEL
    if unknown:
        return f"unknown fields {sorted(unknown)}"
    if not isinstance(body.get("name"), str) or not TEMPLATE_NAME.match(body["name"]):
        return "name must be lower case letters, digits and underscores"
    if not isinstance(body.get("language"), str) or not body["language"]:
        return "language is required"
    if str(body.get("category", "")).upper() != "AUTHENTICATION":
        return "the double models the creation of AUTHENTICATION templates only"
    if "message_send_ttl_seconds" in body and not _int_in(body["message_send_ttl_seconds"], 30, 900):
        return "message_send_ttl_seconds must be 30 to 900 for an AUTHENTICATION template"
    components = body.get("components")
    if not isinstance(components, list) or not all(isinstance(c, dict) for c in components):
        return "components must be a list of objects"
    by_type: dict[str, dict] = {}
    for component in components:
        kind = str(component.get("type", "")).upper()
        if kind in by_type:
            return f"two {kind} components"
        by_type[kind] = component
    if set(by_type) - {"BODY", "FOOTER", "BUTTONS"}:
        return f"an AUTHENTICATION template takes BODY, FOOTER and BUTTONS only, not {sorted(set(by_type))}"
    return (_body_problem(by_type.get("BODY")) or _footer_problem(by_type.get("FOOTER"))
            or _buttons_problem(by_type.get("BUTTONS")))


def _int_in(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _body_problem(body: dict | None) -> str | None:
    if body is None:
        return "a BODY component is required"
    if set(body) - {"type", "add_security_recommendation"}:
        return f"an authentication BODY takes only add_security_recommendation, not {sorted(set(body) - {'type'})}"
    if "add_security_recommendation" in body and not isinstance(body["add_security_recommendation"], bool):
        return "add_security_recommendation must be a boolean"
    return None


def _footer_problem(footer: dict | None) -> str | None:
    if footer is None:
        return None
    if set(footer) - {"type", "code_expiration_minutes"}:
        return f"an authentication FOOTER takes only code_expiration_minutes, not {sorted(set(footer) - {'type'})}"
    if not _int_in(footer.get("code_expiration_minutes"), 1, 90):
        return "code_expiration_minutes must be 1 to 90"
    return None


def _buttons_problem(buttons: dict | None) -> str | None:
    if buttons is None or not isinstance(buttons.get("buttons"), list) or len(buttons["buttons"]) != 1:
        return "an AUTHENTICATION template needs exactly one OTP button"
    button = buttons["buttons"][0]
    if not isinstance(button, dict) or str(button.get("type", "")).upper() != "OTP":
        return "the button must be of type OTP"
    if set(button) - BUTTON_FIELDS:
        return f"unknown button fields {sorted(set(button) - BUTTON_FIELDS)}"
    otp_type = str(button.get("otp_type", "")).upper()
    if otp_type not in OTP_TYPES:
        return f"otp_type must be one of {', '.join(OTP_TYPES)}"
    if otp_type == "COPY_CODE":
        if "supported_apps" in button or "zero_tap_terms_accepted" in button:
            return "a COPY_CODE button takes no supported_apps or zero_tap_terms_accepted"
        return None
    problem = _apps_problem(button.get("supported_apps"), otp_type)
    if problem:
        return problem
    if otp_type == "ZERO_TAP" and button.get("zero_tap_terms_accepted") is not True:
        return "a ZERO_TAP button needs zero_tap_terms_accepted: true"
    if otp_type == "ONE_TAP" and "zero_tap_terms_accepted" in button:
        return "zero_tap_terms_accepted belongs to ZERO_TAP buttons"
    return None


def _apps_problem(apps, otp_type: str) -> str | None:
    if not isinstance(apps, list) or not 1 <= len(apps) <= 5:
        return f"a {otp_type} button needs supported_apps: 1 to 5 {{package_name, signature_hash}}"
    for app in apps:
        if not isinstance(app, dict) or set(app) != {"package_name", "signature_hash"}:
            return "each supported app is exactly {package_name, signature_hash}"
        name, signature = app["package_name"], app["signature_hash"]
        if not isinstance(name, str) or len(name) > 224 or not PACKAGE_NAME.match(name):
            return f"package_name {name!r} is not an Android package name"
        if not isinstance(signature, str) or not SIGNATURE_HASH.match(signature):
            return f"signature_hash {signature!r} is not an 11-character app signature hash"
    return None


def read_back(body: dict, *, template_id: str, status: str) -> dict:
    """The created template as Meta lists it afterwards (body and footer texts filled in)."""
    by_type = {str(c["type"]).upper(): c for c in body["components"]}
    button = by_type["BUTTONS"]["buttons"][0]
    footer = by_type.get("FOOTER")
    template = auth_template(body["name"], body["language"], otp_type=str(button["otp_type"]).upper(),
                             status=status, security=bool(by_type["BODY"].get("add_security_recommendation")),
                             expiry=footer["code_expiration_minutes"] if footer else None,
                             ttl=body.get("message_send_ttl_seconds"),
                             apps=tuple((a["package_name"], a["signature_hash"])
                                        for a in button.get("supported_apps") or []))
    template["id"] = template_id
    return template


# --- POST /{phone-number-id}/messages: the template part ----------------------------------------------

def send_problem(sent: dict, template: dict | None) -> tuple[int, str, str] | None:
    """(Meta error code, title, details) when Meta would refuse this `template` object of a send."""
    name, language = sent["name"], sent["language"]["code"]
    if template is None:
        return 132001, "Template name does not exist in the translation", \
            f"template name ({name}) does not exist in {language}"
    if template["status"] == "PAUSED":
        return 132015, "Template is paused", f"{name}/{language} is paused"
    if template["status"] == "DISABLED":
        return 132016, "Template is disabled", f"{name}/{language} is disabled"
    if template["status"] != "APPROVED":
        return 132001, "Template name does not exist in the translation", \
            f"{name}/{language} is {template['status']}, not approved"
    problem = _components_problem(sent.get("components", []), template)
    return (132000, "Number of parameters does not match the expected number of params", problem) \
        if problem else None


def _components_problem(components, template: dict) -> str | None:
    if not isinstance(components, list) or not all(isinstance(c, dict) for c in components):
        return "components must be a list of objects"
    body_text = next((c.get("text", "") for c in template["components"] if c["type"] == "BODY"), "")
    wanted_body = len(set(re.findall(r"\{\{(\d+)\}\}", body_text)))
    has_button = any(c["type"] == "BUTTONS" and any(b.get("type") in ("OTP", "URL") for b in c["buttons"])
                     for c in template["components"])
    is_auth = template["category"] == "AUTHENTICATION"
    bodies = [c for c in components if c.get("type") == "body"]
    buttons = [c for c in components if c.get("type") == "button"]
    if len(bodies) + len(buttons) != len(components):
        return f"unexpected component types {sorted({str(c.get('type')) for c in components})}"
    body_parameters = _texts(bodies[0].get("parameters")) if bodies else []
    if body_parameters is None or len(body_parameters) != wanted_body or len(bodies) > 1:
        return f"the body takes {wanted_body} text parameter(s)"
    if is_auth and any(len(p) > MAX_CODE for p in body_parameters):
        return f"an authentication code is at most {MAX_CODE} characters"
    if not (is_auth and has_button):
        return "this template has no button to fill" if buttons else None
    if len(buttons) != 1:
        return "the template's OTP button needs one button component (sub_type url, index 0) with the code"
    button = buttons[0]
    parameters = _texts(button.get("parameters"))
    if button.get("sub_type") != "url" or button.get("index") not in ("0", 0) or parameters is None \
            or len(parameters) != 1 or len(parameters[0]) > MAX_CODE:
        return "the OTP button component is sub_type url, index 0, one text parameter: the code"
    return None


def _texts(parameters) -> list[str] | None:
    if not isinstance(parameters, list):
        return None
    if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) and p["text"]
               for p in parameters):
        return None
    return [p["text"] for p in parameters]
