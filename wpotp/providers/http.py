"""The one outbound HTTP session of the process: pooled connections, a timeout on every call,
and transport failures turned into retryable ProviderErrors."""

from __future__ import annotations

import threading

import requests
from flask import current_app
from requests.adapters import HTTPAdapter

from .base import ProviderError

_local = threading.local()


def session() -> requests.Session:
    """One pooled session per thread (requests.Session is not safe to share across threads)."""
    sess = getattr(_local, "session", None)
    if sess is None:
        sess = requests.Session()
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
