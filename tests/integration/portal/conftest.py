"""The customer portal through the app's test client, on the database under test."""

from __future__ import annotations

import re

import pytest

from connector import create_app
from connector.settings import load_settings
from tests.support.documents import SELLER
from tests.support.portal import new_link, seed_portal

TOKEN = re.compile(r'name="csrf_token"(?: type="hidden")? value="([^"]+)"')


@pytest.fixture
def settings(database_url, tmp_path):
    """A seller complete enough for invoice PDFs; mail written to files under the test's folder."""
    return load_settings({"DATABASE_URL": database_url, "LOG_LEVEL": "warning", "MAIL_DIR": str(tmp_path / "mail"),
                          **SELLER})


@pytest.fixture
def app(settings):
    return create_app(settings)


@pytest.fixture
def seeded(app):
    return seed_portal(app.extensions["billsync"].engine)


def csrf_token(client, path: str) -> str:
    return TOKEN.search(client.get(path).get_data(as_text=True)).group(1)


def open_portal(client, engine, customer_id: str):
    """Open the portal with a new link: the link's page, then its button."""
    path = new_link(engine, customer_id)
    return client.post(path, data={"csrf_token": csrf_token(client, path)})


@pytest.fixture
def customer_a(app, seeded):
    client = app.test_client()
    assert open_portal(client, app.extensions["billsync"].engine, seeded.customer_a).status_code == 303
    return client


@pytest.fixture
def customer_b(app, seeded):
    client = app.test_client()
    assert open_portal(client, app.extensions["billsync"].engine, seeded.customer_b).status_code == 303
    return client
