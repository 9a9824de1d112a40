"""The OpenAPI documents (issue 13): valid OpenAPI 3.1, generated from the code (change a model and
the document changes), covering exactly the routes the app registers under /v1 and /compat, with
examples that validate against their own schemas and match what the service answers."""

from __future__ import annotations

import jsonschema
import pytest
from openapi_spec_validator import validate
from pydantic import Field

from wpotp import apidoc
from wpotp.api import answers, schemas
from wpotp.apidoc import registry

DOCUMENTS = {"": "/v1/openapi.json", "whatotp": "/compat/whatotp/openapi.json",
             "wawp": "/compat/wawp/openapi.json", "otpapi": "/compat/otpapi/openapi.json"}


def fetch(client, path: str) -> dict:
    answer = client.get(path)
    assert answer.status_code == 200, answer.get_data(as_text=True)[:300]
    assert answer.mimetype == "application/json"
    return answer.get_json()


@pytest.mark.parametrize("dialect", list(DOCUMENTS))
def test_document_is_valid_openapi_31(client, dialect):
    doc = fetch(client, DOCUMENTS[dialect])
    assert doc["openapi"].startswith("3.1")
    validate(doc)  # openapi-spec-validator picks the 3.1 validator from the version


def test_every_route_under_v1_and_compat_is_documented_and_nothing_else(app, client):
    registered = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(("/v1/", "/compat/")) or rule.rule == "/v1":
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                registered.add((apidoc.openapi_path(rule.rule), method.lower()))
    documented = set()
    for path in DOCUMENTS.values():
        for route, ops in fetch(client, path)["paths"].items():
            documented |= {(route, method) for method in ops}
    assert documented == registered
    assert ("/v1/otp/{otp_id}/verify", "post") in documented  # the comparison is not of two empty sets
    assert ("/compat/wawp/v2/auth/otp/send", "get") in documented


def test_a_route_missing_from_the_registry_stops_the_build(app, monkeypatch):
    monkeypatch.delitem(registry.NATIVE, "api.show")
    with pytest.raises(LookupError, match="api.show"):
        apidoc.build(app)


def test_changing_a_model_changes_the_document(app, monkeypatch):
    before = apidoc.build(app)
    assert "channelHint" not in before["components"]["schemas"]["SendOtpBody"]["properties"]

    class SendOtpBodyWithHint(schemas.SendOtpBody):
        channelHint: str | None = Field(None, max_length=8)  # noqa: N815

    monkeypatch.setattr(registry.NATIVE["api.send"], "body", SendOtpBodyWithHint)

    class OtpSummaryWithCountry(answers.OtpSummary):
        country: str

    monkeypatch.setitem(registry.NATIVE["api.send"].answers, 201, OtpSummaryWithCountry)
    after = apidoc.build(app)
    send = after["paths"]["/v1/otp/send"]["post"]
    body = send["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert after["components"]["schemas"][body]["properties"]["channelHint"]["anyOf"][0] == \
        {"type": "string", "maxLength": 8}
    answer = send["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert "country" in after["components"]["schemas"][answer]["required"]
    assert "country" not in after["components"]["schemas"]["OtpSummary"]["required"]  # the 200's, unchanged
    validate(after)


def test_the_document_is_built_once_per_process(app, client):
    first = fetch(client, "/v1/openapi.json")
    assert apidoc.document(app) is apidoc.document(app)
    assert fetch(client, "/v1/openapi.json") == first


def _schema_validator(doc: dict, schema: dict):
    """A JSON Schema 2020-12 validator for `schema`, resolving #/components refs in `doc`."""
    return jsonschema.Draft202012Validator({**schema, "components": doc["components"]})


def _examples(doc: dict):
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for media in op.get("requestBody", {}).get("content", {}).values():
                if "example" in media:
                    yield f"{method} {path} request", media["schema"], media["example"]
            for param in op.get("parameters", []):
                if "example" in param:
                    yield f"{method} {path} {param['name']}", param["schema"], param["example"]
            for status, answer in op["responses"].items():
                for media in answer.get("content", {}).values():
                    if "example" in media:
                        yield f"{method} {path} {status}", media["schema"], media["example"]


@pytest.mark.parametrize("dialect", list(DOCUMENTS))
def test_examples_validate_against_their_own_schemas(client, dialect):
    doc = fetch(client, DOCUMENTS[dialect])
    found = list(_examples(doc))
    assert found, "every document carries examples"
    for where, schema, example in found:
        errors = [e.message for e in _schema_validator(doc, schema).iter_errors(example)]
        assert not errors, (where, errors)


def test_examples_match_what_the_service_answers(client, api_key):
    doc = fetch(client, "/v1/openapi.json")
    send = doc["paths"]["/v1/otp/send"]["post"]
    body = send["requestBody"]["content"]["application/json"]["example"]
    sent = client.post("/v1/otp/send", json=body, headers=api_key.headers)
    assert sent.status_code == 201
    example = send["responses"]["201"]["content"]["application/json"]["example"]
    real = sent.get_json()
    assert set(real) == set(example)
    assert real["status"] == example["status"] and real["recipient"] == example["recipient"]
    assert real["reference"] == example["reference"]
    schema = send["responses"]["201"]["content"]["application/json"]["schema"]
    assert not list(_schema_validator(doc, schema).iter_errors(real))

    bad = client.post("/v1/otp/send", json={**body, "recipient": "+1"}, headers=api_key.headers)
    error_example = send["responses"]["400"]["content"]["application/json"]["example"]
    assert bad.status_code == 400
    assert bad.get_json()["error"]["code"] == error_example["error"]["code"]
    assert bad.get_json()["error"]["message"] == error_example["error"]["message"]

    verify = doc["paths"]["/v1/otp/{otp_id}/verify"]["post"]
    wrong = client.post(f"/v1/otp/{real['id']}/verify", json=verify["requestBody"]["content"]["application/json"]
                        ["example"], headers=api_key.headers)
    assert wrong.status_code in (200, 400)  # the example's code is someone's, not this OTP's
    assert set(verify["responses"]["200"]["content"]["application/json"]["example"]) == \
        set(answers.Verified.model_fields)


def test_errors_name_their_codes_and_webhooks_are_spec_6s_and_12s(client):
    doc = fetch(client, "/v1/openapi.json")
    verify = doc["paths"]["/v1/otp/{otp_id}/verify"]["post"]["responses"]
    codes = verify["400"]["content"]["application/json"]["schema"]["allOf"][1]["properties"]["error"]
    assert {"VALIDATION_ERROR", "INVALID_CODE", "OTP_EXPIRED"} <= set(codes["properties"]["code"]["enum"])
    assert verify["429"]["headers"]["Retry-After"]
    assert set(doc["webhooks"]) == {"otp.sent", "otp.delivered", "otp.read", "otp.verified", "otp.failed",
                                    "otp.expired", "otp.canceled", "message.sent", "message.delivered",
                                    "message.read", "message.failed", "otp.fallback"}
    assert "subscribe" in doc["webhooks"]["otp.fallback"]["post"]["summary"]
    headers = {h["name"] for h in doc["webhooks"]["otp.sent"]["post"]["parameters"]}
    assert {"X-Wpotp-Signature", "X-Wpotp-Timestamp", "X-Wpotp-Signature-V2"} <= headers
    assert doc["paths"]["/v1/openapi.json"]["get"]["security"] == []
    assert {"bearer", "apiKeyHeader"} == set(doc["components"]["securitySchemes"])


def test_postman_collection_has_one_request_per_operation(client):
    native = fetch(client, "/v1/openapi.json")
    collection = fetch(client, "/v1/postman.json")
    assert collection["info"]["schema"].endswith("/v2.1.0/collection.json")
    assert {v["key"] for v in collection["variable"]} == {"baseUrl", "apiKey"}
    top = [item for item in collection["item"] if "request" in item]
    assert len(top) == sum(len(ops) for ops in native["paths"].values())
    send = next(item for item in top if item["request"]["url"]["path"] == ["v1", "otp", "send"])
    assert send["request"]["method"] == "POST"
    assert '"recipient": "+905551112233"' in send["request"]["body"]["raw"]
    folders = {item["name"]: item for item in collection["item"] if "item" in item}
    assert set(folders) == {"compat/whatotp", "compat/wawp", "compat/otpapi"}
    wawp = fetch(client, "/compat/wawp/openapi.json")
    assert len(folders["compat/wawp"]["item"]) == sum(len(ops) for ops in wawp["paths"].values())
    download = client.get("/v1/postman.json?download=1")
    assert "attachment" in download.headers["Content-Disposition"]


def test_docs_page_uses_local_assets_only(client):
    page = client.get("/v1/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in html
    assert "<script>" not in html and "http://" not in html and "https://" not in html
    for asset in ("/static/vendor/swagger-ui/swagger-ui-bundle.js", "/static/vendor/swagger-ui/swagger-ui.css",
                  "/static/js/swagger-init.js"):
        assert client.get(asset).status_code == 200


def test_answers_of_a_whole_lifecycle_fit_the_answer_models(client, api_key, run_worker, outbox):
    """The serializers and wpotp/api/answers.py agree on real objects with real timelines (a sent,
    failed-then-verified OTP, a canceled one, a message), not only the QUEUED ones fuzzing sees."""
    from tests.api.support import latest_code

    h = api_key.headers
    sent = client.post("/v1/otp/send", json={"recipient": "+905551112233", "reference": "r-1"}, headers=h)
    answers.OtpSummary.model_validate(sent.get_json())
    other = client.post("/v1/otp/send", json={"recipient": "+905551112234"}, headers=h).get_json()
    run_worker()
    otp_id = sent.get_json()["id"]
    assert client.post(f"/v1/otp/{otp_id}/verify", json={"code": "000000"}, headers=h).status_code == 400
    verified = client.post(f"/v1/otp/{otp_id}/verify", json={"code": latest_code(outbox, "+905551112233")},
                           headers=h)
    answers.Verified.model_validate(verified.get_json())
    answers.Otp.model_validate(client.get(f"/v1/otp/{otp_id}", headers=h).get_json())
    answers.Otp.model_validate(client.post(f"/v1/otp/{other['id']}/cancel", headers=h).get_json())
    listing = answers.OtpList.model_validate(client.get("/v1/otp", headers=h).get_json())
    assert len(listing.data) == 2
    attempts = answers.AttemptList.model_validate(client.get(f"/v1/otp/{otp_id}/attempts", headers=h).get_json())
    assert len(attempts.data) == 2
    logs = answers.LogList.model_validate(client.get("/v1/logs", headers=h).get_json())
    assert {e.type for e in logs.data} >= {"otp.sent", "otp.verified", "otp.canceled"}
    answers.TemplateList.model_validate(client.get("/v1/templates", headers=h).get_json())
    answers.RateLimitList.model_validate(client.get("/v1/rate-limits?recipient=%2B905551112233",
                                                    headers=h).get_json())
    answers.Report.model_validate(client.get("/v1/reports", headers=h).get_json())
    answers.Report.model_validate(client.get("/v1/reports?interval=hour", headers=h).get_json())
    bad = client.post("/v1/otp/send", json={"recipient": 5}, headers=h)
    answers.ErrorEnvelope.model_validate(bad.get_json())
