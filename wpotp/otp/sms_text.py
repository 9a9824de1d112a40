"""The text of an OTP sent by SMS, and how many SMS segments it takes.

A small built-in text per language (the code and the app name); an unknown language falls
back to its base language, then English. Segments: a GSM-7 text fits 160 septets in one SMS
and 153 per part once concatenated (the extension table's characters take two septets); any
other character makes it UCS-2, 70 characters in one SMS and 67 per part (counted in UTF-16
code units: an emoji takes two).
"""

from __future__ import annotations

import re

from flask_babel import gettext as _

TEXTS = {
    "en": "{code} is your {app} verification code. Do not share it with anyone.",
    "tr": "{app} doğrulama kodunuz: {code}. Bu kodu kimseyle paylaşmayın.",
}

GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = set("^{}\\[~]|€\f")


_PLACEHOLDER = re.compile(r"\{(code|app)\}")
MAX_TEXT = 480  # characters of an app's own text (three GSM-7 segments and then some)


def sms_body(language: str | None, code: str, app_name: str, own: dict | None = None) -> str:
    """The OTP's text in `language` (`pt_BR` -> `pt` -> `en`): the app's own text for it (`own`,
    by language, as `apps.sms_texts` holds them), else the built-in one."""
    return fill(text_for(language, own), code, app_name)


def fill(text: str, code: str, app_name: str) -> str:
    """The placeholders filled in one pass (an app name with `{code}` in it stays as written)."""
    return _PLACEHOLDER.sub(lambda m: code if m.group(1) == "code" else app_name, text)


def text_for(language: str | None, own: dict | None = None) -> str:
    """The template of `language`'s text, placeholders unfilled (the app's own first)."""
    lang = (language or "en").replace("-", "_")
    for table in (own or {}, TEXTS):
        text = table.get(lang) or table.get(lang.split("_")[0].lower())
        if text:
            return text
    return (own or {}).get("en") or TEXTS["en"]


def text_problem(text: str) -> str | None:
    """Why an app's own SMS text cannot be used, or None: it must carry `{code}` once, and no
    other `{...}` than `{code}` and `{app}`."""
    if len(text) > MAX_TEXT:
        return _("at most %(n)s characters", n=MAX_TEXT)
    if text.count("{code}") != 1:
        return _("must contain {code} exactly once")
    rest = text.replace("{code}", "").replace("{app}", "")
    if "{" in rest or "}" in rest:
        return _("only the placeholders {code} and {app} may be used")
    return None


def preview(text: str, app_name: str, code_length: int = 6) -> str:
    """The text as a user would get it, with a sample code: what the segment count is made of."""
    return fill(text, "8" * code_length, app_name)


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def segments(text: str) -> tuple[str, int]:
    """(`"GSM-7"` or `"UCS-2"`, how many SMS segments `text` is sent as)."""
    if is_gsm7(text):
        units = sum(2 if ch in GSM7_EXTENSION else 1 for ch in text)
        return "GSM-7", 1 if units <= 160 else -(-units // 153)
    units = len(text.encode("utf-16-le")) // 2
    return "UCS-2", 1 if units <= 70 else -(-units // 67)
