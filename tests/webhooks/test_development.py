"""Issue 14 defect 15: in WPOTP_ENV=development a webhook may reach this machine (a receiver under
test on localhost) without WEBHOOK_ALLOW_PRIVATE; other private ranges stay refused, and
production never allows loopback unless WEBHOOK_ALLOW_PRIVATE=true."""

from __future__ import annotations

import pytest

from config import Config

from .support import attempts, canceled_otp, invoke, only_delivery, set_webhook, signed_with

REFUSED_IN_DEVELOPMENT = ["http://10.0.0.1/x", "http://192.168.1.20:8080/x", "http://169.254.169.254/latest",
                          "http://[fd00::1]/x", "http://100.100.100.200/x", "http://0.0.0.0/x"]  # noqa: S104
LOOPBACK = ["http://127.0.0.1:9/x", "http://localhost:9/x", "http://[::1]:9/x", "http://127.1:9/x"]


@pytest.fixture
def env(monkeypatch, tmp_path):
    """The operator's environment, cleared of the settings these tests choose."""
    for name in ("WPOTP_ENV", "WEBHOOK_ALLOW_PRIVATE", "SECRET_KEY", "OTP_HASH_KEY", "SESSION_COOKIE_SECURE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WPOTP_INSTANCE_DIR", str(tmp_path))
    return monkeypatch


def _production(env, app) -> None:
    """WPOTP_ENV=production, with the secrets the test app uses (they decrypt its webhook secret)."""
    env.setenv("WPOTP_ENV", "production")
    env.setenv("SECRET_KEY", app.config["SECRET_KEY"])
    env.setenv("OTP_HASH_KEY", app.config["OTP_HASH_KEY"])


def test_the_setting_follows_the_environment(env, app):
    development = Config.from_env()
    assert (development.WEBHOOK_ALLOW_LOOPBACK, development.WEBHOOK_ALLOW_PRIVATE) == (True, False)
    _production(env, app)
    production = Config.from_env()
    assert (production.WEBHOOK_ALLOW_LOOPBACK, production.WEBHOOK_ALLOW_PRIVATE) == (False, False)


def test_development_delivers_to_localhost_without_allow_private(env, make_app, app, api_key, receiver,
                                                                 run_worker):
    development = make_app(WEBHOOK_ALLOW_PRIVATE=False)
    for url in LOOPBACK:
        result = invoke(development, "set-webhook", "--app", "default", "--url", url)
        assert result.exit_code == 0, result.output
    secret = set_webhook(development, receiver.url + "/hook", events=["otp.canceled"])
    canceled_otp(development.test_client(), api_key, "+905551116001")
    run_worker(development)

    assert len(receiver.seen) == 1 and signed_with(secret, receiver.seen[0])
    assert only_delivery(development)["status"] == "succeeded"


@pytest.mark.parametrize("url", REFUSED_IN_DEVELOPMENT)
def test_development_still_refuses_other_private_ranges(env, make_app, app, api_key, url):
    development = make_app(WEBHOOK_ALLOW_PRIVATE=False)
    result = invoke(development, "set-webhook", "--app", "default", "--url", url)
    assert result.exit_code != 0
    assert "loopback, private or link-local" in result.output and "WEBHOOK_ALLOW_PRIVATE" in result.output


@pytest.mark.parametrize("url", LOOPBACK)
def test_production_refuses_loopback_when_set(env, make_app, app, api_key, url):
    _production(env, app)
    production = make_app(WEBHOOK_ALLOW_PRIVATE=False)
    result = invoke(production, "set-webhook", "--app", "default", "--url", url)
    assert result.exit_code != 0
    assert "loopback, private or link-local" in result.output


def test_production_refuses_loopback_before_each_post(env, make_app, app, api_key, receiver, run_worker):
    set_webhook(app, receiver.url + "/hook", events=["otp.canceled"])  # set while private addresses were allowed
    _production(env, app)
    production = make_app(WEBHOOK_ALLOW_PRIVATE=False)
    canceled_otp(production.test_client(), api_key, "+905551116002")
    run_worker(production)

    assert receiver.seen == []
    (attempt,) = attempts(production, only_delivery(production)["id"])
    assert attempt["error"].startswith("refused: 127.0.0.1 resolves to 127.0.0.1")


def test_production_with_allow_private_reaches_localhost(env, make_app, app, api_key, receiver, run_worker):
    _production(env, app)
    production = make_app(WEBHOOK_ALLOW_PRIVATE=True)
    secret = set_webhook(production, receiver.url + "/hook", events=["otp.canceled"])
    canceled_otp(production.test_client(), api_key, "+905551116003")
    run_worker(production)
    assert len(receiver.seen) == 1 and signed_with(secret, receiver.seen[0])
