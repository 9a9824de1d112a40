"""Refuse webhook URLs that point into the server's own networks (SSRF), unless allowed.

Checked when the URL is set and again before every delivery (DNS may have changed). A delivery
connects to the addresses its check returned and never resolves the name again (DNS rebinding).
Loopback alone may be allowed (WPOTP_ENV=development: a receiver under test on localhost).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import SplitResult, urlsplit


class UnsafeUrl(ValueError):
    """The URL is malformed or resolves to an address webhooks may not reach."""


class Unresolvable(UnsafeUrl):
    """The URL's host name does not resolve (now)."""


def check_url(url: str, allow_private: bool, allow_loopback: bool = False) -> None:
    """Raise UnsafeUrl unless `url` is http(s), without credentials, and every address its host
    resolves to is global (or loopback when `allow_loopback`; anything when `allow_private`)."""
    parts, port = _parse(url)
    if not allow_private:
        _check(parts.hostname, _resolve(parts.hostname, port), allow_loopback)


def checked_addresses(url: str, allow_private: bool, allow_loopback: bool = False) -> list[str]:
    """check_url's rule, for a delivery: the addresses the host resolves to now, every one of them
    checked (unless `allow_private`), in the resolver's order. Connect to these, not to the name."""
    parts, port = _parse(url)
    addresses = _resolve(parts.hostname, port, socket.AI_ADDRCONFIG)
    if not allow_private:
        _check(parts.hostname, addresses, allow_loopback)
    return list(dict.fromkeys(addresses))


def _parse(url: str) -> tuple[SplitResult, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeUrl("the URL must be http:// or https:// with a host")
    if parts.username or parts.password:
        raise UnsafeUrl("the URL must not carry credentials")
    if len(url) > 2048:
        raise UnsafeUrl("the URL is longer than 2048 characters")
    try:
        return parts, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeUrl("the URL's port is not a number from 1 to 65535") from None


def _resolve(host: str, port: int, flags: int = 0) -> list[str]:
    # AI_ADDRCONFIG at delivery: only families this machine can reach (no IPv6 first on a v4-only host).
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP, flags=flags)
    except (socket.gaierror, UnicodeError):
        raise Unresolvable(f"the host {host!r} does not resolve") from None
    return [info[4][0].split("%")[0] for info in infos]


def _check(host: str, addresses: list[str], allow_loopback: bool) -> None:
    for text in addresses:
        address = ipaddress.ip_address(text)
        if _internal(address) and not (allow_loopback and _loopback(address)):
            raise UnsafeUrl(f"{host} resolves to {address}, a loopback, private or link-local "
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
