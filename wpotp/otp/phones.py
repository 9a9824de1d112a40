"""Recipient numbers: strict E.164 in, E.164 and its region out."""

from __future__ import annotations

import re

import phonenumbers

from ..errors import InvalidPhone

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def normalize_recipient(raw: str) -> tuple[str, str | None]:
    """Return (E.164 number, ISO region) or raise InvalidPhone.

    Only the E.164 form is accepted (`+` and digits), so a number means the same thing
    whatever country the caller is in.
    """
    if not isinstance(raw, str) or not _E164.match(raw.strip()):
        raise InvalidPhone(details={"recipient": "expected E.164, like +905551112233"})
    try:
        number = phonenumbers.parse(raw.strip(), None)
    except phonenumbers.NumberParseException:
        raise InvalidPhone() from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone(details={"recipient": "not a valid number for its country code"})
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164, phonenumbers.region_code_for_number(number)
