"""Fixtures for the Cloud API tests: a Graph double, an app whose live keys reach it, a live key."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, inspect

from tests.helpers import Key, make_key
from wpotp.extensions import db
from wpotp.models import Template
from wpotp.otp.templates import seed_default_templates

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
def restore_templates(app):
    """Template sync rewrites the templates table, which the suite keeps between tests:
    put the seeded defaults back afterwards (first the rows that reference templates)."""
    yield
    with app.app_context():
        existing = set(inspect(db.engine).get_table_names())
        with db.engine.begin() as conn:
            for table in reversed(db.metadata.sorted_tables):
                if table.name in existing and table.name not in ("alembic_version", "templates"):
                    conn.execute(table.delete())
        db.session.execute(delete(Template))
        seed_default_templates()
        db.session.commit()
