"""SPEC §6 SSRF: URLs resolving to loopback, private or link-local addresses are refused unless
WEBHOOK_ALLOW_PRIVATE; checked when set and again before every POST. Redirects are not followed."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.doubles import Reply
from wpotp.extensions import db
from wpotp.models import WebhookEndpoint

from .support import attempts, canceled_otp, invoke, only_delivery, set_webhook, signed_with

INTERNAL = [
    ("http://127.0.0.1:9/x", "127.0.0.1"),
    ("http://localhost/x", "localhost resolves to"),
    ("http://10.0.0.1/x", "10.0.0.1"),
    ("http://192.168.1.20:8080/x", "192.168.1.20"),
    ("http://172.16.5.4/x", "172.16.5.4"),
    ("http://169.254.169.254/latest", "169.254.169.254"),
    ("http://[::1]/x", "::1"),
    ("http://[fd00::1]/x", "fd00::1"),
    ("http://[::ffff:127.0.0.1]/x", "127.0.0.1"),
    ("http://0.0.0.0/x", "resolves to 0.0.0.0"),  # noqa: S104 - a URL under test, not a bind
    ("http://127.1/x", "127.0.0.1"),
    ("http://2130706433/x", "127.0.0.1"),  # 127.0.0.1 written as one number
]


@pytest.fixture
def strict(make_app, app):
    """The guard as production runs it (loopback refused too; development allows it: test_development.py)."""
    return make_app(WEBHOOK_ALLOW_PRIVATE=False, WEBHOOK_ALLOW_LOOPBACK=False)


def _endpoints(app) -> list[tuple[str, str]]:
    with app.app_context():
        return [(e.url, e.secret_sealed) for e in db.session.scalars(select(WebhookEndpoint))]


@pytest.mark.parametrize(("url", "named"), INTERNAL)
def test_internal_addresses_are_refused_when_set(strict, api_key, url, named):
    result = invoke(strict, "set-webhook", "--app", "default", "--url", url)
    assert result.exit_code != 0
    assert named in result.output
    assert "loopback, private or link-local" in result.output
    assert "WEBHOOK_ALLOW_PRIVATE" in result.output
    assert _endpoints(strict) == []


def test_shared_address_space_is_refused_when_set(strict, api_key):
    result = invoke(strict, "set-webhook", "--app", "default", "--url", "http://100.100.100.200/latest/meta-data")
    assert result.exit_code != 0
    assert _endpoints(strict) == []


@pytest.mark.parametrize(("url", "reason"), [
    ("ftp://example.com/x", "http:// or https://"),
    ("example.com/hook", "http:// or https://"),
    ("https://user:pw@example.com/x", "credentials"),
    ("https://example.com:99999/x", "port"),
])
def test_malformed_urls_are_refused_even_when_private_addresses_are_allowed(app, api_key, url, reason):
    assert app.config["WEBHOOK_ALLOW_PRIVATE"] is True
    result = invoke(app, "set-webhook", "--app", "default", "--url", url)
    assert result.exit_code != 0 and reason in result.output
    assert _endpoints(app) == []


def test_a_public_address_is_accepted(strict, api_key):
    result = invoke(strict, "set-webhook", "--app", "default", "--url", "https://1.1.1.1/hooks/wpotp")
    assert result.exit_code == 0, result.output
    assert [url for url, _sealed in _endpoints(strict)] == ["https://1.1.1.1/hooks/wpotp"]


def test_a_refused_url_leaves_the_current_endpoint_and_secret_alone(strict, app, api_key, receiver, run_worker):
    secret = set_webhook(app, receiver.url + "/hook")  # allowed in the tests' config
    before = _endpoints(app)
    assert invoke(strict, "set-webhook", "--app", "default", "--url", "http://10.0.0.1/x").exit_code != 0
    assert _endpoints(app) == before
    canceled_otp(app.test_client(), api_key, "+905551119001")
    run_worker()
    assert len(receiver.seen) == 1 and signed_with(secret, receiver.seen[0])


def test_delivery_to_an_internal_address_is_refused_when_the_app_runs_strict(strict, app, api_key, receiver,
                                                                            run_worker):
    set_webhook(app, receiver.url + "/hook")  # set while private addresses were allowed
    canceled_otp(app.test_client(), api_key, "+905551119002")
    run_worker(strict)

    assert receiver.seen == []
    delivery = only_delivery(app)
    (attempt,) = attempts(app, delivery["id"])
    assert attempt["error"].startswith("refused: 127.0.0.1 resolves to 127.0.0.1")
    assert attempt["status_code"] is None
    assert delivery["status"] != "succeeded"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_not_followed_and_are_not_success(make_app, app, api_key, receiver, second_receiver,
                                                        run_worker, status):
    once = make_app(WEBHOOK_RETRY_DELAYS=[0])
    receiver.handler = lambda seen: Reply(status, b"", headers={"Location": second_receiver.url + "/landing"})
    set_webhook(once, receiver.url + "/hook", events=["otp.canceled"])
    canceled_otp(once.test_client(), api_key, "+905551119003")
    run_worker(once)

    assert len(receiver.seen) == 2  # tried, and retried: a redirect is a failure
    assert second_receiver.seen == []
    delivery = only_delivery(once)
    assert (delivery["status"], delivery["last_status_code"]) == ("given_up", status)
    for attempt in attempts(once, delivery["id"]):
        assert attempt["status_code"] == status
        assert attempt["error"] == f"redirects are not followed ({second_receiver.url}/landing)"
