"""Logs never carry a URL token: /webhooks/gateway/<token> authenticates the gateway."""

from __future__ import annotations

import logging

from wpotp.logs import loggable_path

TOKEN = "t" * 32


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


def test_request_log_redacts_the_gateway_token(make_app, app):
    gateway = make_app(WPOTP_PROVIDER="gateway", GATEWAY_KIND="waha", GATEWAY_URL="http://127.0.0.1:9",
                       GATEWAY_SESSION="default", GATEWAY_WEBHOOK_TOKEN=TOKEN)
    lines = Lines()
    logger = logging.getLogger("wpotp.request")
    logger.addHandler(lines)
    try:
        r = gateway.test_client().post(f"/webhooks/gateway/{TOKEN}", json={"event": "session.status"})
    finally:
        logger.removeHandler(lines)
    assert r.status_code == 200
    assert lines.lines and all(TOKEN not in line for line in lines.lines)
    assert any("/webhooks/gateway/***" in line for line in lines.lines)


def test_loggable_path_keeps_other_paths():
    assert loggable_path("/v1/otp/otp_abc/verify") == "/v1/otp/otp_abc/verify"
    assert loggable_path(f"/webhooks/gateway/{TOKEN}/messages.update") == "/webhooks/gateway/***/messages.update"
