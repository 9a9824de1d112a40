"""The CLI tests also look at the console's audit page: its fixtures (a live server, Chromium,
signed-in users) come from tests/console/conftest.py."""

from tests.console.conftest import (  # noqa: F401  (fixtures)
    admin_user,
    browser,
    console_client,
    live_server,
    logged_in_page,
    new_page,
    serve,
)
