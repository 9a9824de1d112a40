"""Outbound webhooks (SPEC §6): an app's endpoint hears of every public event of its OTPs and
messages, signed, at least once, retried for about a day, every attempt recorded."""
