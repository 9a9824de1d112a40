"""A real HTTP server on 127.0.0.1 standing in for an outside service (Meta, a gateway, a
customer's webhook endpoint). Tests script its answers and read what it was sent."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Seen:
    method: str
    path: str  # with the query string
    headers: dict[str, str]
    body: bytes
    peer: tuple = ()  # the client's (address, port): one per connection

    @property
    def json(self):
        return json.loads(self.body) if self.body else None


@dataclass
class Reply:
    status: int = 200
    body: object = field(default_factory=dict)  # JSON-encoded unless bytes/str
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (timeouts, latency)


Handler = Callable[[Seen], Reply]


class _Server(ThreadingHTTPServer):
    # A listen backlog for a worker tier's burst of new connections (the batch send path opens up
    # to SEND_BATCH per drain job at once): socketserver's default of 5 drops the SYNs past it,
    # and the client's retransmit comes after the test's 1 s connect timeout.
    request_queue_size = 128


class HttpDouble:
    """`with HttpDouble() as d:` -> d.url; d.handler = lambda seen: Reply(...); d.seen is every request."""

    def __init__(self, handler: Handler | None = None):
        self.handler: Handler = handler or (lambda seen: Reply())
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        double = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                seen = Seen(self.command, self.path, {k: v for k, v in self.headers.items()},
                            self.rfile.read(length) if length else b"", self.client_address)
                with double._lock:
                    double.seen.append(seen)
                reply = double.handler(seen)
                if reply.delay:
                    time.sleep(reply.delay)
                body = reply.body if isinstance(reply.body, bytes) else (
                    reply.body.encode() if isinstance(reply.body, str) else json.dumps(reply.body).encode())
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.headers.get("Content-Type", "application/json"))
                    for name, value in reply.headers.items():
                        if name != "Content-Type":
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> HttpDouble:
        # A short poll: shutdown() waits up to one poll interval (0.5 s by default) for the loop.
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
