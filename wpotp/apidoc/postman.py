"""A Postman v2.1 collection made from the OpenAPI documents (wpotp.apidoc.document): one request
per operation, with its example body or parameters, and `baseUrl` / `apiKey` variables."""

from __future__ import annotations

import json
from typing import Any

SCHEMA = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"


def collection(native: dict, dialects: dict[str, dict], base_url: str) -> dict:
    items = _folder(native)
    for name, doc in dialects.items():
        items.append({"name": f"compat/{name}", "description": doc["info"].get("description", ""),
                      "item": _folder(doc)})
    return {
        "info": {"name": native["info"]["title"], "schema": SCHEMA,
                 "description": native["info"].get("description", "")},
        "variable": [{"key": "baseUrl", "value": base_url}, {"key": "apiKey", "value": "wpotp_test_..."}],
        "auth": {"type": "bearer", "bearer": [{"key": "token", "value": "{{apiKey}}", "type": "string"}]},
        "item": items,
    }


def _folder(doc: dict) -> list[dict]:
    out = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            out.append(request_item(doc, path, method, op))
    return out


def _auth(doc: dict, op: dict) -> dict | None:
    """The request's auth: none for public operations, else the document's first scheme."""
    if op.get("security") == []:
        return {"type": "noauth"}
    schemes = doc["components"].get("securitySchemes", {})
    for scheme in schemes.values():
        if scheme.get("type") == "http" and scheme.get("scheme") == "bearer":
            return None  # the collection's bearer {{apiKey}}
    return {"type": "noauth"}


def request_item(doc: dict, path: str, method: str, op: dict) -> dict[str, Any]:
    segments = [(":" + s[1:-1]) if s.startswith("{") else s for s in path.strip("/").split("/")]
    query = []
    headers = []
    example = _example(op)
    for param in op.get("parameters", []):
        if param["in"] == "query":
            value = param.get("example")
            if value is None and not param.get("required"):
                continue
            query.append({"key": param["name"], "value": "" if value is None else str(value)})
    if "access_token" in {q["key"] for q in query}:  # Wawp carries the key as a parameter
        query = [({**q, "value": "{{apiKey}}"} if q["key"] == "access_token" else q) for q in query]
    url = {"raw": "{{baseUrl}}/" + "/".join(segments) + ("?" + "&".join(f"{q['key']}={q['value']}" for q in query)
                                                        if query else ""),
           "host": ["{{baseUrl}}"], "path": segments}
    if query:
        url["query"] = query
    variables = [{"key": s[1:], "value": ""} for s in segments if s.startswith(":")]
    if variables:
        url["variable"] = variables
    request: dict[str, Any] = {"method": method.upper(), "header": headers, "url": url,
                               "description": op.get("description", op.get("summary", ""))}
    if "requestBody" in op:
        headers.append({"key": "Content-Type", "value": "application/json"})
        body = example if isinstance(example, dict) else {}
        if "access_token" in body:
            body = {**body, "access_token": "{{apiKey}}"}
        request["body"] = {"mode": "raw", "raw": json.dumps(body, indent=2),
                           "options": {"raw": {"language": "json"}}}
    auth = _auth(doc, op)
    if auth is not None:
        request["auth"] = auth
    return {"name": op.get("summary", op["operationId"]), "request": request}


def _example(op: dict) -> dict | None:
    return op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("example")
