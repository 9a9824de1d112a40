"""The fault suite (issue 14): faults injected into real servers, and the figures they leave.

A test reports what it measured with the `figures` fixture: `figures(sent=97, failed=3)`. The
numbers are printed with the test's output, kept as the test's `record_property` values (so a
JUnit report carries them), and gathered into a "figures (fault suite, schema fuzzing)" section at the end of
the pytest run, so CI's log shows them whether the tests passed or not (the hooks that gather
them are in tests/conftest.py: under pytest-xdist only the root conftest runs in the controller).
"""

from __future__ import annotations

import pytest

from tests.conftest import FIGURE_PREFIX


@pytest.fixture
def figures(record_property, request):
    """figures(name=value, ...): record the test's measured numbers (see the module docstring)."""

    def note(**numbers) -> None:
        for name, value in numbers.items():
            record_property(FIGURE_PREFIX + name, value)
        print(f"{request.node.nodeid}: " + ", ".join(f"{k}={v}" for k, v in numbers.items()))

    return note


@pytest.fixture
def postgresql_only(backend):
    """Skip the test on SQLite: what it checks needs a server database several hosts share."""
    if backend[0] != "postgresql":
        pytest.skip("needs the PostgreSQL backend (TEST_DATABASE_URL); SQLite is one host's file")
