"""The providers' outbound HTTP session honours the environment's proxy settings, which it
reads once per origin instead of on every call."""

from __future__ import annotations

import threading

import pytest

from tests.doubles import HttpDouble
from wpotp.providers import http
from wpotp.providers.base import ProviderError

PROXY_VARS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy",
              "NO_PROXY", "no_proxy")


@pytest.fixture
def clean_env(monkeypatch):
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def in_new_thread(app, func):
    """Each thread has its own session: a new thread starts with nothing read yet."""
    out: dict = {}

    def run():
        with app.app_context():
            try:
                out["value"] = func()
            except Exception as exc:  # handed back to the test
                out["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    if "error" in out:
        raise out["error"]
    return out.get("value")


def test_requests_go_through_the_environments_proxy(app, clean_env):
    with HttpDouble() as proxy:
        clean_env.setenv("HTTP_PROXY", proxy.url)

        def two_calls():
            return [http.request("POST", "http://graph.invalid/v1/messages", json={"n": n}).status_code
                    for n in range(2)]

        assert in_new_thread(app, two_calls) == [200, 200]
    assert [seen.path for seen in proxy.seen] == ["http://graph.invalid/v1/messages"] * 2
    assert [seen.json for seen in proxy.seen] == [{"n": 0}, {"n": 1}]


def test_no_proxy_hosts_are_reached_directly(app, clean_env):
    with HttpDouble() as proxy, HttpDouble() as target:
        clean_env.setenv("HTTP_PROXY", proxy.url)
        clean_env.setenv("NO_PROXY", "127.0.0.1")
        assert in_new_thread(app, lambda: http.request("GET", f"{target.url}/direct").status_code) == 200
        assert [seen.path for seen in target.seen] == ["/direct"]
        assert proxy.seen == []


def test_without_a_proxy_an_unknown_host_is_a_retryable_provider_error(app, clean_env):
    with pytest.raises(ProviderError) as caught:
        in_new_thread(app, lambda: http.request("GET", "http://graph.invalid/x", timeout=2))
    assert caught.value.permanent is False
