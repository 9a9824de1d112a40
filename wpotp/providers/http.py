"""Outbound HTTP: the providers' pooled client (a timeout on every call, transport failures
turned into retryable ProviderErrors), and the webhooks' connections pinned to the address
their SSRF guard checked."""

from __future__ import annotations

import json as _json
import os
import threading
from urllib.parse import urlencode, urlsplit, urlunsplit

import requests
import urllib3
from flask import current_app
from requests.adapters import HTTPAdapter
from requests.utils import DEFAULT_CA_BUNDLE_PATH, get_environ_proxies, select_proxy
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, ReadTimeoutError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from .base import ProviderError

_local = threading.local()


# --- the providers' client ----------------------------------------------------------------------
#
# urllib3 (requests' own transport) called directly: a provider call through requests.Session
# cost about twice the CPU of the same call through urllib3 (requests' hooks, cookie jar, adapter
# and settings merge on every call; figures in docs/performance.md), and it is most of
# a send job's CPU. The environment still decides what requests would have decided: HTTP(S)_PROXY,
# ALL_PROXY and NO_PROXY (through requests.utils, read again when they change) and the CA bundle
# (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, else requests' certifi bundle). One pool manager per
# process (thread-safe), so keep-alive connections outlive the threads of a drain job.

POOL_SIZE = 32  # connections kept per origin; more in flight open (and then drop) extra ones
_ENV_VARS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy",
             "NO_PROXY", "no_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")  # what decides a route
_HEADERS = {"User-Agent": "wpotp", "Accept": "*/*", "Accept-Encoding": "gzip, deflate"}
_routes: dict[tuple, urllib3.PoolManager] = {}  # (origin, _ENV_VARS' values) -> its manager
_managers: dict[tuple, urllib3.PoolManager] = {}  # (proxy, CA bundle) -> one manager
_lock = threading.Lock()


class Response:
    """A provider's answer: what the providers read of it, as requests.Response names it."""

    __slots__ = ("status_code", "reason", "headers", "content")

    def __init__(self, status_code: int, reason: str, headers, content: bytes) -> None:
        self.status_code, self.reason, self.headers, self.content = status_code, reason, headers, content

    @property
    def ok(self) -> bool:
        return self.status_code < 400

    @property
    def text(self) -> str:
        charset = "utf-8"
        for part in (self.headers.get("Content-Type") or "").split(";")[1:]:
            name, _, value = part.strip().partition("=")
            if name.lower() == "charset" and value:
                charset = value.strip("\"' ")
        try:
            return self.content.decode(charset, errors="replace")
        except LookupError:  # an unknown charset
            return self.content.decode("utf-8", errors="replace")

    def json(self):
        """The body as JSON; a ValueError when it is not (as requests' JSONDecodeError is)."""
        return _json.loads(self.content)


def _route(url: str) -> urllib3.PoolManager:
    """The pool manager for `url` (through its proxy, if the environment names one now)."""
    origin = "/".join(url.split("/", 3)[:3])  # scheme://host[:port]
    key = (origin, tuple(os.environ.get(name) for name in _ENV_VARS))
    found = _routes.get(key)
    if found is None:
        proxy = select_proxy(url, get_environ_proxies(url))
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or DEFAULT_CA_BUNDLE_PATH
        with _lock:
            manager = _managers.get((proxy, bundle))
            if manager is None:
                tls = {"cert_reqs": "CERT_REQUIRED",
                       ("ca_cert_dir" if os.path.isdir(bundle) else "ca_certs"): bundle}
                manager = (urllib3.ProxyManager(proxy, num_pools=8, maxsize=POOL_SIZE, **tls) if proxy else
                           urllib3.PoolManager(num_pools=8, maxsize=POOL_SIZE, **tls))
                _managers[(proxy, bundle)] = manager
            found = _routes[key] = manager
    return found


def request(method: str, url: str, *, timeout: float | None = None, json: object = None,
            data: dict | str | bytes | None = None, params: dict | None = None, headers: dict | None = None,
            auth: tuple[str, str] | None = None) -> Response:
    """Send a request (no retries, no redirects); a timeout or a failed connection is a retryable
    ProviderError. `json`, `data` (a dict is form-encoded), `params`, `headers` and `auth` (HTTP
    basic) mean what they mean to requests."""
    limit = timeout or current_app.config["PROVIDER_TIMEOUT"]
    sent = {**_HEADERS, **(headers or {})}
    body: bytes | str | None = None
    if json is not None:
        body = _json.dumps(json, allow_nan=False).encode()
        sent.setdefault("Content-Type", "application/json")
    elif isinstance(data, dict):
        body = urlencode(list(data.items()), doseq=True)
        sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
    elif data is not None:
        body = data
    if auth is not None:
        sent["Authorization"] = urllib3.make_headers(basic_auth=f"{auth[0]}:{auth[1]}")["authorization"]
    if params:
        url = f"{url}{'&' if '?' in url else '?'}{urlencode(list(params.items()), doseq=True)}"
    connect = min(5, limit)
    try:
        raw = _route(url).request(method, url, body=body, headers=sent, retries=False, redirect=False,
                              timeout=urllib3.Timeout(connect=connect, read=limit))
    except NewConnectionError as exc:  # refused, unreachable, unknown name (urllib3 files it under ConnectTimeoutError)
        raise _unreachable(exc) from None
    except ConnectTimeoutError:  # nothing was sent: the provider never saw this request
        raise ProviderError(f"could not connect within {connect} s", permanent=False,
                            code="connect_timeout") from None
    except (ReadTimeoutError, Urllib3Timeout):
        raise ProviderError(f"no answer within {limit} s", permanent=False, code="timeout") from None
    except (HTTPError, OSError, ValueError) as exc:
        raise _unreachable(exc) from None
    return Response(raw.status, raw.reason or "", raw.headers, raw.data)


def _unreachable(exc: Exception) -> ProviderError:
    return ProviderError(f"could not reach the provider: {type(exc).__name__}", permanent=False, code="network")


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
