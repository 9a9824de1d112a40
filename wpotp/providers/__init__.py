"""What talks to WhatsApp. See base.py for the interface; `get_provider` is the registry."""

from .base import OutboundOtp, Provider, ProviderError, SendResult, get_provider

__all__ = ["OutboundOtp", "Provider", "ProviderError", "SendResult", "get_provider"]
