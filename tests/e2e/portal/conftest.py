"""The customer portal in a real browser: Debian's Chromium driven by Playwright (the console's
fixtures, ``tests/e2e/console/conftest.py``), against the app served on a loopback port, connected
to the sandbox org, on the database under test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from connector import create_app
from connector.sync.pull import pull_changes
from tests.e2e.console.conftest import _tab, screenshot, spaces  # noqa: F401 - helpers
from tests.integration.sync.test_pull import salesforce
from tests.support.api import live_server
from tests.support.portal import Seeded, new_link, seed_connected


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/e2e/portal" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@dataclass
class Portal:
    url: str
    app: object
    seeded: Seeded
    sf: object
    rep: str
    account: str

    @property
    def engine(self):
        return self.app.extensions["billsync"].engine

    def link(self) -> str:
        return self.url + new_link(self.engine, self.seeded.customer_a)


@pytest.fixture
def portal(org, services, connected_settings) -> Iterator[Portal]:
    """Customer A (12 seats of the graduated Team plan, monthly, in EUR) on an Account owned by a rep
    in the sandbox, pulled; the app connected to the sandbox, served on a loopback port."""
    sf = salesforce(org)
    connected = seed_connected(sf, services.engine)
    pull_changes(services)
    app = create_app(connected_settings)
    with live_server(app) as url:
        yield Portal(url, app, connected.seeded, sf, connected.rep, connected.account)


@pytest.fixture
def page(browser, portal):
    yield from _tab(browser, "en-US")


@pytest.fixture
def french_page(browser, portal):
    yield from _tab(browser, "fr-FR")
