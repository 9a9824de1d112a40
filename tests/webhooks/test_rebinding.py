"""Issue 14 defect 13, DNS rebinding: the address the SSRF guard checked is the address the POST
connects to. The host name is resolved once per attempt, by the guard; the connection keeps the
name for the Host header, the TLS server name (SNI) and the certificate check.

The outside world is simulated with the standard library only: `socket.getaddrinfo` answers for
the test's name (first a public address, then 127.0.0.1, as a rebinding DNS server would), and
`socket.socket.connect` routes the public address to a local server (and refuses any other
non-loopback address, so nothing can leave the machine)."""

from __future__ import annotations

import errno
import ipaddress
import socket

import pytest

from tests.doubles import HttpDouble

from .support import (
    TlsDouble,
    attempts,
    canceled_otp,
    header,
    make_certificates,
    only_delivery,
    set_webhook,
    signed_with,
    timestamp_ok,
)

NAME = "hooks.rebind.test"
PUBLIC = "1.2.3.4"  # any global address: the test network routes it to a local server


class Network:
    """A rebinding DNS server and a router, both at the socket level."""

    def __init__(self, monkeypatch):
        self.lookups: list[str] = []
        self.answers = [PUBLIC]  # the first look-up, then the last answer for ever
        self.routes: dict[tuple[str, int], tuple[str, int]] = {}
        real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

        def getaddrinfo(host, port, *args, **kwargs):
            if host != NAME:
                return real_getaddrinfo(host, port, *args, **kwargs)
            self.lookups.append(host)
            answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
            return real_getaddrinfo(answer, port, *args, **kwargs)

        def connect(sock, address):
            if isinstance(address, tuple) and (address[0], address[1]) in self.routes:
                return real_connect(sock, self.routes[(address[0], address[1])])
            if isinstance(address, tuple) and not ipaddress.ip_address(address[0].split("%")[0]).is_loopback:
                raise OSError(errno.ENETUNREACH, "the test network has no route there")
            return real_connect(sock, address)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        monkeypatch.setattr(socket.socket, "connect", connect)

    def rebind_after_first_lookup(self) -> None:
        self.answers = [PUBLIC, "127.0.0.1"]


@pytest.fixture
def network(monkeypatch):
    return Network(monkeypatch)


@pytest.fixture
def internal():
    """A service inside the server's network: what a rebinding attacker wants to reach."""
    with HttpDouble() as double:
        yield double


def _port(double) -> int:
    return int(double.url.rsplit(":", 1)[1])


def test_the_post_goes_to_the_checked_address_not_a_second_lookup(make_app, app, api_key, network, internal,
                                                                  receiver, run_worker):
    strict = make_app(WEBHOOK_ALLOW_PRIVATE=False, WEBHOOK_ALLOW_LOOPBACK=False)
    port = _port(internal)  # the same port on the public address is the real receiver
    network.routes[(PUBLIC, port)] = ("127.0.0.1", _port(receiver))
    url = f"http://{NAME}:{port}/hook"
    secret = set_webhook(strict, url, events=["otp.canceled"])  # resolves to PUBLIC: accepted
    network.lookups.clear()
    network.rebind_after_first_lookup()
    canceled_otp(strict.test_client(), api_key, "+905551115001")
    run_worker(strict)

    assert internal.seen == []
    (seen,) = receiver.seen
    assert header(seen, "Host") == f"{NAME}:{port}"
    assert signed_with(secret, seen) and timestamp_ok(secret, seen)
    assert network.lookups == [NAME]  # the guard's look-up is the only one
    assert only_delivery(strict)["status"] == "succeeded"


def test_https_speaks_tls_to_the_name_at_the_checked_address(make_app, app, api_key, network, internal,
                                                             tmp_path, run_worker):
    ca, cert, key = make_certificates(tmp_path, NAME)
    with TlsDouble(cert, key) as tls_receiver:
        strict = make_app(WEBHOOK_ALLOW_PRIVATE=False, WEBHOOK_ALLOW_LOOPBACK=False, WEBHOOK_CA_BUNDLE=ca)
        port = _port(internal)
        network.routes[(PUBLIC, port)] = ("127.0.0.1", _port(tls_receiver))
        secret = set_webhook(strict, f"https://{NAME}:{port}/hook", events=["otp.canceled"])
        network.rebind_after_first_lookup()
        canceled_otp(strict.test_client(), api_key, "+905551115002")
        run_worker(strict)

        assert internal.seen == []
        (seen,) = tls_receiver.seen
        assert tls_receiver.server_names == [NAME]
        assert header(seen, "Host") == f"{NAME}:{port}"
        assert signed_with(secret, seen)
        assert only_delivery(strict)["status"] == "succeeded"


def test_the_certificate_is_checked_against_the_host_name(make_app, app, api_key, network, tmp_path, run_worker):
    ca, cert, key = make_certificates(tmp_path, "someone-else.test")
    with TlsDouble(cert, key) as impostor:
        strict = make_app(WEBHOOK_ALLOW_PRIVATE=False, WEBHOOK_ALLOW_LOOPBACK=False, WEBHOOK_CA_BUNDLE=ca,
                          WEBHOOK_RETRY_DELAYS=[60])
        network.routes[(PUBLIC, 443)] = ("127.0.0.1", _port(impostor))
        set_webhook(strict, f"https://{NAME}/hook", events=["otp.canceled"])
        canceled_otp(strict.test_client(), api_key, "+905551115003")
        run_worker(strict)

        assert impostor.seen == []  # the handshake failed: nothing was sent
        (attempt,) = attempts(strict, only_delivery(strict)["id"])
        assert attempt["status_code"] is None
        assert attempt["error"] == f"TLS failed: hostname '{NAME}' doesn't match 'someone-else.test'"
