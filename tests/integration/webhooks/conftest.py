"""The webhook endpoints through the app factory, on the database under test."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlmodel import Session

from connector import create_app
from connector.webhooks.inbox import WebhookInbox
from connector.webhooks.routes import EXTENSION
from tests.support.webhook_messages import NOW, ORG_18, SECRET


@pytest.fixture
def webhook_settings(settings):
    return settings.replace(sf_org_id=ORG_18, cdc_hmac_secret=SECRET)


@pytest.fixture
def make_client(webhook_settings):
    """A test client for settings changed by ``changes``, its clock fixed at ``NOW``."""

    def make(**changes):
        app = create_app(webhook_settings.replace(**changes))
        app.extensions[EXTENSION].clock = lambda: datetime.fromtimestamp(NOW, UTC)
        return app.test_client()

    return make


@pytest.fixture
def client(make_client):
    return make_client()


@pytest.fixture
def inbox(engine):
    """Every inbox row, oldest first."""

    def rows() -> list[WebhookInbox]:
        with Session(engine) as session:
            return list(session.execute(select(WebhookInbox).order_by(WebhookInbox.id)).scalars())

    return rows
