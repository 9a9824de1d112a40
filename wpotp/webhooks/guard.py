"""Refuse webhook URLs that point into the server's own networks (SSRF), unless allowed.

Checked when the URL is set and again before every delivery (DNS may have changed).
Loopback alone may be allowed (WPOTP_ENV=development: a receiver under test on localhost).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit


class UnsafeUrl(ValueError):
    """The URL is malformed or resolves to an address webhooks may not reach."""


def check_url(url: str, allow_private: bool, allow_loopback: bool = False) -> None:
    """Raise UnsafeUrl unless `url` is http(s), without credentials, and every address its host
    resolves to is global (or loopback when `allow_loopback`; anything when `allow_private`)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeUrl("the URL must be http:// or https:// with a host")
    if parts.username or parts.password:
        raise UnsafeUrl("the URL must not carry credentials")
    if len(url) > 2048:
        raise UnsafeUrl("the URL is longer than 2048 characters")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeUrl("the URL's port is not a number from 1 to 65535") from None
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise UnsafeUrl(f"the host {parts.hostname!r} does not resolve") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if _internal(address) and not (allow_loopback and _loopback(address)):
            raise UnsafeUrl(f"{parts.hostname} resolves to {address}, a loopback, private or link-local "
                            "address (set WEBHOOK_ALLOW_PRIVATE=true to allow it)")


def _loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


def _internal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    # Anything not globally routable: private, loopback, link-local, shared address space
    # (100.64.0.0/10, where some clouds keep their metadata service), reserved, unspecified.
    return not address.is_global or address.is_multicast
