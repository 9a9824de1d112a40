"""Fixtures for the gateway tests: a WAHA or Evolution double, an app whose live keys reach it."""

from __future__ import annotations

import pytest

from tests.helpers import Key, make_key

from .gateways import API_KEY, SESSION, TOKEN, FakeGateway, gateway_for


@pytest.fixture(params=["waha", "evolution"])
def gateway(request) -> FakeGateway:
    """Each test that takes it runs once against WAHA and once against Evolution API."""
    with gateway_for(request.param) as double:
        yield double


@pytest.fixture
def gateway_app(app, make_app):
    """make the app under test: WPOTP_PROVIDER=gateway pointed at a double (`app` cleans the DB)."""

    def build(double: FakeGateway, **overrides):
        settings = dict(WPOTP_PROVIDER="gateway", GATEWAY_KIND=double.kind, GATEWAY_URL=double.url,
                        GATEWAY_API_KEY=API_KEY, GATEWAY_SESSION=SESSION, GATEWAY_WEBHOOK_TOKEN=TOKEN,
                        GATEWAY_WEBHOOK_HMAC_KEY="", SEND_RETRY_DELAYS=[0, 0])
        return make_app(**{**settings, **overrides})

    return build


@pytest.fixture
def live_key():
    def issue(app) -> Key:
        return make_key(app, mode="live")

    return issue
