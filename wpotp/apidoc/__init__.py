"""The OpenAPI 3.1 documents of /v1 and of each dialect, generated from the code: the routes in
`app.url_map`, the pydantic models the views validate with (wpotp.api.schemas and the dialects'
own), the answer models (wpotp.api.answers, wpotp.compat.answers), SPEC §3's envelope and each
operation's error codes (wpotp.apidoc.registry), the security schemes and SPEC §6's webhooks.

Built once per process and app (`document`), served by wpotp/api/docs.py; the Postman collection
(wpotp.apidoc.postman) is made from the same document.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from flask import Flask
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ..api import answers as a
from ..compat import snake_name
from ..compat.otpapi import RENAMED
from ..webhooks.events import DEFAULT_EVENTS, PUBLIC_EVENTS
from . import registry
from .registry import Op

REF = "#/components/schemas/{model}"
_ARG = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
SKIP_METHODS = {"HEAD", "OPTIONS"}
VERSION = "1"


@dataclass(frozen=True)
class Dialect:
    name: str  # "" for the native API
    title: str
    prefix: str
    ops: dict[str, Op]
    security: dict[str, dict]
    error_style: str  # "envelope" | "flat" (Wawp)
    snake: bool = False  # answers are the native models in snake_case (otpapi)
    description: str = ""


BEARER = {"type": "http", "scheme": "bearer", "description": "An API key, `wpotp_live_...` or `wpotp_test_...`."}
DIALECTS = {
    "": Dialect("", "wpotp API", "/v1", registry.NATIVE,
                {"bearer": BEARER, "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
                "envelope",
                description="wpotp's native JSON API (SPEC §5): send and verify WhatsApp one-time passwords. "
                            "Every answer that is not 2xx is `{\"error\": {\"code\", \"message\", \"details\"}}`."),
    "whatotp": Dialect("whatotp", "wpotp: the WhatOTP dialect", "/compat/whatotp", registry.WHATOTP,
                       {"bearer": BEARER}, "envelope",
                       description="WhatOTP's API spoken by wpotp. Errors keep the native envelope."),
    "wawp": Dialect("wawp", "wpotp: the Wawp dialect", "/compat/wawp", registry.WAWP,
                    {"accessToken": {"type": "apiKey", "in": "query", "name": "access_token",
                                     "description": "A wpotp API key; `instance_id` names its app. In a POST "
                                                    "body too."}},
                    "flat", description="Wawp's OTP calls spoken by wpotp. Errors are flat: "
                                        "`{\"code\": \"<lowercase>\", \"message\", ...details}`."),
    "otpapi": Dialect("otpapi", "wpotp: the otpapi dialect", "/compat/otpapi", registry.OTPAPI,
                      {"keyAndSecret": {"type": "apiKey", "in": "header", "name": "X-API-Secret",
                                        "description": "The API key, with its id (`key_...`) in X-API-Key."},
                       "basic": {"type": "http", "scheme": "basic", "description": "key id : API key"},
                       "bearer": BEARER},
                      "envelope", snake=True,
                      description="The generic OTP API spoken by wpotp: snake_case fields, errors in the native "
                                  "envelope with snake_case details."),
}

_cache: dict[tuple[int, str], dict] = {}


def document(app: Flask, dialect: str = "") -> dict:
    """The document of `dialect` ("" for /v1), built on first use and kept for the process."""
    key = (id(app), dialect)
    if key not in _cache:
        _cache[key] = build(app, dialect)
    return _cache[key]


def openapi_path(rule: str) -> str:
    return _ARG.sub(lambda m: "{" + m.group(1) + "}", rule)


def routes(app: Flask, prefix: str) -> list[tuple[str, str, str]]:
    """(OpenAPI path, method, endpoint) for every rule of `app` under `prefix`."""
    out = []
    for rule in app.url_map.iter_rules():
        if rule.rule != prefix and not rule.rule.startswith(prefix + "/"):
            continue
        for method in sorted((rule.methods or set()) - SKIP_METHODS):
            out.append((openapi_path(rule.rule), method, rule.endpoint))
    return sorted(out)


class Schemas:
    """The document's components: the models' schemas, generated together (shared $defs)."""

    def __init__(self, snake: bool):
        self.snake = snake
        self.components: dict[str, Any] = {}
        self.refs: dict[type[BaseModel], dict] = {}

    def add(self, models: list[tuple[type[BaseModel], str]]) -> None:
        refs, defs = models_json_schema(models, ref_template=REF)
        for name, schema in defs.get("$defs", {}).items():
            self.components[name] = snake_schema(schema) if self.snake else schema
        self.refs.update({model: ref for (model, _mode), ref in refs.items()})

    def ref(self, model: type[BaseModel]) -> dict:
        return dict(self.refs[model])


def snake_schema(schema: Any) -> Any:
    """A native answer schema as the otpapi dialect answers it (wpotp.compat.otpapi.snake)."""
    if isinstance(schema, list):
        return [snake_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "properties" and isinstance(value, dict):
            out[key] = {_snake(name): snake_schema(item) for name, item in value.items()}
        elif key == "required" and isinstance(value, list):
            out[key] = [_snake(name) for name in value]
        else:
            out[key] = snake_schema(value)
    return out


def _snake(name: str) -> str:
    snaked = snake_name(name)
    return RENAMED.get(snaked, snaked)


def error_schema(style: str, codes: list[str]) -> dict:
    code = {"type": "string", "enum": codes}
    if style == "flat":
        return {"type": "object", "required": ["code", "message"],
                "properties": {"code": code, "message": {"type": "string"}},
                "additionalProperties": True, "description": "The error's details ride beside code and message."}
    return {"allOf": [{"$ref": REF.format(model="ErrorEnvelope")},
                      {"type": "object", "properties": {"error": {"type": "object", "properties": {"code": code}}}}]}


def translated_schema(schemas: Schemas, spec: tuple) -> dict:
    """otpapi's requests: the dialect's own fields, plus the native model's fields it renames
    (`names`: dialect name -> native name), validated by that native model."""
    own, native, names = spec
    own_schema = own.model_json_schema(ref_template=REF)
    props = dict(own_schema.get("properties", {}))
    required = list(own_schema.get("required", []))
    if native is not None:
        native_schema = native.model_json_schema(ref_template=REF)
        for name, native_name in names.items():
            if native_name in native_schema.get("properties", {}):
                props[name] = native_schema["properties"][native_name]
                if native_name in native_schema.get("required", []):
                    required.append(name)
    out = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        out["required"] = required
    return out


def _schema_of(schemas: Schemas, spec) -> dict:
    if isinstance(spec, tuple):
        return translated_schema(schemas, spec)
    if isinstance(spec, dict):
        return spec
    return schemas.ref(spec)


def _query_parameters(schemas: Schemas, spec, example: dict | None) -> list[dict]:
    schema = translated_schema(schemas, spec) if isinstance(spec, tuple) else spec.model_json_schema(ref_template=REF)
    required = set(schema.get("required", []))
    out = []
    for name, prop in schema.get("properties", {}).items():
        param = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if example and name in example:
            param["example"] = example[name]
        out.append(param)
    return out


def otpapi_answers(schemas: Schemas) -> dict[str, dict]:
    """The otpapi dialect's answers: the native models in snake_case, an OTP's `id` as
    `verification_id` beside `channel` (wpotp.compat.otpapi.verification)."""
    c = schemas.components

    def verification(model: str) -> dict:
        schema = copy.deepcopy(c[model])
        props = schema["properties"]
        props["verification_id"] = props.pop("id")
        schema["required"] = ["verification_id", "channel",
                              *[r for r in schema["required"] if r not in ("id", "channel")]]
        schema["title"] = "Verification" + model.removeprefix("Otp")
        return schema

    c["Verification"] = verification("OtpSummary")
    c["VerificationDetail"] = verification("OtpDetail")
    c["VerificationWithTimeline"] = verification("Otp")
    verified = copy.deepcopy(c["Verified"])
    verified["properties"]["verification_id"] = verified["properties"].pop("id")
    verified["required"] = [("verification_id" if r == "id" else r) for r in verified["required"]]
    c["OtpapiVerified"] = verified
    ref = {name: {"$ref": REF.format(model=name)} for name in c}
    attempts = copy.deepcopy(c["AttemptList"])
    attempts["properties"]["verification_id"] = {"type": "string"}
    attempts["required"].append("verification_id")
    listing = copy.deepcopy(c["OtpList"])
    listing["properties"]["data"]["items"] = ref["VerificationDetail"]
    return {"verification": ref["Verification"], "verified": ref["OtpapiVerified"],
            "verification+timeline": ref["VerificationWithTimeline"], "list": listing, "attempts": attempts,
            "logs": ref["LogList"], "rate_limits": ref["RateLimitList"], "report": ref["Report"]}


def build(app: Flask, dialect: str = "") -> dict:
    d = DIALECTS[dialect]
    schemas = Schemas(snake=d.snake)
    answer_models = {m for op in d.ops.values() for m in op.answers.values() if isinstance(m, type)}
    body_models = {op.body for op in d.ops.values() if isinstance(op.body, type)}
    native_answers = [a.OtpSummary, a.OtpDetail, a.Otp, a.OtpList, a.Verified, a.AttemptList, a.LogList,
                      a.RateLimitList, a.Report] if d.snake else []
    models = [(m, "serialization") for m in sorted(answer_models | set(native_answers) | {a.ErrorEnvelope},
                                                    key=lambda m: m.__name__)]
    models += [(m, "validation") for m in sorted(body_models, key=lambda m: m.__name__)]
    schemas.add(models)
    named = otpapi_answers(schemas) if d.snake else {}
    if d.snake:  # the envelope's own field names are not renamed; only the answers are
        schemas.components["ErrorEnvelope"] = a.ErrorEnvelope.model_json_schema(ref_template=REF)
        schemas.components["ErrorEnvelope"].pop("$defs", None)
        schemas.components["ErrorEnvelope"]["properties"]["error"] = {"$ref": REF.format(model="ErrorBody")}
    if d.error_style == "flat":
        schemas.components.pop("ErrorEnvelope", None)
        schemas.components.pop("ErrorBody", None)

    paths: dict[str, dict] = {}
    for path, method, endpoint in routes(app, d.prefix):
        op = d.ops.get(endpoint)
        if op is None:
            raise LookupError(f"{method} {path} ({endpoint}) is not in wpotp/apidoc/registry.py")
        paths.setdefault(path, {})[method.lower()] = operation(d, schemas, named, op, path, method, endpoint)
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": d.title, "version": VERSION, "description": d.description,
                 "license": {"name": "See the repository", "identifier": "MIT"}},
        "servers": [{"url": "/", "description": "This server"}],
        "security": [{name: []} for name in d.security],
        "tags": sorted(({"name": op.tag} for op in d.ops.values()), key=lambda t: t["name"]),
        "paths": paths,
        "components": {"schemas": dict(sorted(schemas.components.items())), "securitySchemes": d.security},
    }
    doc["tags"] = [dict(t) for t in {t["name"]: t for t in doc["tags"]}.values()]
    if not dialect:
        doc["webhooks"] = webhooks(doc)
    return doc


def operation(d: Dialect, schemas: Schemas, named: dict, op: Op, path: str, method: str, endpoint: str) -> dict:
    out: dict[str, Any] = {"operationId": f"{endpoint.replace('.', '_')}_{method.lower()}", "summary": op.summary,
                           "tags": [op.tag]}
    if op.description:
        out["description"] = op.description
    params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
              for name in re.findall(r"{([^}]+)}", path)]
    body = op.body
    if op.form:  # Wawp: query parameters on GET, a JSON or form body (or the query) on POST
        if method == "GET":
            params += _query_parameters(schemas, op.query, op.example)
        else:
            body = op.query
    elif op.query is not None:
        params += _query_parameters(schemas, op.query, op.example)
    if params:
        out["parameters"] = params
    if body is not None:
        schema = _schema_of(schemas, body) if not isinstance(body, type) or not op.form else \
            body.model_json_schema(ref_template=REF)
        content = {"application/json": {"schema": schema}}
        if op.example is not None:
            content["application/json"]["example"] = op.example
        if op.form:
            content["application/x-www-form-urlencoded"] = {"schema": schema}
        out["requestBody"] = {"required": True, "content": content}
    responses: dict[str, Any] = {}
    for status, model in sorted(op.answers.items()):
        if isinstance(model, tuple):
            media, schema = model
        elif isinstance(model, str):
            media, schema = "application/json", named[model]
        else:
            media, schema = "application/json", schemas.ref(model)
        content = {media: {"schema": schema}}
        if status in op.answer_examples:
            content[media]["example"] = op.answer_examples[status]
        responses[str(status)] = {"description": _status_text(status), "content": content}
        if op.links:
            responses[str(status)]["links"] = {target: {"operationId": target, "parameters": args}
                                               for target, args in op.links.items()}
    for status, codes in sorted(op.errors.items()):
        content = {"application/json": {"schema": error_schema(d.error_style, codes)}}
        if status in op.answer_examples:
            content["application/json"]["example"] = op.answer_examples[status]
        answer: dict[str, Any] = {"description": _status_text(status) + ": " + ", ".join(codes), "content": content}
        if status == 429:
            answer["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}}
        responses[str(status)] = answer
    out["responses"] = responses
    if op.public:
        out["security"] = []
    return out


def webhooks(doc: dict) -> dict:
    """SPEC §6's events and the opt-in `otp.fallback` (SPEC §12, channel `auto`), each POSTed to the
    app's endpoint with the signed WebhookEvent body."""
    _refs, defs = models_json_schema([(a.WebhookEvent, "serialization")], ref_template=REF)
    doc["components"]["schemas"].update(defs.get("$defs", {}))
    headers = [{"name": "X-Wpotp-Event", "in": "header", "required": True, "schema": {"type": "string"}},
               {"name": "X-Wpotp-Delivery", "in": "header", "required": True, "schema": {"type": "string"}},
               {"name": "X-Wpotp-Signature", "in": "header", "required": True,
                "description": "`sha256=` and the hex HMAC-SHA256 of the raw body under the endpoint's secret.",
                "schema": {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"}},
               {"name": "X-Wpotp-Timestamp", "in": "header", "required": True,
                "description": "Unix seconds of this attempt, covered by X-Wpotp-Signature-V2.",
                "schema": {"type": "string", "pattern": "^[0-9]+$"}},
               {"name": "X-Wpotp-Signature-V2", "in": "header", "required": True,
                "description": "`sha256=` and the hex HMAC-SHA256 of `<X-Wpotp-Timestamp>.<raw body>`.",
                "schema": {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"}}]
    out = {}
    for event in PUBLIC_EVENTS:
        schema = {"allOf": [{"$ref": REF.format(model="WebhookEvent")},
                            {"type": "object", "properties": {"event": {"const": event}}}]}
        out[event] = {"post": {
            "summary": f"{event}, delivered at least once to the app's endpoint"
                       + ("" if event in DEFAULT_EVENTS else " (only to endpoints that subscribe to it)"),
            "parameters": headers,
            "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
            "responses": {"2XX": {"description": "Received; anything else (or a timeout) is retried."}},
        }}
    return out


def _status_text(status: int) -> str:
    from http import HTTPStatus

    return HTTPStatus(status).phrase
