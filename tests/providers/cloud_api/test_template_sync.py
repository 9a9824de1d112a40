"""`wpotp sync-templates`: the WABA's templates, page by page, into the templates table."""

from __future__ import annotations

import zlib

import pytest
from sqlalchemy import select

from tests.otp.support import send
from wpotp.extensions import db
from wpotp.models import Template

from .graph import TOKEN, WABA_ID, otp_payload, token_expired
from .support import RECIPIENT, send_and_work

pytestmark = pytest.mark.usefixtures("restore_templates")

AUTH_BODY = "*{{1}}* is your verification code. For your security, do not share this code."
COPY_CODE = {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Copy code",
                                             "url": "https://www.whatsapp.com/otp/code/?otp_type=COPY_CODE&code=otp{{1}}"}]}


def meta_template(name: str, language: str, status: str = "APPROVED", category: str = "AUTHENTICATION",
                  body: str = AUTH_BODY, button: bool = True) -> dict:
    components = [{"type": "BODY", "text": body, "add_security_recommendation": True},
                  {"type": "FOOTER", "text": "This code expires in 5 minutes.", "code_expiration_minutes": 5}]
    if button:
        components.append(COPY_CODE)
    return {"name": name, "language": language, "status": status, "category": category, "components": components,
            "id": str(zlib.crc32(f"{name}/{language}".encode()))}


WABA = [
    [meta_template("wpotp_verification", "en"),
     meta_template("wpotp_verification", "tr", status="PAUSED",
                   body="*{{1}}* doğrulama kodunuzdur. Güvenliğiniz için bu kodu paylaşmayın."),
     meta_template("login_code", "en_US")],
    [meta_template("order_ready", "en_US", category="UTILITY", body="Your order {{1}} is ready at {{2}}.",
                   button=False),
     meta_template("login_code", "de", status="PENDING",
                   body="*{{1}}* ist dein Bestätigungscode.")],
    [meta_template("codigo_acceso", "es", body="Tu código de verificación es *{{1}}*."),
     meta_template("acceso_codigo", "es", body="*{{1}}* es tu código de verificación.")],
]


def _sync(app):
    return app.test_cli_runner().invoke(args=["wpotp", "sync-templates"])


def _templates(app) -> dict[tuple[str, str], Template]:
    with app.app_context():
        rows = db.session.scalars(select(Template)).all()
        db.session.expunge_all()
        return {(t.name, t.language): t for t in rows}


def _add_local(app, name: str, language: str) -> None:
    with app.app_context():
        db.session.add(Template(name=name, language=language, body="{{1}} is your code", status="APPROVED",
                                category="AUTHENTICATION", is_default=False))
        db.session.commit()


def test_sync_follows_pages_and_upserts_every_template(cloud_app, graph):
    graph.template_pages = WABA
    _add_local(cloud_app, "old_local_code", "en")
    listed = {(t["name"], t["language"]) for page in WABA for t in page}
    not_listed = set(_templates(cloud_app)) - listed  # old_local_code and any other seeded template

    result = _sync(cloud_app)

    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"fetched=7 created=5 updated=1 missing={len(not_listed)}"
    gets = [s for s in graph.http.seen if s.method == "GET"]
    assert len(gets) == 3 and graph.problems == []
    assert all(s.path.startswith(f"/v23.0/{WABA_ID}/message_templates?") for s in gets)
    assert all(s.headers["Authorization"] == f"Bearer {TOKEN}" for s in gets)
    rows = _templates(cloud_app)
    assert (rows["login_code", "en_US"].status, rows["login_code", "en_US"].category) == ("APPROVED", "AUTHENTICATION")
    assert rows["login_code", "en_US"].body == AUTH_BODY and rows["login_code", "en_US"].copy_code_button is True
    assert rows["order_ready", "en_US"].category == "UTILITY"
    assert rows["order_ready", "en_US"].copy_code_button is False
    assert rows["order_ready", "en_US"].body == "Your order {{1}} is ready at {{2}}."
    assert rows["login_code", "de"].status == "PENDING"
    assert rows["wpotp_verification", "tr"].status == "PAUSED"
    assert ("old_local_code", "en") in not_listed
    assert {rows[key].status for key in not_listed} == {"NOT_IN_WABA"}


def test_each_language_keeps_exactly_one_approved_default(cloud_app, graph):
    graph.template_pages = WABA
    assert _sync(cloud_app).exit_code == 0

    defaults = {key for key, t in _templates(cloud_app).items() if t.is_default}

    # en keeps its approved default; tr's is paused; es and en_US get the first approved by name.
    assert defaults == {("wpotp_verification", "en"), ("login_code", "en_US"), ("acceso_codigo", "es")}


def test_a_default_that_is_no_longer_approved_hands_over(cloud_app, graph):
    graph.template_pages = [[meta_template("wpotp_verification", "en", status="DISABLED"),
                             meta_template("zz_code", "en"), meta_template("aa_code", "en", status="REJECTED")]]

    assert _sync(cloud_app).exit_code == 0

    rows = _templates(cloud_app)
    assert [key for key, t in rows.items() if t.is_default and key[1] == "en"] == [("zz_code", "en")]
    assert rows["wpotp_verification", "tr"].status == "NOT_IN_WABA"
    assert not rows["wpotp_verification", "tr"].is_default


def test_second_sync_changes_nothing(cloud_app, graph):
    graph.template_pages = WABA
    assert _sync(cloud_app).exit_code == 0
    before = {key: (t.id, t.status, t.body, t.is_default) for key, t in _templates(cloud_app).items()}
    not_listed = [key for key, status in before.items() if status[1] == "NOT_IN_WABA"]

    result = _sync(cloud_app)

    # `missing` counts the local templates the WABA lacks, every time: still there, still missing.
    assert result.output.strip() == f"fetched=7 created=0 updated=0 missing={len(not_listed)}"
    assert {key: (t.id, t.status, t.body, t.is_default) for key, t in _templates(cloud_app).items()} == before


def test_synced_templates_are_listed_and_used_by_language(cloud_app, cloud_client, live_key, graph, run_worker):
    graph.template_pages = WABA
    assert _sync(cloud_app).exit_code == 0

    listed = cloud_client.get("/v1/templates", headers=live_key.headers).json["data"]
    by_key = {(t["name"], t["language"]): t for t in listed}
    assert by_key["login_code", "en_US"]["status"] == "APPROVED"
    assert by_key["login_code", "de"]["status"] == "PENDING"
    assert by_key["wpotp_verification", "tr"]["status"] == "PAUSED"

    send_and_work(cloud_client, live_key, run_worker, cloud_app, code="640271", language="en_US")
    assert graph.sends[-1].json == otp_payload(RECIPIENT, "640271", template="login_code", language="en_US")

    for language in ("tr", "de"):  # paused, pending: not usable for an OTP
        r = send(cloud_client, live_key, RECIPIENT, language=language)
        assert (r.status_code, r.json["error"]["code"]) == (404, "TEMPLATE_NOT_FOUND")


def test_meta_refusing_the_sync_is_reported_and_changes_nothing(cloud_app, graph):
    before = {key: (t.status, t.is_default) for key, t in _templates(cloud_app).items()}
    graph.template_pages = WABA
    graph.http.handler = lambda seen: token_expired()

    result = _sync(cloud_app)

    assert result.exit_code != 0
    assert "190: Error validating access token" in result.output
    assert TOKEN not in result.output
    assert {key: (t.status, t.is_default) for key, t in _templates(cloud_app).items()} == before


def test_paging_link_to_another_host_is_not_followed(cloud_app, graph):
    graph.template_pages = WABA
    graph.next_base = "http://169.254.169.254"
    before = {key: t.status for key, t in _templates(cloud_app).items()}

    result = _sync(cloud_app)

    assert result.exit_code != 0
    assert "another host" in result.output
    assert len(graph.http.seen) == 1
    assert {key: t.status for key, t in _templates(cloud_app).items()} == before
