"""SMS texts and segment counts (wpotp/otp/sms_text.py): GSM-7 vs UCS-2, single vs concatenated."""

from __future__ import annotations

import pytest

from wpotp.otp.sms_text import is_gsm7, segments, sms_body, text_problem


def test_body_names_the_code_and_the_app_per_language():
    assert sms_body("en", "482913", "Acme") == "482913 is your Acme verification code. Do not share it with anyone."
    assert sms_body("tr", "482913", "Acme").startswith("Acme doğrulama kodunuz: 482913")
    assert sms_body("tr_TR", "1234", "A") == sms_body("tr", "1234", "A")
    assert sms_body("xx", "1234", "A") == sms_body("en", "1234", "A") == sms_body(None, "1234", "A")


@pytest.mark.parametrize(("text", "expected"), [
    ("a" * 160, ("GSM-7", 1)),
    ("a" * 161, ("GSM-7", 2)),
    ("a" * 306, ("GSM-7", 2)),
    ("a" * 307, ("GSM-7", 3)),
    ("€" * 80, ("GSM-7", 1)),  # an extension character takes two septets
    ("€" * 81, ("GSM-7", 2)),
    ("ğ" * 70, ("UCS-2", 1)),
    ("ğ" * 71, ("UCS-2", 2)),
    ("ğ" * 134, ("UCS-2", 2)),
    ("ğ" * 135, ("UCS-2", 3)),
    ("😀" * 35, ("UCS-2", 1)),  # two UTF-16 units each
    ("😀" * 36, ("UCS-2", 2)),
])
def test_segments(text, expected):
    assert segments(text) == expected


def test_the_builtin_texts_fit_one_segment():
    assert segments(sms_body("en", "12345678", "A" * 20)) == ("GSM-7", 1)
    assert not is_gsm7(sms_body("tr", "1234", "Acme"))
    assert segments(sms_body("tr", "12345678", "Acme")) == ("UCS-2", 1)


def test_an_apps_own_text_wins_for_its_language_and_the_built_in_covers_the_rest():
    own = {"en": "{app}: {code} (do not share)", "pt": "Código {app}: {code}"}
    assert sms_body("en", "4821", "Acme", own) == "Acme: 4821 (do not share)"
    assert sms_body("pt_BR", "4821", "Acme", own) == "Código Acme: 4821"
    assert sms_body("tr", "4821", "Acme", own) == sms_body("tr", "4821", "Acme")  # no own tr: the built-in
    assert sms_body("de", "4821", "Acme", own) == "Acme: 4821 (do not share)"  # unknown: the app's English
    assert sms_body("en", "4821", "{code}", own) == "{code}: 4821 (do not share)"  # a name is not re-filled


@pytest.mark.parametrize(("text", "problem"), [
    ("{code} is your {app} code", None),
    ("Your code", "must contain {code} exactly once"),
    ("{code} {code}", "must contain {code} exactly once"),
    ("{code} for {name}", "only the placeholders {code} and {app} may be used"),
    ("{code} " + "x" * 480, "at most 480 characters"),
])
def test_text_problem(text, problem):
    assert text_problem(text) == problem
