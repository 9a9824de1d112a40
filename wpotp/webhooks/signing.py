"""The signature recipes (docs/webhooks.md), both keyed with the app's secret:

- X-Wpotp-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>, the seed's, unchanged;
- X-Wpotp-Signature-V2: sha256=<hex HMAC-SHA256(secret, "<X-Wpotp-Timestamp>.<raw body>")>, which
  also vouches for the attempt's timestamp, so a receiver can refuse replays by age.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from flask import current_app

from ..util import random_base62


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sign_timestamped(secret: str, timestamp: int, body: bytes) -> str:
    """The V2 signature: the timestamp (Unix seconds), a dot, then the raw body, as Stripe does."""
    return sign(secret, f"{timestamp}.".encode() + body)


def signed_headers(secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    """The signature headers of one attempt."""
    return {"X-Wpotp-Timestamp": str(timestamp), "X-Wpotp-Signature": sign(secret, body),
            "X-Wpotp-Signature-V2": sign_timestamped(secret, timestamp, body)}


def new_secret() -> str:
    return f"whsec_{random_base62(40)}"


def _fernet():
    # Derived from OTP_HASH_KEY, so the operator keeps one data key (rotating it re-keys all).
    # Imported here: cryptography is about 6 MB of RSS that a process which never seals or
    # unseals a webhook secret (most gunicorn workers) need not carry.
    from cryptography.fernet import Fernet

    raw = hmac.new(current_app.config["OTP_HASH_KEY"].encode(), b"webhook-secret-encryption", hashlib.sha256)
    return Fernet(base64.urlsafe_b64encode(raw.digest()))


def seal_secret(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def unseal_secret(sealed: str) -> str:
    from cryptography.fernet import InvalidToken

    try:
        return _fernet().decrypt(sealed.encode()).decode()
    except InvalidToken:
        raise RuntimeError("the webhook secret cannot be read: was OTP_HASH_KEY changed? Rotate it.") from None
