"""The CLI tests also look at the console's audit page: its fixtures (a live server, Chromium,
signed-in users) come from tests/console/conftest.py (Chromium itself from tests/conftest.py)."""

from tests.console.conftest import (  # noqa: F401  (fixtures)
    admin_user,
    console_client,
    live_server,
    logged_in_page,
    new_page,
    serve,
)
