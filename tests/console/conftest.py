"""The console harness: a live server in a thread, Debian's Chromium driven by Playwright,
and console users. Shared by every console test module.

    def test_x(live_server, logged_in_page):
        page = logged_in_page("admin")           # a Page, signed in on `live_server`
        page.goto(live_server.url("/console/keys"))

Browser tests skip (with the reason) when /usr/bin/chromium is missing. Never run
`playwright install`: the browser is the system's.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

import pytest
from werkzeug.serving import make_server

from wpotp.extensions import db
from wpotp.models import User

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORD = "correct horse battery staple"


@dataclass
class ConsoleUser:
    id: str
    email: str
    password: str
    role: str


def create_user(app, email: str, role: str, password: str = PASSWORD) -> ConsoleUser:
    with app.app_context():
        user = User(email=email, role=role)
        user.set_password(password)
        db.session.add(user)
        db.session.commit()
        return ConsoleUser(user.id, email, password, role)


@pytest.fixture
def admin_user(app) -> ConsoleUser:
    return create_user(app, "admin@example.com", "admin")


@pytest.fixture
def viewer_user(app) -> ConsoleUser:
    return create_user(app, "viewer@example.com", "viewer")


class LiveServer:
    """A real HTTP server for one Flask app on 127.0.0.1, on a free port, in a thread."""

    def __init__(self, flask_app):
        self.app = flask_app
        self._server = make_server("127.0.0.1", 0, flask_app, threaded=True)
        self.base = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="live-server", daemon=True)
        self._thread.start()

    def url(self, path: str = "/") -> str:
        return self.base + path

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


@pytest.fixture
def serve():
    """serve(flask_app) -> LiveServer; every server started is stopped after the test."""
    started: list[LiveServer] = []

    def start(flask_app) -> LiveServer:
        server = LiveServer(flask_app)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def live_server(app, serve) -> LiveServer:
    return serve(app)




@pytest.fixture
def new_page(browser):
    """new_page(**context_options) -> a Page in a fresh context (its own cookies)."""
    contexts = []

    def make(**options):
        context = browser.new_context(**options)
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page):
    return new_page()


def sign_in(page, server: LiveServer, user: ConsoleUser, next_path: str | None = None) -> None:
    """Fill the login form like a person would; waits until the console shows the user."""
    target = "/console/login" + (f"?next={next_path}" if next_path else "")
    page.goto(server.url(target))
    page.fill("input[name=email]", user.email)
    page.fill("input[name=password]", user.password)
    page.click("button[type=submit]")
    page.wait_for_selector(".who-email", state="attached")  # hidden behind the Menu on a phone


@pytest.fixture
def logged_in_page(app, live_server, new_page):
    """logged_in_page("admin" | "viewer", email=None) -> a Page signed in on `live_server`."""
    counter = iter(range(1, 1000))

    def make(role: str = "admin", email: str | None = None, **context_options):
        user = create_user(app, email or f"{role}{next(counter)}@example.com", role)
        page = new_page(**context_options)
        sign_in(page, live_server, user)
        page.user = user
        return page

    return make


@pytest.fixture
def console_client(app):
    """console_client(user) -> a Flask test client signed in as `user` (CSRF stays on: take a
    token with `form_token(client)`)."""

    def make(user: ConsoleUser):
        client = app.test_client()
        with client.session_transaction() as sess:
            sess["_user_id"] = user.id
            sess["_fresh"] = True
        return client

    return make


def form_token(client, path: str = "/console/audit") -> str:
    """The CSRF token a signed-in client's pages carry (every page has the logout form)."""
    html = client.get(path).get_data(as_text=True)
    found = re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', html)
    assert found, f"no CSRF token on {path}"
    return found.group(1)
