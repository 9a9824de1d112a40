"""wpotp/redis_url.py: the one reader of REDIS_URL's forms, and what config.py makes of them."""

from __future__ import annotations

import pytest

from config import Config, ConfigError
from wpotp.redis_url import (
    APP_POOL,
    RedisUrlError,
    check_redis_url,
    limiter_storage,
    parse_sentinel_url,
    redis_from_url,
    server_identity,
)


def test_a_sentinel_url_names_its_sentinels_service_database_and_credentials():
    target = parse_sentinel_url("redis+sentinel://app:s%40cret@10.0.0.1:26379,10.0.0.2:26380/wpotp/4")
    assert target.sentinels == [("10.0.0.1", 26379), ("10.0.0.2", 26380)]
    assert (target.service_name, target.db, target.username, target.password) == ("wpotp", 4, "app", "s@cret")
    assert parse_sentinel_url("redis+sentinel://h:1/wpotp").db == 0


@pytest.mark.parametrize("url", ["redis+sentinel://h/wpotp", "redis+sentinel://h:1/", "redis+sentinel://h:1/a/b",
                                 "redis+sentinel://h:1/a/1/2", "redis+sentinel:///wpotp", "http://h:1/0", "h:6379"])
def test_malformed_redis_urls_are_refused(url):
    with pytest.raises(RedisUrlError):
        check_redis_url(url)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://:pw@h:6380/1", "unix:///run/redis.sock?db=2",
                                 "redis+sentinel://:pw@h1:26379,h2:26379/wpotp/3"])
def test_the_documented_forms_are_taken(url):
    check_redis_url(url)


def test_the_limiter_gets_the_sentinel_form_limits_reads_and_the_rest_as_options():
    uri, options = limiter_storage("redis+sentinel://app:pw@h1:26379,h2:26380/wpotp/3", "sentinel-pw", **APP_POOL)
    assert uri == "redis+sentinel://h1:26379,h2:26380/wpotp"  # no /3 (limits would read service "wpotp3"), no password
    assert options["db"] == 3 and options["use_replicas"] is False
    assert (options["username"], options["password"]) == ("app", "pw")
    # The sentinels get their own password (or none), never the servers'.
    assert options["sentinel_kwargs"]["password"] == "sentinel-pw" and options["sentinel_kwargs"]["username"] is None
    assert options["socket_timeout"] == APP_POOL["socket_timeout"]


def test_a_plain_url_reaches_the_limiter_as_it_is():
    assert limiter_storage("redis://127.0.0.1:6379/2") == ("redis://127.0.0.1:6379/2", {})
    assert limiter_storage("memory://") == ("memory://", {})


def test_two_sentinel_clients_are_the_same_server_only_for_the_same_service_and_database():
    a = redis_from_url("redis+sentinel://127.0.0.1:26379/wpotp/1", **APP_POOL)  # nothing connects yet
    same = redis_from_url("redis+sentinel://127.0.0.1:26379/wpotp/1", **APP_POOL)
    other_db = redis_from_url("redis+sentinel://127.0.0.1:26379/wpotp/2", **APP_POOL)
    other_service = redis_from_url("redis+sentinel://127.0.0.1:26379/other/1", **APP_POOL)
    assert server_identity(a) == server_identity(same)
    assert server_identity(a) != server_identity(other_db)
    assert server_identity(a) != server_identity(other_service)
    assert a.connection_pool.connection_kwargs["socket_timeout"] == APP_POOL["socket_timeout"]


@pytest.fixture
def redis_env(monkeypatch, tmp_path):
    for name in ("REDIS_URL", "RATELIMIT_STORAGE_URI", "REDIS_MIN_REPLICAS", "WPOTP_ENV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WPOTP_INSTANCE_DIR", str(tmp_path))
    return monkeypatch


def test_a_malformed_redis_url_stops_start_up_naming_the_variable(redis_env):
    redis_env.setenv("REDIS_URL", "redis+sentinel://h1/wpotp")
    with pytest.raises(ConfigError, match="^REDIS_URL: "):
        Config.from_env()


def test_behind_sentinel_a_send_waits_for_one_replica_by_default(redis_env):
    assert Config.from_env().REDIS_MIN_REPLICAS == 0
    redis_env.setenv("REDIS_URL", "redis+sentinel://h1:26379/wpotp/0")
    config = Config.from_env()
    assert config.REDIS_MIN_REPLICAS == 1
    flask = config.as_flask_config()
    assert flask["RATELIMIT_STORAGE_URI"] == "redis+sentinel://h1:26379/wpotp"
    assert flask["RATELIMIT_STORAGE_OPTIONS"]["db"] == 0
    redis_env.setenv("REDIS_MIN_REPLICAS", "0")
    assert Config.from_env().REDIS_MIN_REPLICAS == 0


def test_a_send_short_of_replicas_answers_503_and_leaves_nothing_behind(make_app, app):
    """REDIS_MIN_REPLICAS=1 on a Redis without replicas (the suite's): the seal's WAIT falls short,
    so the send is undone before anything is queued."""
    from sqlalchemy import func, select

    from tests.helpers import make_key
    from wpotp.extensions import db, redis_client
    from wpotp.models import Otp

    web = make_app(REDIS_MIN_REPLICAS=1, REDIS_REPLICA_TIMEOUT=20)
    key = make_key(web)
    answer = web.test_client().post("/v1/otp/send", headers=key.headers, json={"recipient": "+905556300001"})
    with web.app_context():
        rows = db.session.scalar(select(func.count()).select_from(Otp))
        keys = [k.decode() for k in redis_client.conn.keys("wpotp:*")]
        queued = redis_client.conn.llen("rq:queue:otp")
    assert answer.status_code == 503 and answer.get_json()["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert rows == 0
    assert not [k for k in keys if k.startswith(("wpotp:seal:", "wpotp:sendjob:", "wpotp:sendq"))], keys
    assert queued == 0
