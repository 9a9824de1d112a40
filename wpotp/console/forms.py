"""The console's forms (Flask-WTF: each carries its CSRF token)."""

from __future__ import annotations

import re

import phonenumbers
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from limits import parse, parse_many
from wtforms import (
    BooleanField,
    EmailField,
    IntegerField,
    PasswordField,
    SelectField,
    SelectMultipleField,
    StringField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional, Regexp, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from config import valid_timezone

from ..otp.auth_templates import PACKAGE_NAME_MAX, button_problems
from ..webhooks.events import PUBLIC_EVENTS

EMAIL = r"^[^@\s]+@[^@\s]+$"
LANGUAGE = r"^[a-z]{2,3}(_[A-Z]{2})?$"
ROLES = [SelectChoice("viewer", _l("viewer (read-only)")), SelectChoice("admin", _l("admin (everything)"))]


class LoginForm(FlaskForm):
    email = EmailField(_l("Email"), validators=[DataRequired(), Length(max=254)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=1024)])


class KeyForm(FlaskForm):
    name = StringField(_l("Name"), validators=[Optional(), Length(max=100)],
                       description=_l("A label for staff, e.g. “checkout (staging)”."))
    mode = SelectField(_l("Mode"), default="test",
                       choices=[SelectChoice("test", _l("test (sandbox, never reaches WhatsApp)")),
                                SelectChoice("live", _l("live"))])


class UserForm(FlaskForm):
    email = EmailField(_l("Email"), validators=[DataRequired(), Length(max=254),
                                            Regexp(EMAIL, message=_l("Enter an email address."))])
    role = SelectField(_l("Role"), choices=ROLES, default="viewer")
    password = PasswordField(_l("Password"), validators=[Optional(), Length(min=8, max=256)],
                             description=_l("Leave empty to generate one (shown once)."))


class RoleForm(FlaskForm):
    role = SelectField(_l("Role"), choices=ROLES)


def _limit_string(form, field) -> None:
    if field.data:
        try:
            parse_many(field.data)
        except ValueError:
            raise ValidationError(_l("Write limits like 120/minute or 5/15minutes;10/day.")) from None


def _countries(form, field) -> None:
    codes = [c for c in re.split(r"[\s,;]+", (field.data or "").upper()) if c]
    unknown = [c for c in codes if c not in phonenumbers.SUPPORTED_REGIONS]
    if unknown:
        raise ValidationError(_l("Not ISO 3166 country codes: %(codes)s.", codes=", ".join(unknown[:10])))
    field.data = ",".join(dict.fromkeys(codes))  # normalised: upper case, comma-separated, no repeats


class SettingsForm(FlaskForm):
    otp_length = IntegerField(_l("Code length"), validators=[InputRequired(), NumberRange(4, 8)],
                              description=_l("Digits in a generated code, 4 to 8."))
    otp_ttl = IntegerField(_l("Code lifetime (seconds)"), validators=[InputRequired(), NumberRange(60, 900)],
                           description=_l("60 to 900 seconds."))
    max_attempts = IntegerField(_l("Verify attempts"), validators=[InputRequired(), NumberRange(1, 20)],
                                description=_l("Wrong codes allowed before an OTP dies, 1 to 20."))
    allowed_countries = StringField(_l("Allowed countries"), validators=[Optional(), Length(max=1000), _countries],
                                    description=_l("ISO codes such as TR, DE, US; empty allows every country."))
    api_rate_limit = StringField(_l("API rate limit"), validators=[Optional(), Length(max=100), _limit_string],
                                 description=_l("Per API key and IP, e.g. 120/minute; empty uses the server setting."))
    recipient_rate_limit = StringField(_l("Per-recipient limit"),
                                       validators=[Optional(), Length(max=100), _limit_string],
                                       description=_l("Sends to one number, e.g. 5/15minutes;10/day; "
                                                      "empty uses the server setting."))
    daily_send_cap = IntegerField(_l("Daily send cap"), validators=[Optional(), NumberRange(1, 100_000_000)],
                                  description=_l("Sends per day for this app; empty uses the server setting."))
    retention_days = IntegerField(_l("Keep data for (days)"), validators=[Optional(), NumberRange(1, 3650)],
                                  description=_l("Then numbers are anonymised and events deleted; empty uses the "
                                                 "server setting (RETENTION_DAYS)."))
    default_language = StringField(_l("Default language"),
                                   validators=[DataRequired(),
                                               Regexp(LANGUAGE, message=_l("Use a code like en or pt_BR."))],
                                   description=_l("Template language when a send names none, e.g. en, pt_BR."))
    fallback_after_seconds = IntegerField(
        _l("SMS fallback after (seconds)"), validators=[Optional(), NumberRange(0, 3600)],
        description=_l("Channel auto: seconds without a delivery receipt before the same code goes by SMS; "
                       "0 falls back only when the number is not on WhatsApp; empty uses the server setting."))


OTP_TYPE_CHOICES = [SelectChoice("COPY_CODE", _l("copy code (every phone)")),
                    SelectChoice("ONE_TAP", _l("one-tap autofill (Android app)")),
                    SelectChoice("ZERO_TAP", _l("zero-tap (Android app, no tap)"))]


class AutofillForm(FlaskForm):
    """The WhatsApp authentication template's button (docs/channels.md, "Autofill buttons"). Part of
    the settings page's form; checked together, since ONE_TAP and ZERO_TAP need the Android app."""

    otp_type = SelectField(_l("Code button"), choices=OTP_TYPE_CHOICES, default="COPY_CODE",
                           description=_l("What the WhatsApp message offers: copy the code, or hand it to your "
                                          "Android app."))
    android_package_name = StringField(_l("Android package name"),
                                       validators=[Optional(), Length(max=PACKAGE_NAME_MAX)],
                                       description=_l("One-tap and zero-tap: your app's applicationId, e.g. "
                                                      "com.example.shop."))
    android_signature_hash = StringField(_l("App signature hash"), validators=[Optional(), Length(max=11)],
                                         description=_l("One-tap and zero-tap: the 11-character hash of your "
                                                        "signing key (docs/channels.md)."))
    zero_tap_terms_accepted = BooleanField(_l("Zero-tap terms accepted"),
                                           description=_l("Zero-tap only: the business accepted Meta's zero-tap "
                                                          "terms."))
    security_recommendation = BooleanField(_l("Security recommendation"),
                                           description=_l("Adds “For your security, do not share this code.”"))

    def validate(self, extra_validators=None) -> bool:
        valid = super().validate(extra_validators)
        for field in (self.android_package_name, self.android_signature_hash):
            field.data = (field.data or "").strip()
        problems = button_problems(self.otp_type.data, self.android_package_name.data,
                                   self.android_signature_hash.data, self.zero_tap_terms_accepted.data)
        for name, message in problems.items():
            getattr(self, name).errors = [*getattr(self, name).errors, message]
        return valid and not problems


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class WebhookForm(FlaskForm):
    url = StringField(_l("Endpoint URL"), validators=[DataRequired(), Length(max=2048)],
                      description=_l("https://... where events are POSTed."))
    events = MultiCheckboxField(_l("Events"), choices=[SelectChoice(e) for e in PUBLIC_EVENTS],
                                validators=[DataRequired(message=_l("Pick at least one event."))])


def _one_limit(form, field) -> None:
    if field.data:
        try:
            parse(field.data)
        except ValueError:
            raise ValidationError(_l("Write one limit like 60/hour or 1000/day.")) from None


GUARD_CHOICES = [SelectChoice("", _l("server setting (FRAUD_GUARD)")), SelectChoice("on", _l("on")),
                 SelectChoice("off", _l("off"))]


class FraudForm(FlaskForm):
    """The fraud guard's per-app settings (docs/fraud.md); an empty field uses the server setting."""
    fraud_guard = SelectField(_l("Fraud guard"), choices=GUARD_CHOICES, default="",
                              description=_l("Geo lists, velocity and the conversion monitor for this app."))
    fraud_allow_whatsapp = StringField(_l("WhatsApp: allowed countries"), validators=[Optional(), Length(max=1000),
                                                                                  _countries],
                                       description=_l("ISO codes; empty allows every country not denied."))
    fraud_deny_whatsapp = StringField(_l("WhatsApp: denied countries"), validators=[Optional(), Length(max=1000),
                                                                                _countries],
                                      description=_l("ISO codes refused with 403 FRAUD_BLOCKED."))
    fraud_allow_sms = StringField(_l("SMS: allowed countries"), validators=[Optional(), Length(max=1000), _countries],
                                  description=_l("ISO codes; empty allows every country not denied."))
    fraud_deny_sms = StringField(_l("SMS: denied countries"), validators=[Optional(), Length(max=1000), _countries],
                                 description=_l("ISO codes refused with 403 FRAUD_BLOCKED."))
    fraud_country_limit = StringField(_l("Sends per country"), validators=[Optional(), Length(max=100), _one_limit],
                                      description=_l("One limit, e.g. 1000/hour."))
    fraud_prefix_limit = StringField(_l("Sends per number prefix"),
                                     validators=[Optional(), Length(max=100), _one_limit],
                                     description=_l("One limit, e.g. 60/hour."))
    fraud_unverified_country = IntegerField(_l("Unverified sends per country"),
                                            validators=[Optional(), NumberRange(1, 10_000_000)],
                                            description=_l("Past this many sends without a verify, the country "
                                                           "is blocked."))
    fraud_unverified_prefix = IntegerField(_l("Unverified sends per prefix"),
                                           validators=[Optional(), NumberRange(1, 10_000_000)],
                                           description=_l("Past this many sends without a verify, the prefix "
                                                          "is blocked."))
    fraud_block_seconds = IntegerField(_l("Block for (seconds)"), validators=[Optional(), NumberRange(60, 30 * 86400)],
                                       description=_l("How long an automatic block lasts, 60 s to 30 days."))


class UnblockForm(FlaskForm):
    member = StringField(_l("Block"), validators=[DataRequired(), Length(max=20), Regexp(r"^[cp]:[0-9A-Z]{1,16}$")])


def _timezone(form, field) -> None:
    if field.data and not valid_timezone(field.data):
        raise ValidationError(_l("Pick a time zone from the list."))


class AccountForm(FlaskForm):
    """A user's own language and time zone; empty: the defaults (browser / CONSOLE_LANGUAGE, CONSOLE_TIMEZONE)."""
    language = SelectField(_l("Language"), choices=[SelectChoice("", _l("automatic (the browser's language)")),
                                                    SelectChoice("en", "English"), SelectChoice("tr", "Türkçe")],
                           default="", validate_choice=True)
    timezone = StringField(_l("Time zone"), validators=[Optional(), Length(max=64), _timezone],
                           description=_l("An IANA name such as Europe/Istanbul; empty uses the server's "
                                          "(CONSOLE_TIMEZONE)."))


class SandboxSendForm(FlaskForm):
    """The sandbox page's "send a test OTP": a real send with one of the app's test keys."""
    recipient = StringField(_l("Recipient"), validators=[DataRequired(), Length(max=40)],
                            description=_l("E.164, like +905551112233."))
    channel = SelectField(_l("Channel"), choices=[SelectChoice("whatsapp", "WhatsApp"), SelectChoice("sms", "SMS")],
                          default="whatsapp")
