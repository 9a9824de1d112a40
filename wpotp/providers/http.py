"""The one outbound HTTP session of the process: pooled connections, a timeout on every call,
and transport failures turned into retryable ProviderErrors."""

from __future__ import annotations

import threading

import requests
from flask import current_app
from requests.adapters import HTTPAdapter

from .base import ProviderError

_local = threading.local()


class _Session(requests.Session):
    """A Session that reads the environment's proxy and CA-bundle settings (HTTPS_PROXY,
    NO_PROXY, REQUESTS_CA_BUNDLE, ...) once per origin, not on every call: requests walks
    os.environ on each request, about a tenth of a send job's CPU."""

    def __init__(self) -> None:
        super().__init__()
        self._env_settings: dict[str, dict] = {}

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        if proxies or stream is not None or verify is not None or cert is not None:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        key = "/".join(url.split("/", 3)[:3])  # scheme://host[:port]
        found = self._env_settings.get(key)
        if found is None:
            found = self._env_settings[key] = super().merge_environment_settings(url, {}, None, None, None)
        return {**found, "proxies": dict(found["proxies"])}


def session() -> requests.Session:
    """One pooled session per thread (requests.Session is not safe to share across threads)."""
    sess = getattr(_local, "session", None)
    if sess is None:
        sess = _Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=0)
        sess.mount("http://", adapter)
        sess.mount("https://", adapter)
        _local.session = sess
    return sess


def request(method: str, url: str, *, timeout: float | None = None, **kwargs) -> requests.Response:
    """Send a request; a timeout or a refused connection is a retryable ProviderError."""
    limit = timeout or current_app.config["PROVIDER_TIMEOUT"]
    try:
        return session().request(method, url, timeout=(min(5, limit), limit), allow_redirects=False, **kwargs)
    except requests.Timeout:
        raise ProviderError(f"no answer within {limit} s", permanent=False, code="timeout") from None
    except requests.RequestException as exc:
        raise ProviderError(f"could not reach the provider: {type(exc).__name__}", permanent=False,
                            code="network") from None
