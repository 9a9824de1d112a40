"""Request bodies and query strings of /v1, validated strictly: wrong types and unknown
fields are errors that name the field, never silently coerced or dropped."""

from __future__ import annotations

import json
from typing import Annotated, Literal, TypeVar

from flask import request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic import ValidationError as PydanticError

from ..errors import ValidationError

T = TypeVar("T", bound=BaseModel)


def _printable(value: str) -> str:
    # PostgreSQL refuses NUL bytes and no field of ours means anything with control characters.
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("control characters are not allowed")
    if not value.isascii() and not encodable(value):
        raise ValueError("not valid Unicode text (a lone surrogate)")
    return value


def encodable(value: str) -> bool:
    """Can this string be written as UTF-8? JSON's "\\ud800" decodes to a lone surrogate, which
    no database driver can encode: such a string is refused at the edge, never stored."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


Text = Annotated[str, AfterValidator(_printable)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SendOtpBody(Strict):
    recipient: Text = Field(min_length=1, max_length=32)
    templateId: Text | None = Field(None, min_length=1, max_length=40)  # noqa: N815 - the API's field name
    code: str | None = Field(None, pattern=r"^[0-9]{4,8}$")
    reference: Text | None = Field(None, min_length=1, max_length=128)
    length: int | None = Field(None, ge=4, le=8)
    ttl: int | None = Field(None, ge=60, le=900)
    language: str | None = Field(None, pattern=r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})?$")
    # `auto`: WhatsApp, then SMS on fallback (SPEC §12).
    channel: Literal["whatsapp", "sms", "auto"] = Field(
        "whatsapp", description="`auto`: WhatsApp, then the same code by SMS (once) when WhatsApp says the number "
                                "cannot get it or no delivery receipt comes within the app's FALLBACK_AFTER_SECONDS.")

    @field_validator("length")
    @classmethod
    def length_fits_code(cls, length: int | None, info: ValidationInfo) -> int | None:
        code = info.data.get("code")
        if length is not None and code is not None and len(code) != length:
            raise ValueError(f"the code has {len(code)} digits, not {length}")
        return length


class ResendBody(Strict):
    """POST /v1/otp/{id}/resend: optional; `channel` switches the channel of this send (default: the last one)."""
    channel: Literal["whatsapp", "sms", "auto"] | None = None


class VerifyBody(Strict):
    code: Text = Field(min_length=1, max_length=16)


class ListOtpQuery(Strict):
    model_config = ConfigDict(extra="forbid", strict=False)
    status: str | None = Field(None, pattern=r"^(QUEUED|SENT|DELIVERED|READ|VERIFIED|FAILED|EXPIRED|CANCELED)$")
    recipient: Text | None = Field(None, max_length=32)
    reference: Text | None = Field(None, max_length=128)
    from_: Text | None = Field(None, alias="from", max_length=40)
    to: Text | None = Field(None, max_length=40)
    limit: int = Field(20, ge=1, le=100)
    cursor: Text | None = Field(None, max_length=200)


def _fields(exc: PydanticError) -> dict[str, str]:
    out: dict[str, str] = {}
    for err in exc.errors():
        name = ".".join(str(part) for part in err["loc"]) or "body"
        out[name] = err["msg"]
    return out


def parse_body(model: type[T], allow_empty: bool = False) -> T:
    raw = request.get_data(cache=True)
    if not raw.strip():
        if allow_empty:
            return model()
        raise ValidationError("The request body must be a JSON object.", details={"fields": {"body": "missing"}})
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ValidationError("The request body is not valid JSON.", details={"fields": {"body": "not JSON"}}) from None
    if not isinstance(data, dict):
        raise ValidationError("The request body must be a JSON object.",
                              details={"fields": {"body": "expected an object"}})
    try:
        return model.model_validate(data)
    except PydanticError as exc:
        fields = _fields(exc)
        raise ValidationError(f"Invalid fields: {', '.join(sorted(fields))}.", details={"fields": fields}) from None


def parse_query(model: type[T]) -> T:
    data = {}
    for key in request.args:
        values = request.args.getlist(key)
        data[key] = values[0] if len(values) == 1 else values
    try:
        return model.model_validate(data)
    except PydanticError as exc:
        fields = _fields(exc)
        raise ValidationError(f"Invalid query parameters: {', '.join(sorted(fields))}.",
                              details={"fields": fields}) from None
