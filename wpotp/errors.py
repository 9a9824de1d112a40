"""The product's error vocabulary (SPEC §3), raised by services and shaped by each edge.

The native API renders these as `{"error": {"code", "message", "details"}}`; compat
dialects translate them into their own styles. Services never build HTTP responses.
"""

from __future__ import annotations

from . import metrics


class WpotpError(Exception):
    status = 400
    code = "VALIDATION_ERROR"
    message = "The request is not valid."

    def __init__(self, message: str | None = None, details: dict | None = None, headers: dict | None = None):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.details = details or {}
        self.headers = headers or {}


class ValidationError(WpotpError):
    status, code, message = 400, "VALIDATION_ERROR", "The request body is not valid."


class PayloadTooLarge(WpotpError):
    status, code, message = 413, "PAYLOAD_TOO_LARGE", "The request body is too large."


class InvalidPhone(WpotpError):
    status, code, message = 400, "INVALID_PHONE", "The recipient is not a valid E.164 phone number."


class CountryNotAllowed(WpotpError):
    status, code, message = 400, "COUNTRY_NOT_ALLOWED", "The recipient's country is not allowed for this app."


class FraudBlocked(WpotpError):
    """The fraud guard refused the send (SPEC §12); `details.reason` and `details.country` say why."""

    status, code, message = 403, "FRAUD_BLOCKED", "The fraud guard refused this send."


class Unauthorized(WpotpError):
    status, code, message = 401, "unauthorized", "Missing, unknown or revoked API key."


class NotFound(WpotpError):
    status, code, message = 404, "NOT_FOUND", "No such resource."


class MethodNotAllowed(WpotpError):
    status, code, message = 405, "METHOD_NOT_ALLOWED", "That method is not allowed on this resource."


class TemplateNotFound(WpotpError):
    status, code, message = 404, "TEMPLATE_NOT_FOUND", "No template with that id."


class OtpNotFound(WpotpError):
    status, code, message = 404, "OTP_NOT_FOUND", "No OTP with that id."


class InvalidCode(WpotpError):
    status, code, message = 400, "INVALID_CODE", "Invalid OTP code."


class OtpExpired(WpotpError):
    status, code, message = 400, "OTP_EXPIRED", "The OTP has expired."


class OtpAlreadyVerified(WpotpError):
    status, code, message = 409, "OTP_ALREADY_VERIFIED", "The OTP was already verified; codes are single-use."


class OtpCanceled(WpotpError):
    status, code, message = 409, "OTP_CANCELED", "The OTP was canceled."


class OtpFailed(WpotpError):
    status, code, message = 409, "OTP_FAILED", "The OTP could not be delivered; send a new one."


class ReferenceConflict(WpotpError):
    status, code, message = 409, "REFERENCE_CONFLICT", "That reference belongs to an active OTP for another recipient."


class TooManyAttempts(WpotpError):
    status, code, message = 429, "TOO_MANY_ATTEMPTS", "The attempt budget is spent; send a new OTP."


class RateLimited(WpotpError):
    status, code, message = 429, "RATE_LIMITED", "Rate limit exceeded."

    def __init__(self, limit: str, retry_after: int, message: str | None = None):
        retry_after = max(1, int(retry_after))
        metrics.rate_limited(limit)  # made only to be raised: one refusal
        headers = {"Retry-After": str(retry_after)}
        super().__init__(message or f"Rate limit exceeded: {limit}. Retry in {retry_after} s.",
                         details={"limit": limit, "retryAfter": retry_after}, headers=headers)


class WaSendFailed(WpotpError):
    status, code, message = 502, "WA_SEND_FAILED", "The WhatsApp message could not be sent."


class ServiceUnavailable(WpotpError):
    status, code, message = 503, "SERVICE_UNAVAILABLE", "A backing service is unavailable; nothing was saved. Retry."
