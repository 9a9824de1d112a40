"""SPEC §7/§11: the Cloud API provider refuses to start without its settings, naming each one."""

from __future__ import annotations

import pytest

from config import ConfigError, TestConfig
from wpotp import create_app

from .graph import SETTINGS

REQUIRED = ("WHATSAPP_PHONE_NUMBER_ID", "WHATSAPP_TOKEN", "WHATSAPP_APP_SECRET", "WHATSAPP_VERIFY_TOKEN")


def test_missing_token_stops_start_up_naming_it(backend):
    _name, url, instance = backend
    with pytest.raises(ConfigError, match="WHATSAPP_TOKEN is not set"):
        create_app(TestConfig(url, instance, **{**SETTINGS, "WHATSAPP_TOKEN": ""}))


@pytest.mark.parametrize("setting", REQUIRED)
def test_each_missing_setting_is_named(make_app, setting):
    with pytest.raises(ConfigError) as caught:
        make_app(**{**SETTINGS, setting: ""})

    assert f"{setting} is not set" in str(caught.value)
    assert "WPOTP_PROVIDER=cloud_api" in str(caught.value)


def test_all_missing_settings_are_named_at_once(make_app):
    with pytest.raises(ConfigError) as caught:
        make_app(**{**SETTINGS, **dict.fromkeys(REQUIRED, "")})

    assert all(f"{setting} is not set" in str(caught.value) for setting in REQUIRED)


def test_malformed_phone_number_id_is_explained_without_echoing_secrets(make_app):
    with pytest.raises(ConfigError) as caught:
        make_app(**{**SETTINGS, "WHATSAPP_PHONE_NUMBER_ID": "+90 555 111 2233"})

    assert "WHATSAPP_PHONE_NUMBER_ID must be the numeric id" in str(caught.value)
    assert SETTINGS["WHATSAPP_TOKEN"] not in str(caught.value)
    assert SETTINGS["WHATSAPP_APP_SECRET"] not in str(caught.value)
