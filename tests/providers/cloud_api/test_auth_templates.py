"""Authentication templates as Meta defines them: the app's OTP button (copy code, one-tap
autofill, zero-tap with its Android app), the security recommendation, the expiry warning and the
message time-to-live from the OTP lifetime; `sync-templates --create` and `--check` against the
Graph double, which refuses what Meta refuses; sends through a real worker."""

from __future__ import annotations

import pytest
import requests
from sqlalchemy import select, update

from tests.helpers import make_key
from tests.otp.support import show
from wpotp.extensions import db
from wpotp.models import App, AuditEntry, Template
from wpotp.otp.auth_templates import button_problems, code_expiration_minutes, message_send_ttl_seconds

from .authentication_templates import auth_template
from .graph import TOKEN, VERSION, WABA_ID, otp_payload, token_expired
from .support import RECIPIENT, send_and_work

pytestmark = pytest.mark.usefixtures("restore_templates")

PACKAGE = "com.example.shop"
HASH = "K8a/AINcGX7"


def _cli(app, *args: str):
    return app.test_cli_runner().invoke(args=["wpotp", "sync-templates", *args])


def _app(cloud_app, **settings) -> None:
    """The `default` app with these settings (created if missing)."""
    make_key(cloud_app, mode="live")
    if settings:
        with cloud_app.app_context():
            db.session.execute(update(App).where(App.name == "default").values(**settings))
            db.session.commit()


def _creations(graph) -> list[dict]:
    return [s.json for s in graph.http.seen if s.method == "POST" and s.path.endswith("/message_templates")]


def _audit(app, action: str) -> list[dict]:
    with app.app_context():
        return [e.details for e in db.session.scalars(select(AuditEntry).where(AuditEntry.action == action)
                                                       .order_by(AuditEntry.id))]


def _template(app, name: str, language: str) -> Template:
    with app.app_context():
        row = db.session.scalars(select(Template).where(Template.name == name, Template.language == language)).one()
        db.session.expunge(row)
        return row


# --- --create --------------------------------------------------------------------------------------

def test_create_makes_a_copy_code_template_per_language_with_the_ttl_of_the_otp(cloud_app, graph):
    _app(cloud_app)  # defaults: COPY_CODE, security recommendation on, OTP lifetime 300 s
    graph.template_pages = [[]]

    result = _cli(cloud_app, "--create")

    assert result.exit_code == 0, result.output
    assert graph.problems == []
    assert _creations(graph) == [
        {"name": "wpotp_verification", "language": language, "category": "AUTHENTICATION",
         "message_send_ttl_seconds": 300,
         "components": [{"type": "BODY", "add_security_recommendation": True},
                        {"type": "FOOTER", "code_expiration_minutes": 5},
                        {"type": "BUTTONS", "buttons": [{"type": "OTP", "otp_type": "COPY_CODE"}]}]}
        for language in ("en", "tr")]
    lines = result.output.strip().splitlines()
    assert lines[:2] == ["created wpotp_verification/en (APPROVED)", "created wpotp_verification/tr (APPROVED)"]
    assert lines[-1].startswith("fetched=2 ")  # then the pull, as without --create
    assert _template(cloud_app, "wpotp_verification", "en").status == "APPROVED"
    created = _audit(cloud_app, "templates.create")
    assert [(d["language"], d["ok"], d["status"], d["app"]) for d in created] == [("en", True, "APPROVED", "default"),
                                                                                ("tr", True, "APPROVED", "default")]
    assert [d["ok"] for d in _audit(cloud_app, "templates.sync")] == [True]


def test_create_one_tap_names_the_android_app_and_follows_the_app_lifetime(cloud_app, graph):
    _app(cloud_app, otp_type="ONE_TAP", android_package_name=PACKAGE, android_signature_hash=HASH, otp_ttl=600,
         security_recommendation=False)
    graph.template_pages = [[]]
    graph.creation_status = "PENDING"

    result = _cli(cloud_app, "--create", "--name", "shop_login", "--language", "en_US")

    assert result.exit_code == 0, result.output
    assert graph.problems == []
    [created] = _creations(graph)
    assert created["message_send_ttl_seconds"] == 600
    assert created["components"] == [
        {"type": "BODY", "add_security_recommendation": False},
        {"type": "FOOTER", "code_expiration_minutes": 10},
        {"type": "BUTTONS", "buttons": [{"type": "OTP", "otp_type": "ONE_TAP",
                                         "supported_apps": [{"package_name": PACKAGE, "signature_hash": HASH}]}]}]
    assert "created shop_login/en_US (PENDING)" in result.output
    assert _template(cloud_app, "shop_login", "en_US").status == "PENDING"


def test_create_zero_tap_carries_the_accepted_terms(cloud_app, graph):
    _app(cloud_app, otp_type="ZERO_TAP", android_package_name=PACKAGE, android_signature_hash=HASH,
         zero_tap_terms_accepted=True)
    graph.template_pages = [[]]

    result = _cli(cloud_app, "--create", "--language", "en")

    assert result.exit_code == 0, result.output
    assert graph.problems == []
    [created] = _creations(graph)
    assert created["components"][2]["buttons"] == [
        {"type": "OTP", "otp_type": "ZERO_TAP", "supported_apps": [{"package_name": PACKAGE, "signature_hash": HASH}],
         "zero_tap_terms_accepted": True}]


def test_zero_tap_without_the_terms_is_refused_before_meta_is_asked(cloud_app, graph):
    _app(cloud_app, otp_type="ZERO_TAP", android_package_name=PACKAGE, android_signature_hash=HASH)

    result = _cli(cloud_app, "--create")

    assert result.exit_code != 0
    assert "zero-tap terms" in result.output
    assert graph.http.seen == []


def test_a_language_meta_has_already_is_left_alone(cloud_app, graph):
    _app(cloud_app)
    graph.template_pages = [[auth_template("wpotp_verification", "en")]]

    result = _cli(cloud_app, "--create", "--language", "en", "--language", "de")

    assert result.exit_code == 0, result.output
    assert [c["language"] for c in _creations(graph)] == ["de"]
    assert "exists wpotp_verification/en (APPROVED)" in result.output


def test_meta_refusing_a_creation_is_reported_after_what_was_created(cloud_app, graph):
    _app(cloud_app)
    graph.template_pages = [[]]
    refuse = iter([False, True])
    graph.http.handler = lambda seen: token_expired() if seen.method == "POST" and next(refuse) \
        else graph._handle(seen)

    result = _cli(cloud_app, "--create", "--language", "en", "--language", "de")

    assert result.exit_code != 0
    assert "created wpotp_verification/en (APPROVED)" in result.output
    assert "Meta refused wpotp_verification/de: 190:" in result.output
    assert TOKEN not in result.output
    entries = _audit(cloud_app, "templates.create")
    assert [(d.get("language"), d["ok"]) for d in entries] == [("en", True), (None, False)]
    assert "190:" in entries[1]["error"] and TOKEN not in entries[1]["error"]


# --- --check -----------------------------------------------------------------------------------------

def test_check_passes_when_meta_has_what_the_app_wants(cloud_app, graph):
    _app(cloud_app, otp_type="ONE_TAP", android_package_name=PACKAGE, android_signature_hash=HASH)
    graph.template_pages = [[]]
    assert _cli(cloud_app, "--create").exit_code == 0
    before = len(graph.http.seen)

    result = _cli(cloud_app, "--check")

    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["ok wpotp_verification/en (APPROVED)", "ok wpotp_verification/tr (APPROVED)"]
    assert [s.method for s in graph.http.seen[before:]] == ["GET"]  # a check only reads


def test_check_reports_drift_and_exits_nonzero(cloud_app, graph):
    # Meta's templates: en is the seeded copy-code one without a time-to-live; tr is missing.
    graph.template_pages = [[auth_template("wpotp_verification", "en")]]
    _app(cloud_app, otp_type="ONE_TAP", android_package_name=PACKAGE, android_signature_hash=HASH, otp_ttl=120)

    result = _cli(cloud_app, "--check")

    assert result.exit_code == 1
    assert "drift wpotp_verification/en (APPROVED)" in result.output
    assert "otp_type is COPY_CODE at Meta, the app wants ONE_TAP" in result.output
    assert f"supported_apps is none at Meta, the app wants {PACKAGE}/{HASH}" in result.output
    assert "code_expiration_minutes is 5 at Meta, the app wants 2" in result.output
    assert "? message_send_ttl_seconds: Meta did not report it, so it was not checked" in result.output
    assert "missing wpotp_verification/tr" in result.output
    assert "drift in 2 of 2 language(s): en, tr" in result.output


def test_a_reported_time_to_live_that_differs_is_drift(cloud_app, graph):
    graph.template_pages = [[auth_template("wpotp_verification", "en", ttl=600)]]
    _app(cloud_app)

    result = _cli(cloud_app, "--check", "--language", "en")

    assert result.exit_code == 1
    assert "message_send_ttl_seconds is 600 at Meta, the app wants 300" in result.output


def test_check_reads_meta_older_url_form_of_the_one_tap_button(cloud_app, graph):
    url = ("https://www.whatsapp.com/otp/code/?otp_type=ONE_TAP&cta_display_name=Autofill"
           f"&package_name={PACKAGE}&signature_hash=K8a%2FAINcGX7&code=otp{{{{1}}}}")
    template = auth_template("wpotp_verification", "en", ttl=300)
    template["components"][2] = {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Copy code", "url": url}]}
    graph.template_pages = [[template]]
    _app(cloud_app, otp_type="ONE_TAP", android_package_name=PACKAGE, android_signature_hash=HASH)

    result = _cli(cloud_app, "--check", "--language", "en")

    assert result.exit_code == 0, result.output


def test_a_paused_template_is_drift_too(cloud_app, graph):
    graph.template_pages = [[auth_template("wpotp_verification", "en", status="PAUSED", ttl=300)]]
    _app(cloud_app)

    result = _cli(cloud_app, "--check", "--language", "en")

    assert result.exit_code == 1
    assert "status is PAUSED" in result.output


# --- --update ---------------------------------------------------------------------------------------

def _edits(graph) -> list[tuple[str, dict]]:
    return [(s.path, s.json) for s in graph.http.seen
            if s.method == "POST" and not s.path.endswith(("/messages", "/message_templates"))]


def test_update_edits_drifted_templates_and_the_check_then_passes(cloud_app, graph):
    en = auth_template("wpotp_verification", "en", ttl=600)  # copy code, TTL 600: two kinds of drift
    tr = auth_template("wpotp_verification", "tr", ttl=300)  # copy code: the button drifted only
    graph.template_pages = [[en, tr]]
    _app(cloud_app, otp_type="ONE_TAP", android_package_name=PACKAGE, android_signature_hash=HASH)

    result = _cli(cloud_app, "--update", "--check")

    assert result.exit_code == 0, result.output
    assert graph.problems == []
    edits = dict(_edits(graph))
    assert set(edits) == {f"/{VERSION}/{en['id']}", f"/{VERSION}/{tr['id']}"}
    assert edits[f"/{VERSION}/{en['id']}"] == {
        "message_send_ttl_seconds": 300,
        "components": [{"type": "BODY", "add_security_recommendation": True},
                       {"type": "FOOTER", "code_expiration_minutes": 5},
                       {"type": "BUTTONS", "buttons": [
                           {"type": "OTP", "otp_type": "ONE_TAP",
                            "supported_apps": [{"package_name": PACKAGE, "signature_hash": HASH}]}]}]}
    assert "updated wpotp_verification/en\n  - otp_type is COPY_CODE at Meta, the app wants ONE_TAP" in result.output
    assert result.output.strip().splitlines()[-2:] == ["ok wpotp_verification/en (APPROVED)",
                                                       "ok wpotp_verification/tr (APPROVED)"]
    updated = _audit(cloud_app, "templates.update")
    assert [d["language"] for d in updated] == ["en", "tr"]
    assert "otp_type is COPY_CODE at Meta, the app wants ONE_TAP" in updated[0]["drift"]


def test_a_check_writes_nothing_to_the_audit_log(cloud_app, graph):
    graph.template_pages = [[auth_template("wpotp_verification", "en", otp_type="COPY_CODE")]]
    _app(cloud_app, otp_type="ONE_TAP", android_package_name=PACKAGE, android_signature_hash=HASH)

    assert _cli(cloud_app, "--check", "--language", "en").exit_code == 1
    with cloud_app.app_context():
        assert db.session.scalars(select(AuditEntry)).all() == []


def test_meta_takes_one_edit_a_day_of_an_approved_template(cloud_app, graph):
    graph.template_pages = [[auth_template("wpotp_verification", "en", ttl=600)]]
    _app(cloud_app)
    assert _cli(cloud_app, "--update", "--language", "en").exit_code == 0
    with cloud_app.app_context():
        db.session.execute(update(App).where(App.name == "default").values(otp_ttl=120))
        db.session.commit()

    result = _cli(cloud_app, "--update", "--language", "en")

    assert result.exit_code != 0
    assert "once in 24 hours" in result.output


def test_update_leaves_a_template_in_step_alone_and_reports_meta_refusal(cloud_app, graph):
    _app(cloud_app)
    graph.template_pages = [[auth_template("wpotp_verification", "en", ttl=300),
                             auth_template("wpotp_verification", "tr", ttl=300, status="PENDING", expiry=None)]]

    result = _cli(cloud_app, "--update")

    assert result.exit_code != 0
    assert "unchanged wpotp_verification/en (APPROVED)" in result.output
    assert "Meta refused the edit of wpotp_verification/tr: 100:" in result.output
    assert "PENDING template cannot be edited" in result.output


def test_plain_sync_keeps_working_beside_the_new_flags(cloud_app, graph):
    graph.template_pages = [[auth_template("wpotp_verification", "en"), auth_template("login_code", "de")]]

    result = _cli(cloud_app)

    assert result.exit_code == 0, result.output
    assert result.output.strip().startswith("fetched=2 created=1 ")
    assert _creations(graph) == [] and _edits(graph) == []


# --- sends through the worker ---------------------------------------------------------------------------

def test_one_tap_otp_goes_out_with_the_code_in_body_and_button(cloud_app, cloud_client, graph, run_worker):
    _app(cloud_app, otp_type="ONE_TAP", android_package_name=PACKAGE, android_signature_hash=HASH)
    graph.template_pages = [[]]
    assert _cli(cloud_app, "--create").exit_code == 0
    key = make_key(cloud_app, mode="live")

    otp_id = send_and_work(cloud_client, key, run_worker, cloud_app, code="310572")

    assert graph.problems == []
    assert graph.sends[-1].json == otp_payload(RECIPIENT, "310572")
    assert show(cloud_client, key, otp_id)["status"] == "SENT"


def test_a_send_that_does_not_match_meta_template_fails(cloud_app, cloud_client, live_key, graph, run_worker):
    # Locally the template lost its button; Meta's still has one: the send lacks the button component.
    with cloud_app.app_context():
        db.session.execute(update(Template).where(Template.language == "en").values(copy_code_button=False))
        db.session.commit()

    otp_id = send_and_work(cloud_client, live_key, run_worker, cloud_app)

    assert show(cloud_client, live_key, otp_id)["status"] == "FAILED"
    assert graph.problems and "132000" in graph.problems[0]


# --- the double refuses what Meta refuses ------------------------------------------------------------------

def _create(graph, body: dict, token: str = TOKEN) -> requests.Response:
    return requests.post(f"{graph.url}/{VERSION}/{WABA_ID}/message_templates", json=body, timeout=5,
                         headers={"Authorization": f"Bearer {token}"})


def _auth(button: dict, ttl: int | None = 300, expiry: int = 5, **extra) -> dict:
    body = {"name": "x_code", "language": "en", "category": "AUTHENTICATION",
            "components": [{"type": "BODY", "add_security_recommendation": True},
                           {"type": "FOOTER", "code_expiration_minutes": expiry},
                           {"type": "BUTTONS", "buttons": [button]}], **extra}
    if ttl is not None:
        body["message_send_ttl_seconds"] = ttl
    return body


APPS = [{"package_name": PACKAGE, "signature_hash": HASH}]


@pytest.mark.parametrize(("body", "why"), [
    (_auth({"type": "OTP", "otp_type": "ONE_TAP"}), "supported_apps"),
    (_auth({"type": "OTP", "otp_type": "ZERO_TAP", "supported_apps": APPS}), "zero_tap_terms_accepted"),
    (_auth({"type": "OTP", "otp_type": "ONE_TAP", "supported_apps": [{"package_name": PACKAGE}]}), "signature_hash"),
    (_auth({"type": "OTP", "otp_type": "ONE_TAP",
            "supported_apps": [{"package_name": "shop", "signature_hash": HASH}]}), "package name"),
    (_auth({"type": "OTP", "otp_type": "ONE_TAP",
            "supported_apps": [{"package_name": PACKAGE, "signature_hash": "K8a/AINcGX"}]}), "11-character"),
    (_auth({"type": "OTP", "otp_type": "COPY_CODE"}, expiry=0), "code_expiration_minutes"),
    (_auth({"type": "OTP", "otp_type": "COPY_CODE"}, expiry=91), "code_expiration_minutes"),
    (_auth({"type": "OTP", "otp_type": "COPY_CODE"}, ttl=29), "message_send_ttl_seconds"),
    (_auth({"type": "OTP", "otp_type": "COPY_CODE"}, ttl=901), "message_send_ttl_seconds"),
    (_auth({"type": "OTP", "otp_type": "COPY_CODE"}, ttl_seconds=300), "unknown fields"),
    (_auth({"type": "OTP", "otp_type": "TWO_TAP"}), "otp_type"),
    (_auth({"type": "URL", "otp_type": "COPY_CODE"}), "type OTP"),
])
def test_the_graph_double_refuses_what_meta_refuses(graph, body, why):
    answer = _create(graph, body)

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == 100
    assert why in answer.json()["error"]["error_data"]["details"]
    assert graph.created == []


def test_the_graph_double_takes_a_valid_zero_tap_template_and_wants_the_token(graph):
    body = _auth({"type": "OTP", "otp_type": "ZERO_TAP", "supported_apps": APPS, "zero_tap_terms_accepted": True},
                 ttl=900, expiry=90)

    assert _create(graph, body, token="nope").status_code == 401
    answer = _create(graph, body)

    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "APPROVED"
    assert _create(graph, body).json()["error"]["error_subcode"] == 2388024  # the same language again


@pytest.mark.parametrize(("components", "why"), [
    ([{"type": "body", "parameters": [{"type": "text", "text": "1234"}]}], "button"),
    ([{"type": "body", "parameters": [{"type": "text", "text": "1234"}]},
      {"type": "button", "sub_type": "quick_reply", "index": "0", "parameters": [{"type": "text", "text": "1234"}]}],
     "sub_type url"),
    ([{"type": "body", "parameters": [{"type": "text", "text": "1234"}, {"type": "text", "text": "x"}]},
      {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "1234"}]}],
     "1 text parameter"),
    ([{"type": "body", "parameters": [{"type": "text", "text": "1" * 16}]},
      {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "1" * 16}]}],
     "15 characters"),
])
def test_the_graph_double_refuses_sends_that_do_not_match_the_template(graph, components, why):
    payload = {"messaging_product": "whatsapp", "to": "905551112233", "type": "template",
               "template": {"name": "wpotp_verification", "language": {"code": "en"}, "components": components}}
    answer = requests.post(f"{graph.url}/{VERSION}/1234567890/messages", json=payload, timeout=5,
                           headers={"Authorization": f"Bearer {TOKEN}"})

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == 132000
    assert why in answer.json()["error"]["error_data"]["details"]
    assert graph.wamids == []


# --- the rules themselves -------------------------------------------------------------------------------------

def test_expiry_rounds_down_and_ttl_stays_within_meta_range():
    assert [code_expiration_minutes(s) for s in (60, 119, 300, 900, 30, 99999)] == [1, 1, 5, 15, 1, 90]
    assert [message_send_ttl_seconds(s) for s in (10, 60, 300, 900, 1200)] == [30, 60, 300, 900, 900]


def test_button_settings_are_checked_for_their_shape():
    assert button_problems("COPY_CODE", "", "", False) == {}
    assert button_problems("ONE_TAP", PACKAGE, HASH, False) == {}
    assert set(button_problems("ONE_TAP", "", "", False)) == {"android_package_name", "android_signature_hash"}
    assert set(button_problems("ONE_TAP", "com", "short", False)) == {"android_package_name",
                                                                     "android_signature_hash"}
    assert set(button_problems("ZERO_TAP", PACKAGE, HASH, False)) == {"zero_tap_terms_accepted"}
    assert set(button_problems("SMS", PACKAGE, HASH, True)) == {"otp_type"}
