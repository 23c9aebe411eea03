"""Finance reads the MRR forecast on the dashboard in a real browser: the chart with its band and
the months ahead, the end-of-term cancellation and the renewal uplift in the figures; in English
and in French (docs/console.md, docs/intelligence.md)."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from billing_engine.forecast import months_after
from billing_engine.use_cases.forecast import month_of
from tests.e2e.console.conftest import screenshot, sign_in, spaces
from tests.support.forecast import seed_forecast, set_usd_rate


@pytest.fixture
def this_month(console):
    settings = console.app.extensions["billsync"].settings
    month = month_of(datetime.now(ZoneInfo(settings.billsync_timezone)).date())
    seed_forecast(console.engine, month)
    set_usd_rate(console.engine, months_after(month, -1), "1.2")
    return month


def _amount(text: str) -> Decimal:
    return Decimal(spaces(text).replace("€", "").replace(",", "").strip())


def test_finance_reads_the_forecast_with_its_band(page, console, this_month):
    sign_in(page, console, "fin@example.com")
    section = page.locator("#forecast")
    expect(section.locator("h2")).to_have_text("MRR forecast, next 12 months")
    expect(section.locator("svg polygon.band")).to_have_count(1)
    expect(section.locator("svg polyline.line.second")).to_have_count(1)
    expect(section.locator("tbody tr")).to_have_count(12)
    screenshot(page, "dashboard-forecast")

    page.select_option("#currency", "EUR")
    page.click(".dashboard-picker button[type=submit]")
    after_two, after_three = months_after(this_month, 2), months_after(this_month, 3)
    before = _amount(page.locator(f"#fc-contracted-{months_after(this_month, 1)}").inner_text())
    cancelled = _amount(page.locator(f"#fc-contracted-{after_two}").inner_text())
    renewed = _amount(page.locator(f"#fc-contracted-{after_three}").inner_text())
    assert before - cancelled == Decimal("100.00")  # Fenwick Ltd's cancellation at its term's end
    assert renewed - cancelled == Decimal("10.00")  # Garnier SARL's 5 % uplift on 200.00
    expect(section).to_contain_text(re.compile(r"Monthly churn \d+(\.\d+)?%, expansion \d+(\.\d+)?% over \d+ months"))


def test_the_forecast_in_french(french_page, console, this_month):
    page = french_page
    sign_in(page, console, "fin@example.com")
    expect(page.locator("#forecast h2")).to_have_text("Prévision du MRR, 12 prochains mois")
    expect(page.locator("#forecast thead")).to_contain_text("Contractuel")
    expect(page.locator("#forecast thead")).to_contain_text("Attendu")
    screenshot(page, "tableau-de-bord-prevision")
