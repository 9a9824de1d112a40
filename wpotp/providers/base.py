"""The provider interface: one class per way of reaching WhatsApp, one typed error.

A provider turns an outbound message into a provider message id or a ProviderError that
says whether trying again could help. It never touches the database: the service records
the attempt and decides what happens next.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module

from flask import current_app


@dataclass(frozen=True)
class OutboundOtp:
    otp_id: str
    app_id: str
    recipient: str  # E.164
    code: str
    template_name: str
    language: str
    body: str  # the template body with the code filled in
    copy_code_button: bool


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str


class ProviderError(Exception):
    """A send that did not go out. `permanent` means retrying cannot help."""

    def __init__(self, reason: str, *, permanent: bool, code: str = "provider_error"):
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {self.reason}"


class Provider:
    name = "base"

    def send_otp(self, message: OutboundOtp) -> SendResult:  # pragma: no cover - interface
        raise NotImplementedError

    def after_sent(self, message: OutboundOtp, result: SendResult) -> None:
        """Called once the send is committed as SENT. Real providers wait for receipts."""


# Dotted paths, so a provider module is imported only when it is used.
REGISTRY = {
    "sandbox": "wpotp.providers.sandbox.SandboxProvider",
}


def available_providers() -> tuple[str, ...]:
    return tuple(REGISTRY)


def get_provider(name: str) -> Provider:
    cache = current_app.extensions.setdefault("wpotp_providers", {})
    if name not in cache:
        if name not in REGISTRY:
            raise ProviderError(f"provider {name!r} is not available", permanent=True, code="no_provider")
        module_name, _, class_name = REGISTRY[name].rpartition(".")
        cache[name] = getattr(import_module(module_name), class_name)()
    return cache[name]
