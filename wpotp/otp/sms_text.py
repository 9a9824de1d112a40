"""The text of an OTP sent by SMS, and how many SMS segments it takes.

A small built-in text per language (the code and the app name); an unknown language falls
back to its base language, then English. Segments: a GSM-7 text fits 160 septets in one SMS
and 153 per part once concatenated (the extension table's characters take two septets); any
other character makes it UCS-2, 70 characters in one SMS and 67 per part (counted in UTF-16
code units: an emoji takes two).
"""

from __future__ import annotations

TEXTS = {
    "en": "{code} is your {app} verification code. Do not share it with anyone.",
    "tr": "{app} doğrulama kodunuz: {code}. Bu kodu kimseyle paylaşmayın.",
}

GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = set("^{}\\[~]|€\f")


def sms_body(language: str | None, code: str, app_name: str) -> str:
    """The OTP's text in `language` (`pt_BR` -> `pt` -> `en`)."""
    lang = (language or "en").replace("-", "_")
    text = TEXTS.get(lang) or TEXTS.get(lang.split("_")[0].lower()) or TEXTS["en"]
    return text.format(code=code, app=app_name)


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def segments(text: str) -> tuple[str, int]:
    """(`"GSM-7"` or `"UCS-2"`, how many SMS segments `text` is sent as)."""
    if is_gsm7(text):
        units = sum(2 if ch in GSM7_EXTENSION else 1 for ch in text)
        return "GSM-7", 1 if units <= 160 else -(-units // 153)
    units = len(text.encode("utf-16-le")) // 2
    return "UCS-2", 1 if units <= 70 else -(-units // 67)
