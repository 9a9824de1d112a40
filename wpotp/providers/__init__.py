"""What talks to WhatsApp. See base.py for the interface; `get_provider` is the registry."""

from .base import OutboundOtp, OutboundTemplate, Provider, ProviderError, SendResult, get_provider

__all__ = ["OutboundOtp", "OutboundTemplate", "Provider", "ProviderError", "SendResult", "get_provider"]
