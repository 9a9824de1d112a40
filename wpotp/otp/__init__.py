"""The OTP domain: codes, phone numbers, send limits and the lifecycle service."""
