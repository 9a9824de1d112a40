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
class OutboundTemplate:
    """A non-OTP template message (POST /v1/messages). `parameters` fill {{1}}, {{2}}, ... in order."""

    message_id: str
    app_id: str
    recipient: str  # E.164
    template_name: str
    language: str
    body: str  # the template body with the parameters filled in (for text-only gateways)
    parameters: tuple[str, ...]


@dataclass(frozen=True)
class OutboundSms:
    """An OTP as a text message (channel `sms`): `body` is the whole text, code included."""

    otp_id: str
    app_id: str
    recipient: str  # E.164
    body: str


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str


class ProviderError(Exception):
    """A send that did not go out. `permanent` means retrying cannot help."""

    def __init__(self, reason: str, *, permanent: bool, code: str = "provider_error",
                 retry_after: float | None = None, config_fault: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.code = code
        # The provider's own hint of how long to wait (throughput and pair-rate limits).
        self.retry_after = retry_after
        # A token or permission problem: the operator must fix settings; shown as such.
        self.config_fault = config_fault

    def __str__(self) -> str:
        return f"{self.code}: {self.reason}"


NOT_ON_WHATSAPP = "not_on_whatsapp"  # the code of a gateway's (or the sandbox's) "number not on WhatsApp"


def means_not_on_whatsapp(error: ProviderError | str | None) -> bool:
    """Whether a WhatsApp failure says the recipient cannot get WhatsApp: a send's ProviderError
    (its code), or a `failed` receipt's error text (`131026: Message undeliverable`)."""
    from .cloud_api import NOT_ON_WHATSAPP as META_CODES

    if error is None:
        return False
    code = error.code if isinstance(error, ProviderError) else str(error).split(":", 1)[0].strip()
    return code == NOT_ON_WHATSAPP or (code.isdigit() and int(code) in META_CODES)


class Provider:
    name = "base"
    # Whether sends count against WHATSAPP_MPS, the cross-worker throughput cap.
    throttled = False

    def send_otp(self, message: OutboundOtp) -> SendResult:  # pragma: no cover - interface
        raise NotImplementedError

    def send_template(self, message: OutboundTemplate) -> SendResult:  # pragma: no cover - interface
        raise NotImplementedError

    def send_sms(self, message: OutboundSms) -> SendResult:  # pragma: no cover - interface
        raise NotImplementedError

    def after_sent(self, message: OutboundOtp | OutboundTemplate | OutboundSms, result: SendResult) -> None:
        """Called once the send is committed as SENT. Real providers wait for receipts."""


# Dotted paths, so a provider module is imported only when it is used.
REGISTRY = {
    "sandbox": "wpotp.providers.sandbox.SandboxProvider",
    "cloud_api": "wpotp.providers.cloud_api.CloudApiProvider",
    "gateway": "wpotp.providers.gateway.GatewayProvider",
}


# SMS providers, by their SMS_PROVIDER name. An OTP row names the instance's `name`
# (`sms_<setting name>`), so an SMS receipt never matches a WhatsApp provider's.
SMS_REGISTRY = {
    "sandbox": "wpotp.providers.sms_sandbox.SandboxSmsProvider",
    "twilio": "wpotp.providers.twilio.TwilioProvider",
    "vonage": "wpotp.providers.vonage.VonageProvider",
    "http": "wpotp.providers.sms_http.HttpSmsProvider",
}
SMS_PREFIX = "sms_"


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


def is_sms_provider(name: str) -> bool:
    return name.startswith(SMS_PREFIX) and name[len(SMS_PREFIX):] in SMS_REGISTRY


def get_sms_provider(name: str) -> Provider:
    """The SMS provider by its SMS_PROVIDER name (`twilio`) or its OTP-row name (`sms_twilio`)."""
    key = name[len(SMS_PREFIX):] if is_sms_provider(name) else name
    cache = current_app.extensions.setdefault("wpotp_sms_providers", {})
    if key not in cache:
        if key not in SMS_REGISTRY:
            raise ProviderError(f"SMS provider {name!r} is not available", permanent=True, code="no_provider")
        module_name, _, class_name = SMS_REGISTRY[key].rpartition(".")
        cache[key] = getattr(import_module(module_name), class_name)()
    return cache[key]
