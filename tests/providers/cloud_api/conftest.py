"""Fixtures for the Cloud API tests: a Graph double, an app whose live keys reach it, a live key."""

from __future__ import annotations

import pytest

from tests.helpers import Key, make_key

from .graph import SETTINGS, GraphDouble


@pytest.fixture
def graph():
    with GraphDouble() as double:
        yield double


@pytest.fixture
def cloud_app(app, make_app, graph):
    """The app under test: WPOTP_PROVIDER=cloud_api pointed at the double (`app` cleans the DB)."""
    return make_app(WHATSAPP_GRAPH_URL=graph.url, **SETTINGS)


@pytest.fixture
def cloud_client(cloud_app):
    return cloud_app.test_client()


@pytest.fixture
def live_key(cloud_app) -> Key:
    return make_key(cloud_app, mode="live")




@pytest.fixture
def cloud_app_queued(app, make_app, graph):
    """The app under test with the receipt queue on, batches of 4 (RECEIPT_BATCH)."""
    return make_app(WHATSAPP_GRAPH_URL=graph.url, RECEIPT_BATCH=4, **SETTINGS)
