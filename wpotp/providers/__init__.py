"""What talks to WhatsApp (and, for channel sms, to SMS providers). See base.py for the
interface; `get_provider` and `get_sms_provider` are the registries."""

from .base import (
    OutboundOtp,
    OutboundSms,
    OutboundTemplate,
    Provider,
    ProviderError,
    SendResult,
    get_provider,
    get_sms_provider,
)

__all__ = ["OutboundOtp", "OutboundSms", "OutboundTemplate", "Provider", "ProviderError", "SendResult",
           "get_provider", "get_sms_provider"]
