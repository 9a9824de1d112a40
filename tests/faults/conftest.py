"""The fault suite (issue 14): faults injected into real servers, and the figures they leave.

A test reports what it measured with the `figures` fixture: `figures(sent=97, failed=3)`. The
numbers are printed with the test's output, kept as the test's `record_property` values (so a
JUnit report carries them), and gathered into a "fault suite figures" section at the end of
the pytest run, so CI's log shows them whether the tests passed or not.
"""

from __future__ import annotations

import pytest

FIGURE_PREFIX = "figure:"
_collected: list[tuple[str, str, dict]] = []  # (test id, outcome, figures), in the order tests ran


@pytest.fixture
def figures(record_property, request):
    """figures(name=value, ...): record the test's measured numbers (see the module docstring)."""

    def note(**numbers) -> None:
        for name, value in numbers.items():
            record_property(FIGURE_PREFIX + name, value)
        print(f"{request.node.nodeid}: " + ", ".join(f"{k}={v}" for k, v in numbers.items()))

    return note


def pytest_runtest_logreport(report) -> None:
    if report.when != "call":
        return
    found = {name.removeprefix(FIGURE_PREFIX): value for name, value in report.user_properties
             if isinstance(name, str) and name.startswith(FIGURE_PREFIX)}
    if found:
        _collected.append((report.nodeid, report.outcome, found))


def pytest_terminal_summary(terminalreporter) -> None:
    if not _collected:
        return
    terminalreporter.section("fault suite figures")
    for nodeid, outcome, found in _collected:
        terminalreporter.write_line(f"{nodeid} [{outcome}]")
        terminalreporter.write_line("    " + ", ".join(f"{k}={v}" for k, v in found.items()))
