"""What /v1 answers, as pydantic models: the OpenAPI document's response schemas are generated
from these (wpotp/apidoc), and tests/apidoc checks the serializers (wpotp/api/serializers.py)
against them, so what the document promises and what the service says cannot drift apart.

The serializers build plain dicts (the hot paths stay free of model validation); these models
describe them. `extra="forbid"` makes every schema closed: a field a serializer adds without
adding it here fails the schema checks.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"},
                                 examples=["2026-05-17T12:05:00.000Z"])]
Channel = Literal["whatsapp", "sms"]
OtpStatus = Literal["QUEUED", "SENT", "DELIVERED", "READ", "VERIFIED", "FAILED", "EXPIRED", "CANCELED"]
MessageStatus = Literal["QUEUED", "SENT", "DELIVERED", "READ", "FAILED", "EXPIRED"]
Mode = Literal["live", "test"]


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OtpSummary(Answer):
    """An OTP as POST /v1/otp/send answers it."""
    id: str = Field(examples=["otp_01JZ8Q6Y3N4V5W6X7Y8Z9A0B1C"])
    status: OtpStatus
    recipient: str | None = Field(examples=["+905551112233"], description="Null once the OTP is anonymised.")
    reference: str | None
    templateId: str | None  # noqa: N815 - the API's field names
    channel: Channel = Field(description="The channel of the last send (`auto` sends over WhatsApp first).")
    expiresAt: Timestamp  # noqa: N815
    createdAt: Timestamp  # noqa: N815


class TimelineEvent(Answer):
    id: str
    type: str = Field(examples=["otp.sent"])
    status: str | None
    channel: Channel = Field(description="The channel this entry concerns.")
    createdAt: Timestamp  # noqa: N815
    error: Any = Field(None, description="Present on failure events only.")


class OtpDetail(OtpSummary):
    """An OTP as the list answers it (no timeline)."""
    language: str | None
    mode: Mode
    attempts: int
    attemptsRemaining: int  # noqa: N815
    maxAttempts: int  # noqa: N815
    resends: int
    sentAt: Timestamp | None  # noqa: N815
    deliveredAt: Timestamp | None  # noqa: N815
    readAt: Timestamp | None  # noqa: N815
    verifiedAt: Timestamp | None  # noqa: N815
    failedAt: Timestamp | None  # noqa: N815
    canceledAt: Timestamp | None  # noqa: N815
    expiredAt: Timestamp | None  # noqa: N815
    error: str | None
    anonymisedAt: Timestamp | None = Field(description=(  # noqa: N815
        "When data retention anonymised this OTP (RETENTION_DAYS after its creation): `recipient` is then "
        "null, the number is gone. Null while the OTP is whole."))


class Otp(OtpDetail):
    """One OTP with its timeline (GET /v1/otp/{id}, resend, cancel). Never its code."""
    timeline: list[TimelineEvent]


class OtpList(Answer):
    data: list[OtpDetail]
    nextCursor: str | None  # noqa: N815


class Verified(Answer):
    verified: Literal[True]
    status: Literal["VERIFIED"]
    id: str
    verifiedAt: Timestamp  # noqa: N815


class Attempt(Answer):
    createdAt: Timestamp  # noqa: N815
    result: str = Field(examples=["invalid"])
    ip: str | None


class AttemptList(Answer):
    data: list[Attempt]


class Template(Answer):
    id: str
    name: str
    language: str
    category: str
    status: str
    body: str
    copyCodeButton: bool  # noqa: N815
    isDefault: bool  # noqa: N815


class TemplateList(Answer):
    data: list[Template]


class MessageSummary(Answer):
    """A message as POST /v1/messages answers it (no timeline)."""
    id: str = Field(examples=["msg_01JZ8Q6Y3N4V5W6X7Y8Z9A0B1C"])
    status: MessageStatus
    recipient: str | None = Field(description="Null once the message is anonymised.")
    templateId: str  # noqa: N815
    language: str | None
    variables: dict[str, str]
    mode: Mode
    expiresAt: Timestamp  # noqa: N815
    createdAt: Timestamp  # noqa: N815
    sentAt: Timestamp | None  # noqa: N815
    deliveredAt: Timestamp | None  # noqa: N815
    readAt: Timestamp | None  # noqa: N815
    failedAt: Timestamp | None  # noqa: N815
    expiredAt: Timestamp | None  # noqa: N815
    error: str | None


class Message(MessageSummary):
    anonymisedAt: Timestamp | None = Field(description=(  # noqa: N815
        "When data retention anonymised this message: `recipient` is then null and `variables` empty."))
    timeline: list[TimelineEvent]


class LogItem(Answer):
    id: str
    type: str = Field(examples=["otp.delivered"])
    createdAt: Timestamp  # noqa: N815
    otpId: str | None  # noqa: N815
    messageId: str | None  # noqa: N815
    data: dict[str, Any]


class LogList(Answer):
    data: list[LogItem]
    nextCursor: str | None  # noqa: N815


class RateLimit(Answer):
    name: Literal["api", "recipient", "app_daily"]
    limit: str = Field(examples=["120 per 1 minute"])
    window: int
    remaining: int
    resetAt: Timestamp  # noqa: N815


class RateLimitList(Answer):
    data: list[RateLimit]


StatusCounts = Annotated[dict[str, int], Field(description="One count per OTP status, zeros included.")]


class ChannelCounts(Answer):
    total: int
    byStatus: StatusCounts  # noqa: N815


class BucketChannels(Answer):
    """A bucket's OTPs split by the channel of their last send."""
    whatsapp: ChannelCounts
    sms: ChannelCounts


class ReportBucket(Answer):
    start: Timestamp
    total: int
    byStatus: StatusCounts  # noqa: N815
    byChannel: BucketChannels  # noqa: N815


class ChannelFigures(Answer):
    """The report's figures over one channel's OTPs (the channel of each OTP's last send)."""
    total: int
    byStatus: StatusCounts  # noqa: N815
    deliveryRate: float | None  # noqa: N815
    verificationRate: float | None  # noqa: N815
    medianSecondsToVerify: float | None  # noqa: N815


class ReportChannels(Answer):
    whatsapp: ChannelFigures
    sms: ChannelFigures


class ReportTotals(Answer):
    total: int
    byStatus: StatusCounts  # noqa: N815


class CountryCount(Answer):
    country: str
    count: int


class Report(Answer):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)
    from_: Timestamp = Field(alias="from")
    to: Timestamp
    interval: Literal["day", "hour"]
    buckets: list[ReportBucket]
    totals: ReportTotals
    deliveryRate: float | None  # noqa: N815
    verificationRate: float | None  # noqa: N815
    medianSecondsToVerify: float | None  # noqa: N815
    topCountries: list[CountryCount]  # noqa: N815
    byChannel: ReportChannels  # noqa: N815


class ErrorBody(Answer):
    code: str = Field(description="One of SPEC §3's codes; each operation lists the ones it can answer.")
    message: str
    details: dict[str, Any] = Field(default_factory=dict, description="`fields` names the fields at fault, and so on.")


class ErrorEnvelope(Answer):
    """Every /v1 answer that is not 2xx (SPEC §3)."""
    error: ErrorBody


class WebhookEventData(Answer):
    id: str
    recipient: str
    reference: str | None = Field(None, description="OTP events only.")
    status: str
    templateId: str | None  # noqa: N815
    channel: str | None = Field(None, description="OTP events only: the channel the event concerns "
                                                  "(`whatsapp` or `sms`).")
    fromChannel: str | None = Field(None, description="`otp.fallback` only: `whatsapp`.")  # noqa: N815
    reason: str | None = Field(None, description="`otp.fallback` only: why (`131026: Message undeliverable`, "
                                                 "`not_on_whatsapp: ...`, `no_receipt: ...`).")
    error: Any = Field(None, description="Failure events only.")


class WebhookEvent(Answer):
    """The body POSTed to an app's webhook endpoint (SPEC §6), signed with `X-Wpotp-Signature`. Endpoints
    may also subscribe to `otp.fallback` (channel `auto` went on by SMS: `channel` sms, `fromChannel`,
    `reason`), which is sent only to endpoints that asked for it."""
    id: str = Field(examples=["evt_7c1a"])
    event: str
    createdAt: Timestamp  # noqa: N815
    data: WebhookEventData
