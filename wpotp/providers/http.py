"""Outbound HTTP: the providers' pooled session (a timeout on every call, transport failures
turned into retryable ProviderErrors), and the webhooks' connections pinned to the address
their SSRF guard checked."""

from __future__ import annotations

import threading
from urllib.parse import urlsplit, urlunsplit

import requests
from flask import current_app
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError

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
    except requests.ConnectTimeout:  # nothing was sent: the provider never saw this request
        raise ProviderError(f"could not connect within {min(5, limit)} s", permanent=False,
                            code="connect_timeout") from None
    except requests.Timeout:
        raise ProviderError(f"no answer within {limit} s", permanent=False, code="timeout") from None
    except requests.RequestException as exc:
        raise ProviderError(f"could not reach the provider: {type(exc).__name__}", permanent=False,
                            code="network") from None


class PinnedAdapter(HTTPAdapter):
    """Connects to the address the URL names and speaks TLS to the name in the Host header (SNI
    and the certificate check), as `curl --connect-to` does. The caller resolved and checked the
    name (the webhooks' SSRF guard): resolving it again here would let DNS answer differently
    (rebinding)."""

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        name = urlsplit("//" + request.headers.get("Host", "")).hostname
        if host_params["scheme"] == "https" and name and name != host_params["host"]:
            pool_kwargs["server_hostname"] = pool_kwargs["assert_hostname"] = name
        return host_params, pool_kwargs


def pinned_session() -> requests.Session:
    """The webhooks' per-thread session: PinnedAdapter, and no proxy or CA bundle from the
    environment (the guard checked the very address connected to)."""
    sess = getattr(_local, "pinned", None)
    if sess is None:
        sess = _local.pinned = requests.Session()
        sess.trust_env = False
        adapter = PinnedAdapter(pool_connections=4, pool_maxsize=4, max_retries=0)
        sess.mount("http://", adapter)
        sess.mount("https://", adapter)
    return sess


def post_pinned(url: str, addresses: list[str], *, timeout: float, verify: bool | str = True,
                **kwargs) -> requests.Response:
    """POST `url` over a connection to one of `addresses` (in order: the next only when the
    connection itself failed, so nothing was sent), never to a fresh resolution of its host.
    Streamed, no redirects; the caller closes the response."""
    for address in addresses[:-1]:
        try:
            return _post_to(url, address, timeout, verify, **kwargs)
        except requests.ConnectionError as exc:
            if not _nothing_sent(exc):
                raise
    return _post_to(url, addresses[-1], timeout, verify, **kwargs)


def _post_to(url: str, address: str, timeout: float, verify: bool | str, headers: dict, **kwargs):
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return pinned_session().post(urlunsplit(parts._replace(netloc=netloc)), headers={**headers, "Host": parts.netloc},
                                 timeout=(min(5, timeout), timeout), verify=verify, allow_redirects=False,
                                 stream=True, **kwargs)


def _nothing_sent(exc: requests.ConnectionError) -> bool:
    """The TCP connection was refused, unreachable or timed out: the request never left."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(exc, requests.ConnectTimeout) or isinstance(reason, NewConnectionError)
