"""Helpers for the outbound-webhook tests: set the endpoint as an operator does, read what
the receiver got and what wpotp recorded, check signatures with the documented recipe."""

from __future__ import annotations

import hashlib
import hmac
import re
import socket
import ssl
import time
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import select, update

from tests.doubles import HttpDouble, Reply, Seen
from wpotp.extensions import db
from wpotp.models import App, Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from wpotp.util import utcnow

ISO_MS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
OTP_DATA = {"id", "recipient", "reference", "status", "templateId", "channel"}
MESSAGE_DATA = {"id", "recipient", "status", "templateId"}


def set_webhook(app, url: str, events: list[str] | None = None, app_name: str = "default") -> str:
    """`wpotp set-webhook`; returns the signing secret (the last line of its output)."""
    result = invoke(app, "set-webhook", "--app", app_name, "--url", url,
                    *(["--events", ",".join(events)] if events else []))
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def invoke(app, *args: str):
    return app.test_cli_runner().invoke(args=["wpotp", *args])


def header(seen: Seen, name: str) -> str | None:
    """A request header, whatever its case on the wire."""
    return next((v for k, v in seen.headers.items() if k.lower() == name.lower()), None)


def signed_with(secret: str, seen: Seen) -> bool:
    """The recipe of docs/webhooks.md: hex HMAC-SHA256 of the raw body, keyed with the secret."""
    expected = "sha256=" + hmac.new(secret.encode(), seen.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(header(seen, "X-Wpotp-Signature") or "", expected)


def timestamp_ok(secret: str, seen: Seen, tolerance: int = 300) -> bool:
    """The receiver of docs/webhooks.md: X-Wpotp-Signature-V2 is `sha256=` and the hex HMAC-SHA256
    of "<X-Wpotp-Timestamp>.<raw body>", and the timestamp is within `tolerance` seconds of now."""
    stamp = header(seen, "X-Wpotp-Timestamp") or ""
    if not stamp.isdigit() or abs(time.time() - int(stamp)) > tolerance:
        return False
    expected = "sha256=" + hmac.new(secret.encode(), stamp.encode() + b"." + seen.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(header(seen, "X-Wpotp-Signature-V2") or "", expected)


def scripted(*replies: Reply, then: Reply | None = None):
    """A receiver handler answering with `replies` in turn, then `then` (200 by default) for ever."""
    queue = list(replies)
    last = then or Reply(200, {"ok": True})
    return lambda seen: queue.pop(0) if queue else last


def closed_port() -> int:
    """A local port nobody listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def send_otp(client, key, recipient: str, **fields) -> dict:
    r = client.post("/v1/otp/send", headers=key.headers, json={"recipient": recipient, **fields})
    assert r.status_code == 201, r.get_data(as_text=True)
    return r.json


def canceled_otp(client, key, recipient: str, **fields) -> str:
    """An OTP sent and canceled at once: exactly one public event (otp.canceled), no worker needed."""
    otp_id = send_otp(client, key, recipient, **fields)["id"]
    r = client.post(f"/v1/otp/{otp_id}/cancel", headers=key.headers)
    assert r.status_code == 200, r.get_data(as_text=True)
    return otp_id


def deliveries(app, **where) -> list[dict]:
    """Delivery rows (oldest first) as plain dicts, filtered by column values."""
    with app.app_context():
        query = select(WebhookDelivery).filter_by(**where).order_by(WebhookDelivery.created_at, WebhookDelivery.id)
        return [{c.name: getattr(d, c.name) for c in WebhookDelivery.__table__.columns}
                for d in db.session.scalars(query)]


def only_delivery(app, **where) -> dict:
    rows = deliveries(app, **where)
    assert len(rows) == 1, rows
    return rows[0]


def attempts(app, delivery_id: str) -> list[dict]:
    with app.app_context():
        rows = db.session.scalars(select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery_id)
                                  .order_by(WebhookAttempt.number)).all()
        return [{c.name: getattr(a, c.name) for c in WebhookAttempt.__table__.columns} for a in rows]


def event_id(app, otp_id: str, event_type: str) -> str:
    with app.app_context():
        return db.session.scalars(select(Event.id).where(Event.otp_id == otp_id, Event.type == event_type)).one()


def make_due(app, delivery_id: str, seconds_ago: int = 60) -> None:
    """Pretend time passed: the delivery's next attempt (or a dead worker's lease) is in the past."""
    with app.app_context():
        db.session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
                           .values(next_attempt_at=utcnow() - timedelta(seconds=seconds_ago)))
        db.session.commit()


def point_endpoint(app, url: str, app_name: str = "default") -> None:
    """Change the stored endpoint URL directly (keeps the secret), as a later `set-webhook` would."""
    with app.app_context():
        app_id = db.session.scalars(select(App.id).where(App.name == app_name)).one()
        db.session.execute(update(WebhookEndpoint).where(WebhookEndpoint.app_id == app_id).values(url=url))
        db.session.commit()



class TlsDouble(HttpDouble):
    """An HttpDouble speaking HTTPS with `certfile`/`keyfile`; `server_names` is every SNI it was sent."""

    def __init__(self, certfile: str, keyfile: str, handler=None):
        super().__init__(handler)
        self.server_names: list[str | None] = []
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certfile, keyfile)
        context.sni_callback = lambda sock, name, ctx: self.server_names.append(name)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.url = self.url.replace("http://", "https://", 1)


def make_certificates(directory, name: str) -> tuple[str, str, str]:
    """A throw-away CA and a server certificate for DNS name `name` signed by it: (ca, cert, key) paths."""
    def key():
        return ec.generate_private_key(ec.SECP256R1())

    def subject(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    now = datetime.now(UTC)
    ca_key, server_key = key(), key()
    ca = (x509.CertificateBuilder().subject_name(subject("wpotp test CA")).issuer_name(subject("wpotp test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    server = (x509.CertificateBuilder().subject_name(subject(name)).issuer_name(ca.subject)
              .public_key(server_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
              .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
              .sign(ca_key, hashes.SHA256()))
    paths = [str(directory / f) for f in ("ca.pem", "server.pem", "server.key")]
    for path, data in zip(paths, (ca.public_bytes(serialization.Encoding.PEM),
                                  server.public_bytes(serialization.Encoding.PEM),
                                  server_key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption())), strict=True):
        with open(path, "wb") as out:
            out.write(data)
    return paths[0], paths[1], paths[2]
