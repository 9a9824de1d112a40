"""The README's local webhook walk-through works as written: its receiver.py, run as a real
process on 127.0.0.1, gets signed events after `set-webhook` with no other setting in
development, and refuses a forged POST; a LAN address needs WEBHOOK_ALLOW_PRIVATE."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from sqlalchemy import select

from tests.otp.support import send
from wpotp.extensions import db
from wpotp.models import WebhookDelivery

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_receiver() -> str:
    section = README.read_text().split("### 9. Receive webhooks", 1)[1].split("\n### ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    return code


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc) -> None:
    """Until the receiver accepts connections (a guard against a hang, not a timing check)."""
    for _ in range(600):
        assert proc.poll() is None, proc.stderr.read()
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError("the README's receiver never listened")


def test_the_readme_receiver_gets_signed_events_on_loopback(app, client, api_key, run_worker, tmp_path):
    assert app.config["WEBHOOK_ALLOW_LOOPBACK"]  # development, as make run
    port = free_port()
    result = app.test_cli_runner().invoke(args=["wpotp", "set-webhook", "--app", "default", "--url",
                                                f"http://127.0.0.1:{port}/hooks/wpotp"])
    assert result.exit_code == 0, result.output
    secret = result.output.strip().splitlines()[-1]
    (tmp_path / "receiver.py").write_text(readme_receiver())
    env = {**os.environ, "WPOTP_WEBHOOK_SECRET": secret, "RECEIVER_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "receiver.py"], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_listening(port, proc)
        forged = requests.post(f"http://127.0.0.1:{port}/hooks/wpotp", data=b'{"event":"otp.verified"}',
                               headers={"X-Wpotp-Timestamp": str(int(time.time())),
                                        "X-Wpotp-Signature-V2": "sha256=" + "0" * 64}, timeout=10)
        otp_id = send(client, api_key, "+905551112233").json["id"]
        run_worker()
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)

    assert forged.status_code == 401
    assert f"otp.sent {otp_id} SENT" in out.splitlines()
    with app.app_context():
        sent = db.session.scalars(select(WebhookDelivery).where(WebhookDelivery.event_type == "otp.sent")).one()
        assert sent.status == "succeeded"


def test_a_lan_receiver_needs_webhook_allow_private(app, make_app):
    assert app.test_cli_runner().invoke(args=["wpotp", "create-app", "--name", "default"]).exit_code == 0
    strict, allowing = make_app(WEBHOOK_ALLOW_PRIVATE=False), make_app(WEBHOOK_ALLOW_PRIVATE=True)
    args = ["wpotp", "set-webhook", "--app", "default", "--url", "http://192.168.1.20:5000/hooks/wpotp"]

    refused = strict.test_cli_runner().invoke(args=args)
    assert refused.exit_code == 1
    assert "192.168.1.20, a loopback, private or link-local address (set WEBHOOK_ALLOW_PRIVATE=true" in refused.output
    assert allowing.test_cli_runner().invoke(args=args).exit_code == 0
