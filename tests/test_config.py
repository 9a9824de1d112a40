"""Settings are strict and production refuses to start unsafe (SPEC §11)."""

from __future__ import annotations

import pytest

from config import Config, ConfigError, TestConfig
from wpotp import create_app


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in ("SECRET_KEY", "OTP_HASH_KEY", "SECRET_KEY_FILE", "OTP_HASH_KEY_FILE", "WPOTP_ENV",
                 "SESSION_COOKIE_SECURE", "DATABASE_URL", "WPOTP_PROVIDER", "API_RATE_LIMIT", "WHATSAPP_TOKEN",
                 "WHATSAPP_APP_SECRET", "WHATSAPP_VERIFY_TOKEN", "WHATSAPP_PHONE_NUMBER_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WPOTP_INSTANCE_DIR", str(tmp_path))
    return monkeypatch


def test_development_generates_secrets_once_into_instance(clean_env, tmp_path):
    first, second = Config.from_env(), Config.from_env()
    assert len(first.SECRET_KEY) >= 32 and first.SECRET_KEY == second.SECRET_KEY
    assert first.OTP_HASH_KEY == second.OTP_HASH_KEY != first.SECRET_KEY
    assert (tmp_path / "otp_hash_key").stat().st_mode & 0o077 == 0


def test_production_refuses_to_start_without_secrets(clean_env):
    clean_env.setenv("WPOTP_ENV", "production")
    with pytest.raises(ConfigError, match="SECRET_KEY is required"):
        Config.from_env()


def _production_with_secrets(env) -> None:
    env.setenv("WPOTP_ENV", "production")
    env.setenv("SECRET_KEY", "s" * 40)
    env.setenv("OTP_HASH_KEY", "h" * 40)


def test_production_refuses_insecure_cookies(clean_env):
    _production_with_secrets(clean_env)
    clean_env.setenv("SESSION_COOKIE_SECURE", "false")
    with pytest.raises(ConfigError, match="SESSION_COOKIE_SECURE"):
        Config.from_env()
    clean_env.setenv("SESSION_COOKIE_SECURE", "true")
    assert Config.from_env().SESSION_COOKIE_SECURE is True


def test_secrets_can_come_from_files(clean_env, tmp_path):
    (tmp_path / "sk").write_text("k" * 40 + "\n")
    clean_env.setenv("SECRET_KEY_FILE", str(tmp_path / "sk"))
    assert Config.from_env().SECRET_KEY == "k" * 40


@pytest.mark.parametrize(("name", "value"), [
    ("SESSION_COOKIE_SECURE", "maybe"),
    ("API_RATE_LIMIT", "lots"),
    ("APP_DAILY_SEND_CAP", "ten"),
    ("WPOTP_PROVIDER", "carrier-pigeon"),
    ("WPOTP_ENV", "staging"),
    ("SEND_RETRY_DELAYS", "1,x"),
    ("RECEIPT_BATCH", "1001"),
    ("RECEIPT_BATCH", "-1"),
])
def test_malformed_settings_stop_start_up_naming_the_variable(clean_env, name, value):
    clean_env.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        Config.from_env()


def test_a_provider_with_missing_settings_refuses_to_start_naming_each(clean_env):
    clean_env.setenv("WPOTP_PROVIDER", "cloud_api")
    clean_env.setenv("WHATSAPP_PHONE_NUMBER_ID", "+905551112233")
    with pytest.raises(ConfigError) as refused:
        create_app()
    message = str(refused.value)
    for name in ("WHATSAPP_TOKEN", "WHATSAPP_APP_SECRET", "WHATSAPP_VERIFY_TOKEN"):
        assert f"{name} is not set" in message
    assert "WHATSAPP_PHONE_NUMBER_ID must be the numeric id" in message


def test_factory_builds_independent_apps(tmp_path):
    one = create_app(TestConfig(f"sqlite:///{tmp_path}/a.db", tmp_path, APP_DAILY_SEND_CAP=7))
    two = create_app(TestConfig(f"sqlite:///{tmp_path}/b.db", tmp_path))
    assert one.config["APP_DAILY_SEND_CAP"] == 7 and two.config["APP_DAILY_SEND_CAP"] == 10000
    assert one.config["SQLALCHEMY_DATABASE_URI"] != two.config["SQLALCHEMY_DATABASE_URI"]
    assert one.testing and "api" in one.blueprints


@pytest.mark.parametrize("value", ["md5", "scrypt:1", "pbkdf2:sha1:1000", "plain"])
def test_a_malformed_password_hash_method_stops_start_up(clean_env, value):
    clean_env.setenv("PASSWORD_HASH_METHOD", value)
    with pytest.raises(ConfigError, match="PASSWORD_HASH_METHOD"):
        Config.from_env()


def test_production_refuses_a_password_hash_weaker_than_the_default(clean_env):
    _production_with_secrets(clean_env)
    assert Config.from_env().PASSWORD_HASH_METHOD == "scrypt"
    clean_env.setenv("PASSWORD_HASH_METHOD", "pbkdf2:sha256:1")
    with pytest.raises(ConfigError, match="PASSWORD_HASH_METHOD"):
        Config.from_env()
    clean_env.setenv("PASSWORD_HASH_METHOD", "pbkdf2:sha256:600000")
    assert Config.from_env().PASSWORD_HASH_METHOD == "pbkdf2:sha256:600000"


def test_passwords_are_hashed_by_the_configured_method_and_older_hashes_still_check(tmp_path):
    from wpotp.models import User

    scrypt_app = create_app(TestConfig(f"sqlite:///{tmp_path}/a.db", tmp_path, PASSWORD_HASH_METHOD="scrypt"))
    pbkdf2_app = create_app(TestConfig(f"sqlite:///{tmp_path}/a.db", tmp_path,
                                       PASSWORD_HASH_METHOD="pbkdf2:sha256:1000"))
    old, new = User(email="old@example.com"), User(email="new@example.com")
    with scrypt_app.app_context():
        old.set_password("correct horse")
    with pbkdf2_app.app_context():
        new.set_password("correct horse")
        assert old.check_password("correct horse") and not old.check_password("wrong horse")
        assert new.check_password("correct horse") and not new.check_password("wrong horse")
    assert old.password_hash.startswith("scrypt:") and new.password_hash.startswith("pbkdf2:sha256:1000$")


def test_receipts_are_queued_in_batches_of_100_unless_set(clean_env):
    clean_env.delenv("RECEIPT_BATCH", raising=False)
    assert Config.from_env().RECEIPT_BATCH == 100
    clean_env.setenv("RECEIPT_BATCH", "0")
    assert Config.from_env().RECEIPT_BATCH == 0
