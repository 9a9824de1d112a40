"""Schema fuzzing (issue 13): Schemathesis generates requests from each OpenAPI document, positive
and negative, sends them to the app (the suite's `app`, on SQLite and PostgreSQL, real Redis, a
real test API key) and checks every answer against the same document: no 5xx, only documented
status codes and content types, and bodies that match their schemas.

Bounded for CI: FUZZ_EXAMPLES cases per operation and generation mode (default 12), seed
FUZZ_SEED (default 13). Driven through Schemathesis's Python API from an ordinary test (its pytest
plugin and pytest 9 do not mix). The figures (operations, cases) are printed and recorded as
`figure:` user properties, gathered at the end of the run (tests/conftest.py).
"""

from __future__ import annotations

import itertools
import os

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import FIGURE_PREFIX
from tests.helpers import make_key

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
SEED = int(os.environ.get("FUZZ_SEED", "13"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
DOCUMENTS = {"native": "/v1/openapi.json", "whatotp": "/compat/whatotp/openapi.json",
             "wawp": "/compat/wawp/openapi.json", "otpapi": "/compat/otpapi/openapi.json"}


def _real_ids(client, key) -> dict:
    """An OTP and a message of the key's app, so that some cases name objects that exist."""
    otp = client.post("/v1/otp/send", json={"recipient": "+905551112233"}, headers=key.headers)
    assert otp.status_code == 201, otp.get_json()
    templates = client.get("/v1/templates", headers=key.headers).get_json()["data"]
    ids = {"otp_id": otp.get_json()["id"]}
    plain = [t for t in templates if t["category"] != "AUTHENTICATION" and "{{" not in t["body"]]
    if plain:
        message = client.post("/v1/messages", json={"recipient": "+905551112233", "templateId": plain[0]["id"]},
                              headers=key.headers)
        if message.status_code == 202:
            ids["message_id"] = message.get_json()["id"]
    return ids


def _authorise(name: str, case, key, ids: dict, turn: int) -> dict:
    """The credentials of the dialect (headers to send), and on every other case a real object id."""
    if name == "wawp":
        case.query = {**(case.query or {}), "access_token": key.secret, "instance_id": key.app_id}
        return {}
    if turn % 2:
        for param in ("otp_id", "message_id"):
            if case.path_parameters and param in case.path_parameters and param in ids:
                case.path_parameters[param] = ids[param]
        for where in ("query", "body"):
            values = getattr(case, where, None)
            if isinstance(values, dict) and "verification_id" in values:
                values["verification_id"] = ids["otp_id"]
    if name == "otpapi":
        return {"X-API-Key": key.key_id, "X-API-Secret": key.secret}
    return {"Authorization": f"Bearer {key.secret}"}


def fuzz(operation, authorise) -> int:
    """Run the operation's cases (positive and negative) through the checks; the number run."""
    seen = []
    strategies = [operation.as_strategy(generation_mode=mode) for mode in GenerationMode]

    @hypothesis.seed(SEED)
    @settings(max_examples=EXAMPLES * 2, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), phases=[hypothesis.Phase.generate])
    @given(case=st.one_of(strategies))
    def run(case):
        seen.append(case)
        case.call_and_validate(headers=authorise(case), checks=CHECKS)

    try:
        run()
    finally:
        operation.fuzzed = len(seen)
    return len(seen)


@pytest.mark.parametrize("name", list(DOCUMENTS))
def test_fuzz(name, app, record_property):
    client = app.test_client()
    key = make_key(app)
    ids = _real_ids(client, key)
    schema = schemathesis.openapi.from_wsgi(DOCUMENTS[name], app)
    turns = itertools.count()
    operations = cases = 0
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        try:
            cases += fuzz(operation, lambda case: _authorise(name, case, key, ids, next(turns)))
        except Exception as exc:  # noqa: BLE001 - every failure is reported below, none suppressed
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    record_property(FIGURE_PREFIX + "operations", operations)
    record_property(FIGURE_PREFIX + "cases", cases)
    print(f"fuzz {name}: operations={operations}, cases={cases}, failures={len(failures)}")
    assert not failures, "\n\n".join(failures)


def test_fuzz_stateful(app, record_property):
    """Sequences of calls along the document's links (send -> show / verify / resend / cancel /
    attempts, message -> show), each answer checked as above. Derandomized: the same sequences
    every run (FUZZ_EXAMPLES sequences of at most 6 steps)."""
    key = make_key(app)
    schema = schemathesis.openapi.from_wsgi("/v1/openapi.json", app)
    steps = []

    class Stateful(schema.as_state_machine()):
        def get_call_kwargs(self, case):
            return {"headers": {"Authorization": f"Bearer {key.secret}"}}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            steps.append(f"{case.method} {case.path}")
            case.validate_response(response, checks=CHECKS)

    Stateful.run(settings=settings(max_examples=EXAMPLES, stateful_step_count=6, deadline=None, database=None,
                                   derandomize=True, suppress_health_check=list(HealthCheck)))
    linked = {step for step in steps if "{" in step}
    record_property(FIGURE_PREFIX + "stateful_steps", len(steps))
    print(f"fuzz stateful: steps={len(steps)}, linked operations reached={sorted(linked)}")
    assert linked, "the links were followed at least once"
