"""The web console through the app's test client, on the database under test."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from connector import create_app
from connector.console.users import create_user
from tests.support.api import seed_subscriptions

PASSWORD = "correct horse battery staple"
TOKEN = re.compile(r'name="csrf_token"(?: type="hidden")? value="([^"]+)"')


@pytest.fixture
def app(settings):
    app = create_app(settings)
    engine = app.extensions["billsync"].engine
    seed_subscriptions(engine)
    now = datetime.now(UTC)
    for email, role in (("fin@example.com", "finance"), ("view@example.com", "viewer")):
        create_user(engine, email, role=role, password=PASSWORD, now=now)
    return app


@pytest.fixture
def client(app):
    return app.test_client()


def csrf_token(client, path: str = "/sign-in") -> str:
    return TOKEN.search(client.get(path).get_data(as_text=True)).group(1)


def sign_in(client, email: str, password: str = PASSWORD):
    return client.post("/sign-in", data={"email": email, "password": password, "csrf_token": csrf_token(client)})


@pytest.fixture
def finance(client):
    assert sign_in(client, "fin@example.com").status_code == 303
    return client


@pytest.fixture
def viewer(client):
    assert sign_in(client, "view@example.com").status_code == 303
    return client
