"""What the SMS providers share: the answer of a failed HTTP call as a ProviderError, with the
code never in its reason, and the status-callback URL a send names (SMS_CALLBACK_BASE_URL)."""

from __future__ import annotations

import re

from flask import current_app

from .base import ProviderError
from .http import Response

REASON_MAX = 200


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """`text` with every secret (the code, a key) blanked, on one line, at most REASON_MAX long."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())[:REASON_MAX]


def body_secrets(body: str) -> tuple[str, ...]:
    """What of an SMS text must never reach an error: the whole text and each run of digits in
    it (the code: a provider may echo it alone)."""
    return (body, *re.findall(r"\d{4,}", body))


def http_error(response: Response, vendor: str, reason: str, secrets: tuple[str, ...]) -> ProviderError:
    """4xx is permanent (401/403: a configuration fault), 429 and 5xx are worth trying again."""
    status = response.status_code
    text = redact(f"{vendor} HTTP {status}: {reason}", secrets)
    if status == 429 or status >= 500:
        retry_after = response.headers.get("Retry-After", "")
        return ProviderError(text, permanent=False, code=f"{vendor}_{status}",
                             retry_after=float(retry_after) if retry_after.isdigit() else None)
    return ProviderError(text, permanent=True, code=f"{vendor}_{status}", config_fault=status in (401, 403))


def callback_url(provider: str) -> str | None:
    """Where the provider should post its delivery reports, when the public base URL is set."""
    base = current_app.config.get("SMS_CALLBACK_BASE_URL") or ""
    return f"{base}/webhooks/sms/{provider}" if base else None
