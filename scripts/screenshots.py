"""Screenshots of every console page, at desktop (1280x800) and phone (390x844) widths, in English
(<out>/) and Turkish (<out>/tr/).

    .venv/bin/python scripts/screenshots.py [--redis redis://127.0.0.1:6379/8] [--out docs/screenshots]

Builds a throw-away instance (SQLite in a temp dir, the given Redis db, which it FLUSHES),
seeds it through the real API and a real RQ worker (OTPs sent, delivered, verified, failed,
webhook deliveries that succeed and fail), signs in a throw-away admin with Debian's
Chromium, and saves <page>.png and <page>-phone.png. The English admin's browser asks for en-US; the
Turkish one's for tr-TR, and their account is set to Europe/Istanbul time. Pages not built yet are skipped.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ADMIN_EMAIL, ADMIN_PASSWORD = "ops@example.com", "screenshots-only-password"
TURKISH_EMAIL = "yonetici@example.com"
LANGUAGES = (("en-US", ADMIN_EMAIL, ""), ("tr-TR", TURKISH_EMAIL, "tr"))
RECIPIENTS = ["+90555111{:04d}", "+4915123{:06d}", "+1650253{:04d}", "+447911123{:03d}", "+551198765{:04d}"]


class FlakyReceiver(BaseHTTPRequestHandler):
    """A customer's webhook endpoint that refuses every fourth POST (so retries show)."""

    count = 0

    def do_POST(self):  # noqa: N802  (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        FlakyReceiver.count += 1
        failing = FlakyReceiver.count % 4 == 0
        body = b'{"error":"busy"}' if failing else b'{"ok":true}'
        self.send_response(503 if failing else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def build_app(redis_url: str, instance: Path):
    os.environ["TEST_REDIS_URL"] = redis_url
    import redis

    from config import TestConfig
    from wpotp import create_app, upgrade_database
    from wpotp.extensions import db
    from wpotp.otp.templates import seed_default_templates

    redis.Redis.from_url(redis_url).flushdb()
    # TestConfig: a throw-away instance; the API limit and the fraud guard's thresholds set back to the
    # product defaults for the pictures.
    app = create_app(TestConfig(f"sqlite:///{instance / 'wpotp.db'}", instance, LOG_LEVEL="WARNING",
                                API_RATE_LIMIT="120/minute", FRAUD_COUNTRY_LIMIT="1000/hour",
                                FRAUD_PREFIX_LIMIT="60/hour", FRAUD_UNVERIFIED_PREFIX=20,
                                FRAUD_UNVERIFIED_COUNTRY=200))
    with app.app_context():
        upgrade_database(app)
        seed_default_templates()
        db.session.commit()
    return app


def run_worker(app) -> None:
    from rq import SimpleWorker

    from wpotp.extensions import QUEUE_NAMES, get_queue, redis_client

    with app.app_context():
        queues = [get_queue(name) for name in QUEUE_NAMES]
        SimpleWorker(queues, connection=redis_client.conn).work(burst=True, logging_level="WARNING")


def seed(app, receiver_url: str) -> dict:
    """Users, keys, a webhook endpoint and a day of OTP traffic, all through the real code."""
    from wpotp.cli import issue_key
    from wpotp.extensions import db
    from wpotp.models import App, AuditEntry, User
    from wpotp.providers.sandbox import read_outbox
    from wpotp.util import utcnow
    from wpotp.webhooks.endpoints import configure_endpoint

    with app.app_context():
        default, shop = App(name="default"), App(name="shop", otp_length=4, allowed_countries="TR,DE")
        db.session.add_all([default, shop])
        for email, role in ((ADMIN_EMAIL, "admin"), ("support@example.com", "viewer"), ("cto@example.com", "admin"),
                            (TURKISH_EMAIL, "admin")):
            user = User(email=email, role=role)
            if email == TURKISH_EMAIL:
                user.timezone = "Europe/Istanbul"
            user.set_password(ADMIN_PASSWORD)
            db.session.add(user)
        db.session.commit()
        _, test_secret = issue_key(default, "test", "checkout (staging)")
        _, live_secret = issue_key(default, "live", "mobile app")
        old, _ = issue_key(default, "live", "old backend")
        old.revoked_at = utcnow()
        configure_endpoint(default, receiver_url, [], allow_private=True)
        db.session.add(AuditEntry(actor="cli", action="webhook.set", target=default.id, details={"url": receiver_url}))
        db.session.add(AuditEntry(actor=ADMIN_EMAIL, action="settings.update", target=default.id, ip="192.0.2.10",
                                  details={"app": "default", "changes": {"otp_length": [6, 4],
                                                                         "allowed_countries": ["", "TR,DE"]}}))
        db.session.commit()

    client = app.test_client()
    sent = []
    for i in range(24):
        key = test_secret if i % 3 else live_secret
        recipient = RECIPIENTS[i % len(RECIPIENTS)].format(i)
        body = {"recipient": recipient, "reference": f"order-{1000 + i}"}
        answer = client.post("/v1/otp/send", json=body, headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 201, (recipient, answer.get_json())
        sent.append((answer.get_json()["id"], recipient, key))
    client.post("/v1/otp/send", json={"recipient": "+15005550001"}, headers={"Authorization": f"Bearer {test_secret}"})
    run_worker(app)

    with app.app_context():
        codes = {row["otpId"]: row["code"] for row in read_outbox(limit=500) if row.get("otpId")}
    for n, (otp_id, _recipient, key) in enumerate(sent):
        headers = {"Authorization": f"Bearer {key}"}
        if n % 4 == 0:
            client.post(f"/v1/otp/{otp_id}/verify", json={"code": "000000"}, headers=headers)
        if n % 5 != 4 and otp_id in codes:
            client.post(f"/v1/otp/{otp_id}/verify", json={"code": codes[otp_id]}, headers=headers)
        if n == 7:
            client.post(f"/v1/otp/{otp_id}/cancel", headers=headers)
    run_worker(app)
    pump(app, client, test_secret)
    return {"otp_id": sent[0][0]}


def pump(app, client, secret: str) -> None:
    """SMS pumping for the Fraud guard page: a burst to one Nigerian range, never verified, and a
    denied country, so the page shows a block and its refusals."""
    from wpotp.cache import bump_epoch
    from wpotp.extensions import db
    from wpotp.models import App

    with app.app_context():
        default = db.session.query(App).filter_by(name="default").one()
        default.fraud_unverified_prefix, default.fraud_deny_sms, default.fraud_deny_whatsapp = 6, "NG,LT", "LT"
        db.session.commit()
        bump_epoch()  # the API serves the new settings from its next request
    headers = {"Authorization": f"Bearer {secret}"}
    for i in range(9):
        client.post("/v1/otp/send", json={"recipient": f"+234803123{4500 + i:04d}"}, headers=headers)
    client.post("/v1/otp/send", json={"recipient": "+37061234567"}, headers=headers)


def serve(app) -> tuple[str, object]:
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", server


def pages(app, seeded: dict) -> list[tuple[str, str]]:
    from datetime import timedelta

    from sqlalchemy import select

    from wpotp.extensions import db
    from wpotp.models import WebhookDelivery
    from wpotp.util import utcnow

    today = utcnow().date()
    week_ago = today - timedelta(days=6)
    with app.app_context():
        delivery = db.session.scalars(select(WebhookDelivery).where(WebhookDelivery.attempts > 0)
                                      .order_by(WebhookDelivery.last_status_code.desc())).first()
    wanted = [
        ("overview", "console.overview", "/console/"),
        ("keys", "console.keys", "/console/keys"),
        ("otps", "console.otps", "/console/otps"),
        ("otp-detail", "console.otp_detail", f"/console/otps/{seeded['otp_id']}"),
        ("attempts", "console.attempts", "/console/attempts"),
        ("rate-limits", "console.rate_limits", "/console/rate-limits"),
        ("reports", "console.reports", "/console/reports"),
        ("reports-hourly", "console.reports", f"/console/reports?interval=hour&from={week_ago}&to={today}"),
        ("templates", "console.templates", "/console/templates"),
        ("webhooks", "console.webhooks", "/console/webhooks"),
        ("webhook-delivery", "console.webhook_delivery",
         f"/console/webhooks/deliveries/{delivery.id}" if delivery else ""),
        ("settings", "console.settings", "/console/settings"),
        ("fraud", "console.fraud_guard", "/console/fraud"),
        ("sandbox", "console.sandbox", "/console/sandbox"),
        ("users", "console.users", "/console/users"),
        ("audit", "console.audit", "/console/audit"),
        ("account", "console.account", "/console/account"),
    ]
    return [(name, path) for name, endpoint, path in wanted if path and endpoint in app.view_functions]


def shoot(base: str, targets: list[tuple[str, str]], out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    saved = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for locale, email, folder in LANGUAGES:
            where = out / folder if folder else out
            where.mkdir(parents=True, exist_ok=True)
            for suffix, viewport in (("", {"width": 1280, "height": 800}), ("-phone", {"width": 390, "height": 844})):
                saved += shoot_one(browser, base, targets, where, suffix, viewport, locale, email)
        browser.close()
    return saved


def shoot_one(browser, base, targets, where: Path, suffix: str, viewport: dict, locale: str, email: str) -> list:
    saved = []
    context = browser.new_context(viewport=viewport, device_scale_factor=1, locale=locale)
    page = context.new_page()
    page.goto(base + "/console/login")
    page.screenshot(path=where / f"login{suffix}.png", full_page=True)
    saved.append(where / f"login{suffix}.png")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("form:has(input[name=password]) button[type=submit]")
    page.wait_for_selector(".who-email", state="attached")
    for name, path in targets:
        page.goto(base + path)
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(400)  # let chart animations settle before the picture
        target = where / f"{name}{suffix}.png"
        page.screenshot(path=target, full_page=True)
        saved.append(target)
    context.close()
    return saved


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default=os.environ.get("SCREENSHOT_REDIS_URL", "redis://127.0.0.1:6379/8"),
                        help="a Redis database this script may flush (default db 8)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = parser.parse_args()
    if not os.path.exists(CHROMIUM):
        sys.exit(f"{CHROMIUM} is missing: install Debian's chromium package")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), FlakyReceiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory(prefix="wpotp-shots-") as tmp:
        app = build_app(args.redis, Path(tmp))
        seeded = seed(app, f"http://127.0.0.1:{receiver.server_address[1]}/wpotp-events")
        base, server = serve(app)
        try:
            saved = shoot(base, pages(app, seeded), out)
        finally:
            server.shutdown()
            receiver.shutdown()
    for path in saved:
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


if __name__ == "__main__":
    main()
