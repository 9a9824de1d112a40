"""Receivers for the outbound-webhook tests: real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import pytest

from tests.doubles import HttpDouble


@pytest.fixture
def receiver():
    """The business's webhook endpoint: answers 200 unless a test scripts it otherwise."""
    with HttpDouble() as double:
        yield double


@pytest.fixture
def second_receiver():
    with HttpDouble() as double:
        yield double
