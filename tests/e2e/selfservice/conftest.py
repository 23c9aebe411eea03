"""The self-service pages in a real browser: Debian's Chromium driven by Playwright (the console's
fixtures), against the app served on a loopback port and connected to the sandbox, whose Licences
plans are on sale (``tests.support.selfservice``). Pages can be saved to ``test-artifacts/selfservice/``."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from connector import create_app
from tests.e2e.console.conftest import _tab
from tests.support.api import live_server
from tests.support.selfservice import seed_catalog

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "selfservice"


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/e2e/selfservice" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@dataclass
class Shop:
    url: str
    services: object


@pytest.fixture
def shop(org, services, connected_settings) -> Iterator[Shop]:
    """The shop of a seller charging 20 % VAT by default."""
    seed_catalog(org, services)
    settings = dataclasses.replace(connected_settings, default_tax_rate=Decimal(20))
    with live_server(create_app(settings)) as url:
        yield Shop(url, services)


@pytest.fixture
def page(browser, shop):
    yield from _tab(browser, "en-US")


@pytest.fixture
def french_page(browser, shop):
    yield from _tab(browser, "fr-FR")


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
