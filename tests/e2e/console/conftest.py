"""The web console in a real browser: Debian's Chromium (``/usr/bin/chromium``, installed by
``scripts/test``) driven by Playwright, against the app served on a loopback port, on the
database under test. Every page a test visits can be saved to ``test-artifacts/console/``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connector import create_app
from connector.console.users import create_user
from tests.support.api import live_server, seed_subscriptions

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "console"
PASSWORD = "correct horse battery staple"


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/e2e/console" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@dataclass
class Console:
    url: str
    app: object

    @property
    def engine(self):
        return self.app.extensions["billsync"].engine


@pytest.fixture
def console(settings) -> Iterator[Console]:
    """The app with three customers billed for January and February 2026 (tests.support.api
    ``seed_subscriptions``: INV-2026-000001 of cus-a is 4,290.00 EUR with graduated seats) and a
    finance user, a viewer and an admin."""
    app = create_app(settings)
    engine = app.extensions["billsync"].engine
    seed_subscriptions(engine)
    now = datetime.now(UTC)
    create_user(engine, "fin@example.com", role="finance", password=PASSWORD, now=now, name="Fiona Finance")
    create_user(engine, "view@example.com", role="viewer", password=PASSWORD, now=now, name="Victor Viewer")
    create_user(engine, "admin@example.com", role="admin", password=PASSWORD, now=now, name="Ada Admin")
    with live_server(app) as url:
        yield Console(url, app)


def _tab(browser, locale: str):
    """A page in a fresh browser context; what the browser reports as an error (a script or a
    style the Content-Security-Policy blocked, a script error) fails the test."""
    context = browser.new_context(locale=locale, viewport={"width": 1360, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(15000)
    errors: list[str] = []
    tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    # Pages answered with 4xx on purpose (403, 400, 401) are reported as failed loads: not errors of the page.
    assert [e for e in errors if "status of 4" not in e] == []


@pytest.fixture
def page(browser, console):
    yield from _tab(browser, "en-US")


@pytest.fixture
def french_page(browser, console):
    yield from _tab(browser, "fr-FR")


def sign_in(page, console: Console, email: str, password: str = PASSWORD) -> None:
    page.goto(console.url + "/")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("form.stacked button[type=submit]")
    page.wait_for_load_state()


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def spaces(text: str) -> str:
    """French numbers group with narrow no-break spaces and put one before €: read them as spaces."""
    return re.sub(r"[\u202f\xa0]", " ", text)
