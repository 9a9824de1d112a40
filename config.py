"""Settings, read once from the environment (and an optional `.env`).

Every name here is part of the operator contract (SPEC §11) and is listed in
`.env.example`. Parsing is strict: a malformed value stops start-up with a
message naming the variable, rather than running with a surprise.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
from pathlib import Path

from dotenv import load_dotenv

BASE_DIR = Path(__file__).resolve().parent
load_dotenv(BASE_DIR / ".env", override=False)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(RuntimeError):
    """A setting is missing or malformed."""


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, not {raw!r}")


def env_int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, not {value}")
    return value


def env_redis_url(name: str, default: str) -> str:
    """A Redis URL in one of the forms wpotp/redis_url.py reads (a Sentinel one included)."""
    from wpotp.redis_url import RedisUrlError, check_redis_url  # here, not at the top: wpotp imports config

    value = env_str(name, default)
    try:
        check_redis_url(value)
    except RedisUrlError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    return value


def env_int_list(name: str, default: str) -> list[int]:
    """Comma-separated whole seconds, e.g. `2,5,15`; empty means none."""
    raw = env_str(name, default)
    try:
        values = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"{name} must be whole numbers separated by commas, not {raw!r}") from None
    if any(v < 0 for v in values):
        raise ConfigError(f"{name} must not be negative")
    return values


def env_networks(name: str, default: str) -> tuple:
    """Comma-separated addresses or CIDRs (`127.0.0.1/32,10.0.0.0/8,::1`); empty means none."""
    found = []
    for part in env_str(name, default).split(","):
        if not part.strip():
            continue
        try:
            found.append(ipaddress.ip_network(part.strip(), strict=False))
        except ValueError:
            raise ConfigError(f"{name} must be comma-separated addresses or CIDRs, not {part.strip()!r}") from None
    return tuple(found)


def env_limit(name: str, default: str) -> str:
    """A rate-limit string in the `limits` notation, e.g. `5/15minutes;10/day`."""
    from limits import parse_many

    value = env_str(name, default)
    try:
        parse_many(value)
    except ValueError:
        raise ConfigError(f"{name} is not a rate limit like '120/minute': {value!r}") from None
    return value


_HASH_METHOD = re.compile(r"^(scrypt(:\d+:\d+:\d+)?|pbkdf2(:sha(256|512)(:\d+)?)?)$")


def env_hash_method(name: str, default: str, production: bool) -> str:
    """A Werkzeug password hash method: `scrypt[:n:r:p]` or `pbkdf2[:sha256|sha512[:iterations]]`.
    Production refuses parameters weaker than Werkzeug's defaults (scrypt n 2**15, pbkdf2 600,000)."""
    value = env_str(name, default)
    if not _HASH_METHOD.match(value):
        raise ConfigError(f"{name} must be scrypt[:n:r:p] or pbkdf2[:sha256[:iterations]], not {value!r}")
    parts = value.split(":")
    weak = (parts[0] == "scrypt" and len(parts) == 4 and int(parts[1]) < 2**15) or (
        parts[0] == "pbkdf2" and len(parts) == 3 and int(parts[2]) < 600_000)
    if production and weak:
        raise ConfigError(f"{name}={value} is weaker than Werkzeug's default, refused when WPOTP_ENV=production")
    return value


def optional_secret(name: str) -> str:
    """A secret from NAME or NAME_FILE, or empty."""
    value = env_str(name)
    file_name = env_str(f"{name}_FILE")
    if not value and file_name:
        value = Path(file_name).read_text().strip()
    return value


def provider_problems(cfg: dict, provider: str) -> list[str]:
    """What is missing or malformed for `provider`, each naming its setting; empty when complete."""
    problems: list[str] = []

    def need(*names: str) -> None:
        problems.extend(f"{n} is not set" for n in names if not cfg.get(n))

    def url(name: str) -> None:
        value = cfg.get(name, "")
        if value and not value.startswith(("http://", "https://")):
            problems.append(f"{name} must start with http:// or https://, not {value!r}")

    if provider == "cloud_api":
        need("WHATSAPP_PHONE_NUMBER_ID", "WHATSAPP_TOKEN", "WHATSAPP_APP_SECRET", "WHATSAPP_VERIFY_TOKEN")
        url("WHATSAPP_GRAPH_URL")
        version = cfg.get("WHATSAPP_API_VERSION", "")
        if not (version.startswith("v") and version[1:].replace(".", "").isdigit()):
            problems.append(f"WHATSAPP_API_VERSION must look like v23.0, not {version!r}")
        if cfg.get("WHATSAPP_PHONE_NUMBER_ID") and not cfg["WHATSAPP_PHONE_NUMBER_ID"].isdigit():
            problems.append("WHATSAPP_PHONE_NUMBER_ID must be the numeric id Meta shows, not the phone number")
    elif provider == "gateway":
        need("GATEWAY_KIND", "GATEWAY_URL", "GATEWAY_SESSION", "GATEWAY_WEBHOOK_TOKEN")
        url("GATEWAY_URL")
        if cfg.get("GATEWAY_KIND") and cfg["GATEWAY_KIND"] not in ("waha", "evolution"):
            problems.append(f"GATEWAY_KIND must be waha or evolution, not {cfg['GATEWAY_KIND']!r}")
        token = cfg.get("GATEWAY_WEBHOOK_TOKEN", "")
        if token and len(token) < 24:
            problems.append("GATEWAY_WEBHOOK_TOKEN must be at least 24 characters (it authenticates the gateway)")
    return problems


SMS_PROVIDERS = ("sandbox", "twilio", "vonage", "http")


def sms_provider_problems(cfg: dict, provider: str) -> list[str]:
    """What is missing or malformed for the SMS provider `provider` (SMS_PROVIDER); empty when complete."""
    problems = [f"{n} is not set" for n in {
        "twilio": ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM"),
        "vonage": ("VONAGE_API_KEY", "VONAGE_API_SECRET", "VONAGE_FROM"),
        "http": ("SMS_HTTP_URL", "SMS_HTTP_WEBHOOK_TOKEN"),
    }.get(provider, ()) if not cfg.get(n)]
    for name in ("TWILIO_API_URL", "VONAGE_API_URL", "SMS_HTTP_URL", "SMS_CALLBACK_BASE_URL"):
        value = cfg.get(name, "")
        if value and not value.startswith(("http://", "https://")):
            problems.append(f"{name} must start with http:// or https://, not {value!r}")
    if provider == "vonage" and not (cfg.get("VONAGE_SIGNATURE_SECRET") or cfg.get("VONAGE_WEBHOOK_TOKEN")):
        problems.append("VONAGE_SIGNATURE_SECRET or VONAGE_WEBHOOK_TOKEN must be set (they authenticate DLRs)")
    if provider == "http":
        header = cfg.get("SMS_HTTP_AUTH_HEADER", "")
        if header and ":" not in header:
            problems.append("SMS_HTTP_AUTH_HEADER must look like 'Name: value'")
        try:
            if not isinstance(json.loads(cfg.get("SMS_HTTP_BODY") or "{}"), dict):
                problems.append("SMS_HTTP_BODY must be a JSON object")
        except ValueError:
            problems.append("SMS_HTTP_BODY is not valid JSON")
    return problems


def secret_setting(name: str, instance_dir: Path, production: bool) -> str:
    """A secret from the environment, `NAME_FILE`, or (development only) `instance/`."""
    value = env_str(name)
    file_name = env_str(f"{name}_FILE")
    if not value and file_name:
        value = Path(file_name).read_text().strip()
    if value:
        if production and len(value) < 32:
            raise ConfigError(f"{name} must be at least 32 characters in production")
        return value
    if production:
        raise ConfigError(f"{name} is required when WPOTP_ENV=production")
    # Development: generate once, keep in instance/ so restarts keep sessions and codes valid.
    path = instance_dir / name.lower()
    if not path.exists():
        instance_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


CONSOLE_LANGUAGES = ("en", "tr")


def valid_timezone(name: str) -> bool:
    """True for an IANA zone name the system's (or tzdata's) database knows, like Europe/Istanbul."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not name or name.startswith(("/", ".")) or ".." in name:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


class Config:
    """Production and development settings. Build with `Config.from_env()`."""

    TESTING = False

    @classmethod
    def from_env(cls) -> Config:
        cfg = cls()
        cfg.load()
        return cfg

    def load(self) -> None:
        self.WPOTP_ENV = env_str("WPOTP_ENV", "development")
        if self.WPOTP_ENV not in ("development", "production"):
            raise ConfigError(f"WPOTP_ENV must be development or production, not {self.WPOTP_ENV!r}")
        production = self.WPOTP_ENV == "production"
        self.INSTANCE_DIR = Path(env_str("WPOTP_INSTANCE_DIR", str(BASE_DIR / "instance")))

        self.SECRET_KEY = secret_setting("SECRET_KEY", self.INSTANCE_DIR, production)
        self.OTP_HASH_KEY = secret_setting("OTP_HASH_KEY", self.INSTANCE_DIR, production)
        self.SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", production)
        if production and not self.SESSION_COOKIE_SECURE:
            raise ConfigError("SESSION_COOKIE_SECURE=false is refused when WPOTP_ENV=production")
        self.SESSION_COOKIE_HTTPONLY = True
        self.SESSION_COOKIE_SAMESITE = "Lax"

        default_db = f"sqlite:///{self.INSTANCE_DIR / 'wpotp.db'}"
        self.SQLALCHEMY_DATABASE_URI = env_str("DATABASE_URL", default_db)
        # DATABASE_URL goes through PgBouncer in transaction mode (or another transaction pooler).
        self.DATABASE_TRANSACTION_POOLING = env_bool("DATABASE_TRANSACTION_POOLING", False)
        # A pooled connection that sat unused this many milliseconds is tested (SELECT 1) before it is
        # handed out; one used more recently is not (wpotp/__init__.py _ping_when_idle). 0: test on
        # every checkout (SQLAlchemy's pool_pre_ping). A dead connection that slips through fails its
        # request with a 503 and makes the pool drop every connection as old as it.
        self.DATABASE_PING_AFTER_MS = env_int("DATABASE_PING_AFTER_MS", 1000, minimum=0)
        # redis://, rediss://, unix:// or redis+sentinel://host:port[,host:port]/service_name[/db]
        # (wpotp/redis_url.py reads them all; every Redis client of wpotp comes from there).
        self.REDIS_URL = env_redis_url("REDIS_URL", "redis://127.0.0.1:6379/0")
        self.RATELIMIT_STORAGE_URI = env_str("RATELIMIT_STORAGE_URI", self.REDIS_URL)  # or any `limits` storage
        if self.RATELIMIT_STORAGE_URI.startswith("redis"):
            self.RATELIMIT_STORAGE_URI = env_redis_url("RATELIMIT_STORAGE_URI", self.REDIS_URL)
        self.REDIS_SENTINEL_PASSWORD = optional_secret("REDIS_SENTINEL_PASSWORD")
        # The send hand-off (sealed code + job) waits until this many replicas hold it (Redis WAIT),
        # so a failover to a replica cannot lose an OTP answered 201; 0 = do not wait. Default: 1
        # behind Sentinel (there is a replica to fail over to), else 0.
        sentinel = self.REDIS_URL.lower().startswith("redis+sentinel://")
        self.REDIS_MIN_REPLICAS = env_int("REDIS_MIN_REPLICAS", 1 if sentinel else 0, minimum=0)
        self.REDIS_REPLICA_TIMEOUT = env_int("REDIS_REPLICA_TIMEOUT", 500, minimum=1)  # ms the WAIT may take

        self.WPOTP_PROVIDER = env_str("WPOTP_PROVIDER", "sandbox")
        if self.WPOTP_PROVIDER not in ("sandbox", "cloud_api", "gateway"):
            raise ConfigError(f"WPOTP_PROVIDER must be sandbox, cloud_api or gateway, not {self.WPOTP_PROVIDER!r}")
        self.SANDBOX_RECEIPT_DELAY = env_int("SANDBOX_RECEIPT_DELAY", 1)
        self.load_whatsapp(production)

        self.API_RATE_LIMIT = env_limit("API_RATE_LIMIT", "120/minute")
        self.LOGIN_RATE_LIMIT = env_limit("LOGIN_RATE_LIMIT", "20/minute")
        self.PASSWORD_HASH_METHOD = env_hash_method("PASSWORD_HASH_METHOD", "scrypt", production)
        self.RECIPIENT_RATE_LIMIT = env_limit("RECIPIENT_RATE_LIMIT", "5/15minutes;10/day")
        self.APP_DAILY_SEND_CAP = env_int("APP_DAILY_SEND_CAP", 10000, minimum=1)
        self.SEND_RETRY_DELAYS = env_int_list("SEND_RETRY_DELAYS", "2,5,15,30,60")
        self.RESEND_MAX = env_int("RESEND_MAX", 3)
        self.load_fraud_guard()
        self.RESEND_INTERVAL = env_int("RESEND_INTERVAL", 30)
        # Channel `auto`: seconds without a delivery receipt before the same code goes by SMS (0: only
        # on "not on WhatsApp"); each app may set its own (docs/channels.md).
        self.FALLBACK_AFTER_SECONDS = env_int("FALLBACK_AFTER_SECONDS", 30, minimum=0)
        self.STUCK_QUEUED_AFTER = env_int("STUCK_QUEUED_AFTER", 60, minimum=5)
        # The batch send path (jobs/enqueue.py): N (16, the default) = the web tier appends sends to a
        # Redis list and drain jobs send up to N at a time, concurrently; 0 = one RQ job per OTP.
        self.SEND_BATCH = env_int("SEND_BATCH", 16, minimum=0)
        # The receipt queue (otp/receipts.py): N = the webhook endpoints queue receipts in Redis and a
        # drain job applies up to N in one transaction; 0 = each applied inline in the webhook request.
        self.RECEIPT_BATCH = env_int("RECEIPT_BATCH", 100, minimum=0)
        # Milliseconds a send or receipt drain job with nothing left waits for more before it ends (its
        # worker not in burst mode): at a steady rate one job keeps draining instead of one RQ job per
        # arrival (jobs/enqueue.py linger). 0 (the default): a drain job ends as soon as its list is
        # empty. Off by default: near the box's limit it cost the workers more CPU (docs/performance.md).
        self.DRAIN_LINGER_MS = env_int("DRAIN_LINGER_MS", 0, minimum=0)
        if self.RECEIPT_BATCH > 1000:
            raise ConfigError(f"RECEIPT_BATCH must be at most 1000, not {self.RECEIPT_BATCH}")
        self.SWEEP_INTERVAL = env_int("SWEEP_INTERVAL", 15, minimum=1)
        # Retention (wpotp/otp/retention.py, docs/operations.md): after RETENTION_DAYS (each app may set
        # its own) recipients are anonymised, attempts' IPs dropped, events and webhook deliveries deleted,
        # PURGE_BATCH rows per transaction, by a periodic job every RETENTION_INTERVAL seconds.
        self.RETENTION_DAYS = env_int("RETENTION_DAYS", 30, minimum=1)
        self.PURGE_BATCH = env_int("PURGE_BATCH", 1000, minimum=1)
        self.RETENTION_INTERVAL = env_int("RETENTION_INTERVAL", 3600, minimum=60)
        # Report rollups (wpotp/reports/rollups.py): hourly counts kept by the sweep; the last
        # ROLLUP_RECHECK_HOURS are rolled again once an hour for receipts that land late.
        self.REPORT_ROLLUPS = env_bool("REPORT_ROLLUPS", True)
        self.ROLLUP_RECHECK_HOURS = env_int("ROLLUP_RECHECK_HOURS", 48, minimum=0)
        self.MAX_CONTENT_LENGTH = env_int("MAX_BODY_BYTES", 16 * 1024, minimum=1024)
        self.WEBHOOK_ALLOW_PRIVATE = env_bool("WEBHOOK_ALLOW_PRIVATE", False)
        # Not an environment setting: development may post to a receiver on this machine, production never.
        self.WEBHOOK_ALLOW_LOOPBACK = not production
        self.WEBHOOK_TIMEOUT = env_int("WEBHOOK_TIMEOUT", 10, minimum=1)
        self.WEBHOOK_CA_BUNDLE = env_str("WEBHOOK_CA_BUNDLE")
        if self.WEBHOOK_CA_BUNDLE and not Path(self.WEBHOOK_CA_BUNDLE).is_file():
            raise ConfigError(f"WEBHOOK_CA_BUNDLE must be a PEM file of CA certificates: {self.WEBHOOK_CA_BUNDLE!r}")
        self.WEBHOOK_RETRY_DELAYS = env_int_list("WEBHOOK_RETRY_DELAYS", "10,30,120,600,1800,3600,10800,21600,43200")
        self.load_console()
        self.TRUSTED_PROXIES = env_int("TRUSTED_PROXIES", 0)
        self.load_metrics()
        self.LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()

        self.WORKER_THREADS = env_int("WORKER_THREADS", 16, minimum=1)
        self.WORKER_STOP_TIMEOUT = env_int("WORKER_STOP_TIMEOUT", 20, minimum=0)
        self.PORT = env_int("PORT", 8000, minimum=1)
        self.WEB_CONCURRENCY = env_int("WEB_CONCURRENCY", 2, minimum=1)

    def load_metrics(self) -> None:
        """Who may read /metrics (wpotp/metrics.py): addresses in METRICS_ALLOW, or a bearer METRICS_TOKEN."""
        self.METRICS_ALLOW = env_networks("METRICS_ALLOW", "127.0.0.1/32,::1/128")
        self.METRICS_TOKEN = optional_secret("METRICS_TOKEN")
        if self.METRICS_TOKEN and len(self.METRICS_TOKEN) < 16:
            raise ConfigError("METRICS_TOKEN must be at least 16 characters (e.g. `openssl rand -hex 24`)")

    def load_console(self) -> None:
        """The console's language and time zone defaults (SPEC §12; each user may choose their own)."""
        self.CONSOLE_LANGUAGE = env_str("CONSOLE_LANGUAGE").replace("-", "_")
        if self.CONSOLE_LANGUAGE not in ("", *CONSOLE_LANGUAGES):
            raise ConfigError(f"CONSOLE_LANGUAGE must be one of {', '.join(CONSOLE_LANGUAGES)} "
                              f"(or empty: from the browser), not {self.CONSOLE_LANGUAGE!r}")
        self.CONSOLE_TIMEZONE = env_str("CONSOLE_TIMEZONE", "UTC")
        if not valid_timezone(self.CONSOLE_TIMEZONE):
            raise ConfigError(f"CONSOLE_TIMEZONE must be an IANA time zone such as Europe/Istanbul, "
                              f"not {self.CONSOLE_TIMEZONE!r}")

    def load_fraud_guard(self) -> None:
        """The fraud guard against SMS pumping (docs/fraud.md); each app may override every threshold."""
        self.FRAUD_GUARD = env_bool("FRAUD_GUARD", True)
        self.FRAUD_COUNTRY_LIMIT = env_limit("FRAUD_COUNTRY_LIMIT", "1000/hour")
        self.FRAUD_PREFIX_LIMIT = env_limit("FRAUD_PREFIX_LIMIT", "60/hour")
        self.FRAUD_PREFIX_DIGITS = env_int("FRAUD_PREFIX_DIGITS", 5, minimum=1)
        if self.FRAUD_PREFIX_DIGITS > 12:
            raise ConfigError(f"FRAUD_PREFIX_DIGITS must be at most 12, not {self.FRAUD_PREFIX_DIGITS}")
        self.FRAUD_UNVERIFIED_PREFIX = env_int("FRAUD_UNVERIFIED_PREFIX", 20, minimum=1)
        self.FRAUD_UNVERIFIED_COUNTRY = env_int("FRAUD_UNVERIFIED_COUNTRY", 200, minimum=1)
        self.FRAUD_CONVERSION_WINDOW = env_int("FRAUD_CONVERSION_WINDOW", 3600, minimum=60)
        self.FRAUD_BLOCK_SECONDS = env_int("FRAUD_BLOCK_SECONDS", 3600, minimum=60)

    def load_whatsapp(self, production: bool) -> None:
        """Cloud API and gateway settings. Their completeness is checked by `provider_problems`."""
        self.WHATSAPP_GRAPH_URL = env_str("WHATSAPP_GRAPH_URL", "https://graph.facebook.com").rstrip("/")
        self.WHATSAPP_API_VERSION = env_str("WHATSAPP_API_VERSION", "v23.0")
        self.WHATSAPP_PHONE_NUMBER_ID = env_str("WHATSAPP_PHONE_NUMBER_ID")
        self.WHATSAPP_WABA_ID = env_str("WHATSAPP_WABA_ID")
        self.WHATSAPP_TOKEN = optional_secret("WHATSAPP_TOKEN")
        self.WHATSAPP_APP_SECRET = optional_secret("WHATSAPP_APP_SECRET")
        self.WHATSAPP_VERIFY_TOKEN = optional_secret("WHATSAPP_VERIFY_TOKEN")
        self.WHATSAPP_MPS = env_int("WHATSAPP_MPS", 80, minimum=1)
        self.WHATSAPP_MPS_MARGIN_MS = env_int("WHATSAPP_MPS_MARGIN_MS", 50)
        self.GATEWAY_KIND = env_str("GATEWAY_KIND").lower()
        self.GATEWAY_URL = env_str("GATEWAY_URL").rstrip("/")
        self.GATEWAY_API_KEY = optional_secret("GATEWAY_API_KEY")
        self.GATEWAY_SESSION = env_str("GATEWAY_SESSION")
        # The gateway posts its acks to /webhooks/gateway/<token>: the token is what authenticates it.
        self.GATEWAY_WEBHOOK_TOKEN = optional_secret("GATEWAY_WEBHOOK_TOKEN") or (
            "" if production else secret_setting("GATEWAY_WEBHOOK_TOKEN", self.INSTANCE_DIR, False))
        # WAHA can sign its webhooks (HMAC-SHA512); when this is set, unsigned acks are refused.
        self.GATEWAY_WEBHOOK_HMAC_KEY = optional_secret("GATEWAY_WEBHOOK_HMAC_KEY")
        self.PROVIDER_TIMEOUT = env_int("PROVIDER_TIMEOUT", 10, minimum=1)
        self.load_sms()

    def load_sms(self) -> None:
        """The SMS channel's provider (SMS_PROVIDER) and each provider's settings (`sms_provider_problems`)."""
        self.SMS_PROVIDER = env_str("SMS_PROVIDER", "sandbox")
        if self.SMS_PROVIDER not in SMS_PROVIDERS:
            raise ConfigError(f"SMS_PROVIDER must be one of {', '.join(SMS_PROVIDERS)}, not {self.SMS_PROVIDER!r}")
        # The public base URL (https://otp.example.com) the providers post delivery reports to; unset:
        # sends name no callback (configure it in the provider's console) and Twilio's signature is
        # checked against the URL as this server saw it.
        self.SMS_CALLBACK_BASE_URL = env_str("SMS_CALLBACK_BASE_URL").rstrip("/")
        self.TWILIO_API_URL = env_str("TWILIO_API_URL", "https://api.twilio.com").rstrip("/")
        self.TWILIO_ACCOUNT_SID = env_str("TWILIO_ACCOUNT_SID")
        self.TWILIO_AUTH_TOKEN = optional_secret("TWILIO_AUTH_TOKEN")
        self.TWILIO_FROM = env_str("TWILIO_FROM")
        self.VONAGE_API_URL = env_str("VONAGE_API_URL", "https://rest.nexmo.com").rstrip("/")
        self.VONAGE_API_KEY = env_str("VONAGE_API_KEY")
        self.VONAGE_API_SECRET = optional_secret("VONAGE_API_SECRET")
        self.VONAGE_FROM = env_str("VONAGE_FROM")
        self.VONAGE_SIGNATURE_SECRET = optional_secret("VONAGE_SIGNATURE_SECRET")
        self.VONAGE_SIGNATURE_METHOD = env_str("VONAGE_SIGNATURE_METHOD", "md5hash").lower()
        if self.VONAGE_SIGNATURE_METHOD not in ("md5hash", "md5", "sha1", "sha256", "sha512"):
            raise ConfigError("VONAGE_SIGNATURE_METHOD must be md5hash, md5, sha1, sha256 or sha512, "
                              f"not {self.VONAGE_SIGNATURE_METHOD!r}")
        self.VONAGE_WEBHOOK_TOKEN = optional_secret("VONAGE_WEBHOOK_TOKEN")
        self.SMS_HTTP_URL = env_str("SMS_HTTP_URL")
        self.SMS_HTTP_AUTH_HEADER = optional_secret("SMS_HTTP_AUTH_HEADER")
        self.SMS_HTTP_BODY = env_str("SMS_HTTP_BODY")
        self.SMS_HTTP_WEBHOOK_TOKEN = optional_secret("SMS_HTTP_WEBHOOK_TOKEN")

    # Flask reads these names from the config object.
    def as_flask_config(self) -> dict:
        cfg = {k: getattr(self, k) for k in dir(self) if k.isupper()}
        from wpotp.redis_url import APP_POOL, limiter_storage  # here, not at the top: wpotp imports config

        storage_uri, storage_options = limiter_storage(self.RATELIMIT_STORAGE_URI, self.REDIS_SENTINEL_PASSWORD,
                                                       **APP_POOL)
        cfg.update(
            SQLALCHEMY_ENGINE_OPTIONS=engine_options(self.SQLALCHEMY_DATABASE_URI, self.DATABASE_TRANSACTION_POOLING,
                                                     ping_every_checkout=self.DATABASE_PING_AFTER_MS == 0),
            # A Sentinel URL becomes the form Flask-Limiter (`limits`) takes, plus options (redis_url.py).
            RATELIMIT_STORAGE_URI=storage_uri,
            RATELIMIT_STORAGE_OPTIONS=storage_options,
            RATELIMIT_STRATEGY="fixed-window",
            # wpotp sets RateLimit-* itself (wpotp/api/__init__.py) and Retry-After only on a 429.
            RATELIMIT_HEADERS_ENABLED=False,
            RATELIMIT_SWALLOW_ERRORS=False,
            RATELIMIT_KEY_PREFIX="wpotp",
        )
        return cfg


class TestConfig(Config):
    """Settings for the test suite: a throw-away database, Redis db 15, receipts without delay."""

    TESTING = True
    __test__ = False  # not a pytest test class

    def __init__(self, database_url: str, instance_dir: Path, **overrides):
        self._database_url = database_url
        self._instance_dir = instance_dir
        self._overrides = overrides

    def load(self) -> None:
        os.environ.setdefault("WPOTP_INSTANCE_DIR", str(self._instance_dir))
        super().load()
        self.WPOTP_ENV = "development"
        self.INSTANCE_DIR = self._instance_dir
        self.SQLALCHEMY_DATABASE_URI = self._database_url
        self.REDIS_URL = self.RATELIMIT_STORAGE_URI = env_str("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
        self.SANDBOX_RECEIPT_DELAY = 0
        self.RECEIPT_BATCH = 0  # receipts applied in the webhook request; the queue's tests turn it on
        self.API_RATE_LIMIT = "100000/minute"
        # The fraud guard stays on, with thresholds no other test reaches; tests/otp/test_fraud.py
        # sets each app's own.
        self.FRAUD_COUNTRY_LIMIT = self.FRAUD_PREFIX_LIMIT = "1000000/hour"
        self.FRAUD_UNVERIFIED_PREFIX = self.FRAUD_UNVERIFIED_COUNTRY = 1000000
        self.WEBHOOK_ALLOW_PRIVATE = True
        # Console tests sign in hundreds of times: one pbkdf2 round instead of ~0.3 s of scrypt each.
        self.PASSWORD_HASH_METHOD = "pbkdf2:sha256:1"  # noqa: S105  (a method name, not a password)
        for key, value in self._overrides.items():
            setattr(self, key, value)


def engine_options(url: str, transaction_pooling: bool = False, ping_every_checkout: bool = True) -> dict:
    if url.startswith("sqlite"):
        # Writers wait for each other instead of failing with "database is locked". No cap on the
        # pool (pool_size=0): a thread holding the write lock may need a second connection (the
        # configuration cache reads on its own session), and with QueuePool's 5 + 10 a worker of
        # 16 threads could take them all waiting for that lock: every writer stalled until a
        # 30 s timeout (issue 18). SQLite connections are files; one per thread, two at most.
        return {"connect_args": {"timeout": 30, "check_same_thread": False}, "pool_size": 0}
    options = {"pool_pre_ping": ping_every_checkout, "pool_size": 10, "max_overflow": 20, "pool_timeout": 30}
    if transaction_pooling:
        # PgBouncer in transaction mode (before 1.21, or without max_prepared_statements) hands each
        # transaction whichever server connection is free: a statement psycopg prepared on one is
        # unknown on the next ("prepared statement _pg3_0 does not exist"). prepare_threshold=None:
        # psycopg never prepares server-side. wpotp keeps no other session state (no SET, advisory
        # lock, LISTEN or WITH HOLD cursor), so nothing else depends on keeping a server connection.
        options["connect_args"] = {"prepare_threshold": None}
    return options
