"""Codes and keys: generation, keyed hashing, constant-time comparison, sealing for transport.

A code is stored only as HMAC-SHA256(OTP_HASH_KEY, otp id + code). The worker that sends
the message needs the plaintext once; it travels *sealed* (XOR with an HMAC-derived pad that
is unique to the OTP and its send generation) in a short-lived Redis key, so neither the
database, RQ job arguments nor log lines ever carry it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from flask import current_app


def _key() -> bytes:
    return current_app.config["OTP_HASH_KEY"].encode()


def generate_code(length: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(length))


def hash_code(otp_id: str, code: str) -> str:
    return hmac.new(_key(), f"code:{otp_id}:{code}".encode(), hashlib.sha256).hexdigest()


def code_matches(otp_id: str, code: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_code(otp_id, code), stored_hash)


def hash_api_key(secret: str) -> str:
    return hmac.new(_key(), f"api-key:{secret}".encode(), hashlib.sha256).hexdigest()


def _pad(otp_id: str, generation: int, length: int) -> bytes:
    pad = hmac.new(_key(), f"seal:{otp_id}:{generation}".encode(), hashlib.sha256).digest()
    if length > len(pad):
        raise ValueError("code too long to seal")
    return pad[:length]


def seal_code(otp_id: str, generation: int, code: str) -> str:
    raw = code.encode()
    return bytes(a ^ b for a, b in zip(raw, _pad(otp_id, generation, len(raw)), strict=True)).hex()


def unseal_code(otp_id: str, generation: int, sealed: str) -> str:
    raw = bytes.fromhex(sealed)
    return bytes(a ^ b for a, b in zip(raw, _pad(otp_id, generation, len(raw)), strict=True)).decode()


def hash_recipient(number: str) -> str:
    """The keyed hash retention keeps in place of an anonymised number (HMAC under OTP_HASH_KEY, as API
    keys are): the same number always gives the same hash, yet without the key no list of numbers can
    be hashed to find it."""
    return hmac.new(_key(), f"recipient:{number}".encode(), hashlib.sha256).hexdigest()
