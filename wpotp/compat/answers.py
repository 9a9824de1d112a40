"""What the dialects answer, as pydantic models (the dialects' OpenAPI documents are generated
from these; see wpotp/apidoc). The otpapi dialect answers the native models in snake_case: its
schemas are derived from wpotp.api.answers by wpotp.apidoc, not repeated here."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..api.answers import Answer, Timestamp

SessionStatus = Literal["queued", "sent", "delivered", "read", "verified", "failed", "expired", "canceled"]


class WhatotpSession(Answer):
    session_id: str
    status: SessionStatus
    to: str
    channel: Literal["whatsapp"]
    expires_at: Timestamp


class WhatotpVerified(Answer):
    verified: Literal[True]
    session_id: str
    status: Literal["verified"]
    verified_at: Timestamp


class WhatotpQueued(Answer):
    message_id: str
    status: Literal["queued", "sent", "delivered", "read", "failed", "expired"]
    phone_number: str
    template_id: str
    expires_at: Timestamp


class WawpSent(Answer):
    code: Literal["success"]
    message: str = Field(examples=["Verification code sent successfully"])
    expires_in: int
    job_id: str


class WawpVerified(Answer):
    code: Literal["success"]
    message: str = Field(examples=["Verification code verified successfully"])
    verified: Literal[True]
    job_id: str
