"""The providers' outbound HTTP client honours the environment's proxy settings (read once per
origin, and again when they change), keeps its connections alive across threads, and sends what
requests would have sent."""

from __future__ import annotations

import base64
import threading

import pytest

from tests.doubles import HttpDouble, Reply
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


def test_a_connection_is_kept_alive_across_the_threads_of_successive_drain_jobs(app, clean_env):
    """Each drain job has threads of its own: the pool is the process's, so the next job's
    threads reuse the connection the last one opened instead of a new one per thread."""
    with HttpDouble() as target:
        for n in range(3):
            assert in_new_thread(app, lambda n=n: http.request("POST", f"{target.url}/m", json={"n": n}).ok)
    assert [seen.json for seen in target.seen] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert len({seen.peer for seen in target.seen}) == 1


def test_a_proxy_set_after_a_call_applies_to_the_next_call(app, clean_env):
    with HttpDouble() as proxy:
        def call():
            return http.request("GET", "http://graph.invalid/after").status_code

        with pytest.raises(ProviderError):
            in_new_thread(app, call)  # no proxy yet: the name does not resolve
        clean_env.setenv("HTTP_PROXY", proxy.url)
        assert in_new_thread(app, call) == 200
    assert [seen.path for seen in proxy.seen] == ["http://graph.invalid/after"]


def test_form_bodies_query_parameters_and_basic_auth_are_sent_as_requests_sends_them(app, clean_env):
    latin = Reply(200, "caf\xe9".encode("latin-1"), {"Content-Type": "text/plain; charset=latin-1"})
    with HttpDouble(lambda seen: latin) as target:
        answer = in_new_thread(app, lambda: http.request(
            "POST", f"{target.url}/form?a=1", data={"To": "+905551112233", "Body": "kod: 1 2"},
            params={"b": ["x", "y"]}, auth=("AC1", "s\xe9cret")))
        [seen] = target.seen
    assert seen.path == "/form?a=1&b=x&b=y"
    assert seen.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert seen.body == b"To=%2B905551112233&Body=kod%3A+1+2"
    assert seen.headers["Authorization"] == "Basic " + base64.b64encode("AC1:s\xe9cret".encode("latin-1")).decode()
    assert answer.status_code == 200 and answer.ok and answer.text == "caf\xe9"
