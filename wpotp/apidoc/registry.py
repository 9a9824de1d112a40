"""What each /v1 and dialect view takes and answers, by Flask endpoint name: the table the OpenAPI
builder (wpotp.apidoc.build) reads beside `app.url_map`.

Request models are the very pydantic models the views validate with; answer models are
wpotp.api.answers / wpotp.compat.answers. Error codes per status are SPEC §3's, as each view can
raise them (the fuzz test, tests/apidoc/test_fuzz.py, holds the table to what the service answers).
A route in `app.url_map` under /v1 or /compat with no entry here makes the builder fail: nothing
is served undocumented.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from ..api import answers as a
from ..api.logs import LogQuery
from ..api.messages import SendMessageBody
from ..api.reports import RateLimitQuery, ReportQuery
from ..api.schemas import ListOtpQuery, ResendBody, SendOtpBody, VerifyBody
from ..compat import answers as ca
from ..compat import otpapi, wawp, whatotp

# Errors every gated operation can answer (the request gate: key, budget, Redis).
GATED = {401: ["unauthorized"], 429: ["RATE_LIMITED"], 503: ["SERVICE_UNAVAILABLE"]}
BODY = {400: ["VALIDATION_ERROR"], 413: ["PAYLOAD_TOO_LARGE"]}
# An {otp_id} of `send` routes to POST /v1/otp/send (405 for other methods); one with an encoded
# `/` reaches no route (404 NOT_FOUND).
BY_OTP_ID = {404: ["OTP_NOT_FOUND", "NOT_FOUND"], 405: ["METHOD_NOT_ALLOWED"]}
# The fraud guard (wpotp/otp/fraud.py) on every send and resend.
FRAUD = {403: ["FRAUD_BLOCKED"]}


@dataclass
class Op:
    summary: str
    answers: dict[int, Any]  # status -> answer model, or a (media type, schema) pair
    errors: dict[int, list[str]] = field(default_factory=dict)
    body: type[BaseModel] | dict | None = None  # a model, or a JSON schema built by the builder
    query: type[BaseModel] | dict | None = None
    form: bool = False  # the body may be a form too (Wawp)
    example: dict | None = None  # the request body's (or query's) example
    answer_examples: dict[int, dict] = field(default_factory=dict)
    public: bool = False  # no API key: the documents themselves
    tag: str = "OTP"
    description: str = ""
    links: dict[str, dict[str, str]] = field(default_factory=dict)  # operationId -> {parameter: expression}


# OpenAPI links: where an answer's id goes next (clients, and the fuzz test's stateful run).
OTP_LINKS = {f"api_{name}": {"otp_id": "$response.body#/id"}
             for name in ("show_get", "verify_post", "resend_post", "cancel_post", "attempts_get")}


def merge(*tables: dict[int, list[str]]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for table in tables:
        for status, codes in table.items():
            out.setdefault(status, [])
            out[status] += [c for c in codes if c not in out[status]]
    return out


SEND_EXAMPLE = {"recipient": "+905551112233", "reference": "order-9f3a2c", "ttl": 300}
OTP_ID = "otp_01JZ8Q6Y3N4V5W6X7Y8Z9A0B1C"
SENT_EXAMPLE = {"id": OTP_ID, "status": "QUEUED", "recipient": "+905551112233", "reference": "order-9f3a2c",
                "templateId": "tpl_otp_en", "channel": "whatsapp", "expiresAt": "2026-05-17T12:10:00.000Z",
                "createdAt": "2026-05-17T12:05:00.000Z"}
VERIFIED_EXAMPLE = {"verified": True, "status": "VERIFIED", "id": OTP_ID, "verifiedAt": "2026-05-17T12:06:10.250Z"}
INVALID_PHONE_EXAMPLE = {"error": {"code": "INVALID_PHONE",
                                   "message": "The recipient is not a valid E.164 phone number."}}

DOCS = {
    "api.openapi": Op("This OpenAPI 3.1 document", {200: ("application/json", {"type": "object"})},
                      {429: ["RATE_LIMITED"], 503: ["SERVICE_UNAVAILABLE"]}, public=True, tag="Docs"),
    "api.docs": Op("Swagger UI for this document", {200: ("text/html", {"type": "string"})},
                   {429: ["RATE_LIMITED"], 503: ["SERVICE_UNAVAILABLE"]}, public=True, tag="Docs"),
    "api.postman_collection": Op("A Postman v2.1 collection of this API",
                                 {200: ("application/json", {"type": "object"})},
                                 {429: ["RATE_LIMITED"], 503: ["SERVICE_UNAVAILABLE"]}, public=True, tag="Docs"),
}

NATIVE: dict[str, Op] = {
    **DOCS,
    "api.list_templates": Op("The templates an OTP or message can use", {200: a.TemplateList}, GATED,
                             tag="Templates"),
    "api.send": Op("Send an OTP", {201: a.OtpSummary, 200: a.OtpSummary}, merge(
        GATED, BODY, FRAUD, {400: ["INVALID_PHONE", "COUNTRY_NOT_ALLOWED"], 404: ["TEMPLATE_NOT_FOUND"],
                             409: ["REFERENCE_CONFLICT"]}),
        body=SendOtpBody, example=SEND_EXAMPLE, links=OTP_LINKS,
        answer_examples={201: SENT_EXAMPLE, 400: INVALID_PHONE_EXAMPLE},
        description="201 with a new OTP; 200 with the active OTP of the same `reference` and recipient "
                    "(no second message). The code is sent over `channel` (WhatsApp by default, or SMS), "
                    "never answered."),
    "api.verify": Op("Verify a code", {200: a.Verified}, merge(
        GATED, BODY, BY_OTP_ID, {400: ["INVALID_CODE", "OTP_EXPIRED"],
                                 409: ["OTP_ALREADY_VERIFIED", "OTP_CANCELED", "OTP_FAILED"],
                                 429: ["TOO_MANY_ATTEMPTS"]}),
        body=VerifyBody, example={"code": "482913"}, answer_examples={200: VERIFIED_EXAMPLE}),
    "api.show": Op("One OTP with its timeline", {200: a.Otp}, merge(GATED, BY_OTP_ID)),
    "api.resend": Op("Resend an OTP (a new code; the old one dies)", {200: a.Otp}, merge(
        GATED, BODY, BY_OTP_ID, FRAUD, {409: ["OTP_ALREADY_VERIFIED", "OTP_CANCELED", "OTP_FAILED"],
                                        400: ["OTP_EXPIRED"], 429: ["TOO_MANY_ATTEMPTS"]}),
        body=ResendBody, example={"channel": "sms"},
        description="The body is optional: `channel` sends this code over `whatsapp`, `sms` or `auto` "
                    "(WhatsApp first); without it the last send's channel is kept."),
    "api.cancel": Op("Cancel an OTP", {200: a.Otp}, merge(
        GATED, BY_OTP_ID, {409: ["OTP_ALREADY_VERIFIED", "OTP_CANCELED", "OTP_FAILED"], 400: ["OTP_EXPIRED"]})),
    "api.index": Op("List OTPs, newest first", {200: a.OtpList}, merge(GATED, {400: ["VALIDATION_ERROR"]}),
                    query=ListOtpQuery),
    "api.attempts": Op("An OTP's verify attempts", {200: a.AttemptList}, merge(GATED, BY_OTP_ID)),
    "api.list_logs": Op("The app's events, newest first", {200: a.LogList}, merge(GATED, {400: ["VALIDATION_ERROR"]}),
                        query=LogQuery, tag="Reports"),
    "api.rate_limits": Op("Each rate limit that applies to the caller", {200: a.RateLimitList},
                          merge(GATED, {400: ["VALIDATION_ERROR", "INVALID_PHONE"]}), query=RateLimitQuery,
                          tag="Reports"),
    "api.reports": Op("Usage by day or hour", {200: a.Report}, merge(GATED, {400: ["VALIDATION_ERROR"]}),
                      query=ReportQuery, tag="Reports"),
    "api.send_message": Op("Send a template message (not an OTP)", {202: a.MessageSummary}, merge(
        GATED, BODY, {400: ["INVALID_PHONE", "COUNTRY_NOT_ALLOWED"], 404: ["TEMPLATE_NOT_FOUND"]}),
        body=SendMessageBody, tag="Messages",
        links={"api_show_message_get": {"message_id": "$response.body#/id"}},
        example={"recipient": "+905551112233", "templateId": "tpl_shipping_en",
                 "variables": {"1": "9F3A2C"}, "expiresInSeconds": 3600}),
    "api.show_message": Op("One message with its timeline", {200: a.Message}, merge(GATED, {404: ["NOT_FOUND"]}),
                           tag="Messages"),
}


def _dialect_docs(name: str) -> dict[str, Op]:
    return {f"compat_{name}.openapi": Op("This dialect's OpenAPI 3.1 document",
                                         {200: ("application/json", {"type": "object"})},
                                         {429: ["RATE_LIMITED"], 503: ["SERVICE_UNAVAILABLE"]},
                                         public=True, tag="Docs")}


WHATOTP: dict[str, Op] = {
    **_dialect_docs("whatotp"),
    "compat_whatotp.send": Op("Start a verification session", {200: ca.WhatotpSession}, merge(
        GATED, BODY, FRAUD, {400: ["INVALID_PHONE", "COUNTRY_NOT_ALLOWED"], 404: ["TEMPLATE_NOT_FOUND"]}),
        body=whatotp.SendBody, example={"to": "+905551112233", "channel": "whatsapp"}),
    "compat_whatotp.verify": Op("Verify a session's code", {200: ca.WhatotpVerified}, merge(
        GATED, BODY, {400: ["INVALID_CODE", "OTP_EXPIRED"], 404: ["OTP_NOT_FOUND"],
                      409: ["OTP_ALREADY_VERIFIED", "OTP_CANCELED", "OTP_FAILED"], 429: ["TOO_MANY_ATTEMPTS"]}),
        body=whatotp.VerifyBody, example={"session_id": OTP_ID, "code": "482913"}),
    "compat_whatotp.send_message": Op("Queue a template message", {202: ca.WhatotpQueued}, merge(
        GATED, BODY, {400: ["INVALID_PHONE", "COUNTRY_NOT_ALLOWED"], 404: ["TEMPLATE_NOT_FOUND"]}),
        body=whatotp.MessageBody, tag="Messages",
        example={"phone_number": "+905551112233", "template_id": "tpl_shipping_en", "variables": {"1": "9F3A2C"}}),
}

WAWP_GATED = {401: ["unauthorized"], 429: ["rate_limited"], 503: ["service_unavailable"]}
WAWP: dict[str, Op] = {
    **_dialect_docs("wawp"),
    "compat_wawp.send": Op("Send a verification code to a chat", {200: ca.WawpSent}, merge(
        WAWP_GATED, {400: ["validation_error", "invalid_phone", "country_not_allowed"], 403: ["fraud_blocked"],
                     404: ["template_not_found"], 409: ["reference_conflict"], 413: ["payload_too_large"]}),
        query=wawp.SendParams, form=True,
        example={"instance_id": "app_01JZ8Q6Y3N4V5W6X7Y8Z9A0B1C", "access_token": "wpotp_test_...",
                 "chatId": "905551112233", "lang": "en"}),
    "compat_wawp.verify": Op("Verify the chat's newest code", {200: ca.WawpVerified}, merge(
        WAWP_GATED, {400: ["validation_error", "invalid_phone", "invalid_code", "otp_expired"],
                     404: ["otp_not_found"], 409: ["otp_already_verified", "otp_canceled", "otp_failed"],
                     413: ["payload_too_large"], 429: ["too_many_attempts"]}),
        query=wawp.VerifyParams, form=True,
        example={"instance_id": "app_01JZ8Q6Y3N4V5W6X7Y8Z9A0B1C", "access_token": "wpotp_test_...",
                 "chatId": "905551112233", "code": "482913"}),
}

OWN_ERRORS = merge(GATED, {400: ["VALIDATION_ERROR"]})
OTPAPI: dict[str, Op] = {
    **_dialect_docs("otpapi"),
    "compat_otpapi.send": Op("Send a verification", {201: "verification", 200: "verification"}, merge(
        OWN_ERRORS, BODY, FRAUD, {400: ["INVALID_PHONE", "COUNTRY_NOT_ALLOWED", "CHANNEL_NOT_SUPPORTED"],
                                  404: ["TEMPLATE_NOT_FOUND"], 409: ["REFERENCE_CONFLICT"]}),
        body=(otpapi.SendOwn, SendOtpBody, otpapi.SEND),  # type: ignore[arg-type]
        example={"appid": "app_01JZ8Q6Y3N4V5W6X7Y8Z9A0B1C", "recipient": "+905551112233", "channel": "whatsapp"}),
    "compat_otpapi.verify": Op("Verify a code", {200: "verified"}, merge(
        OWN_ERRORS, BODY, {400: ["INVALID_CODE", "OTP_EXPIRED", "INVALID_PHONE"], 404: ["OTP_NOT_FOUND"],
                           409: ["OTP_ALREADY_VERIFIED", "OTP_CANCELED", "OTP_FAILED"], 429: ["TOO_MANY_ATTEMPTS"]}),
        body=(otpapi.VerifyOwn, VerifyBody, otpapi.VERIFY),  # type: ignore[arg-type]
        example={"appid": "app_01JZ8Q6Y3N4V5W6X7Y8Z9A0B1C", "verification_id": OTP_ID, "otp_code": "482913"}),
    "compat_otpapi.resend": Op("Resend a verification", {200: "verification+timeline"}, merge(
        OWN_ERRORS, BODY, FRAUD, {404: ["OTP_NOT_FOUND"], 400: ["OTP_EXPIRED"],
                           409: ["OTP_ALREADY_VERIFIED", "OTP_CANCELED", "OTP_FAILED"], 429: ["TOO_MANY_ATTEMPTS"]}),
        body=(otpapi.ByIdOwn, None, {}),  # type: ignore[arg-type]
        example={"appid": "app_01JZ8Q6Y3N4V5W6X7Y8Z9A0B1C", "verification_id": OTP_ID}),
    "compat_otpapi.status": Op("One verification with its timeline", {200: "verification+timeline"},
                               merge(OWN_ERRORS, {404: ["OTP_NOT_FOUND"]}),
                               query=(otpapi.ByIdQuery, None, {})),  # type: ignore[arg-type]
    "compat_otpapi.list_otps": Op("List verifications", {200: "list"}, OWN_ERRORS,
                                  query=(otpapi.OwnQuery, ListOtpQuery, otpapi.LIST)),  # type: ignore[arg-type]
    "compat_otpapi.attempts": Op("A verification's attempts", {200: "attempts"},
                                 merge(OWN_ERRORS, {404: ["OTP_NOT_FOUND"]}),
                                 query=(otpapi.ByIdQuery, None, {})),  # type: ignore[arg-type]
    "compat_otpapi.logs": Op("The app's events", {200: "logs"}, OWN_ERRORS, tag="Reports",
                             query=(otpapi.OwnQuery, LogQuery, otpapi.LOGS)),  # type: ignore[arg-type]
    "compat_otpapi.rate_limits": Op("The caller's rate limits", {200: "rate_limits"},
                                    merge(OWN_ERRORS, {400: ["INVALID_PHONE"]}), tag="Reports",
                                    query=(otpapi.OwnQuery, RateLimitQuery, otpapi.RATE_LIMITS)),  # type: ignore[arg-type]
    "compat_otpapi.reports": Op("Usage by day or hour", {200: "report"}, OWN_ERRORS, tag="Reports",
                                query=(otpapi.OwnQuery, ReportQuery, otpapi.REPORT)),  # type: ignore[arg-type]
}
