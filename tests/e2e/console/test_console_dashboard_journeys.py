"""Finance reads the dashboard in a real browser: this month's MRR and its waterfall, then the
customers behind the expansion, then one of them; in English and in French (docs/console.md)."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from tests.e2e.console.conftest import screenshot, sign_in, spaces
from tests.support.dashboard import seed_this_month


@pytest.fixture
def this_month(console):
    settings = console.app.extensions["billsync"].settings
    today = datetime.now(ZoneInfo(settings.billsync_timezone)).date()
    seed_this_month(console.engine, today)
    return today


def test_finance_reads_this_month_s_mrr_and_opens_the_customers_behind_the_expansion(page, console, this_month):
    sign_in(page, console, "fin@example.com")
    expect(page.locator("h1")).to_have_text("Dashboard")
    expect(page.locator("#month")).to_have_value(f"{this_month.year:04d}-{this_month.month:02d}")
    # cus-a 2,475.00 + cus-c 400.00 + cus-d 1,950.00 in EUR, and cus-e's 300.00 USD at 1.0834.
    expect(page.locator("#kpi-mrr")).to_have_text("€5,101.91")
    expect(page.locator("#wf-expansion")).to_have_text("+€1,550.00")
    expect(page.locator("#wf-closing")).to_have_text("€5,101.91")
    expect(page.locator("svg.waterfall text.category")).to_have_text(
        ["Opening", "New", "Expansion", "Reactivation", "Contraction", "Churn", "Closing"])
    months = [(this_month.year * 12 + this_month.month - 1 - back) for back in range(11, -1, -1)]
    expect(page.locator("svg.columns-chart text.category:not(.year)")).to_have_text(
        [date(index // 12, index % 12 + 1, 1).strftime("%b") for index in months])
    expect(page.locator("svg.columns-chart text.year")).to_have_text(
        [str(index // 12) for n, index in enumerate(months) if n == 0 or index % 12 == 0])
    expect(page.locator("#missing-rates")).to_have_count(0)
    screenshot(page, "dashboard")

    page.click("#waterfall table a:has-text('Expansion')")
    expect(page.locator("h1")).to_have_text("Expansion")
    row = page.locator("#figure-customers tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Dupont SA")
    expect(row.locator("td.num")).to_have_text(["€400.00", "€1,950.00", "€1,550.00"])
    screenshot(page, "dashboard-expansion")

    row.locator("a:has-text('Dupont SA')").click()
    expect(page.locator("h1")).to_contain_text("Dupont SA")
    screenshot(page, "dashboard-expansion-customer")

    page.click("nav.sections >> text=Dashboard")
    page.select_option("#currency", "USD")
    page.click(".dashboard-picker button[type=submit]")
    expect(page.locator("#kpi-mrr")).to_have_text("$300.00")


def test_the_dashboard_in_french(french_page, console, this_month):
    page = french_page
    sign_in(page, console, "fin@example.com")
    expect(page.locator("h1")).to_have_text("Tableau de bord")
    assert spaces(page.locator("#kpi-mrr").inner_text()) == "5 101,91 €"
    assert spaces(page.locator("#wf-expansion").inner_text()) == "+1 550,00 €"
    expect(page.locator("svg.waterfall text.category")).to_have_text(
        ["Ouverture", "Nouveaux", "Expansion", "Réactivation", "Contraction", "Attrition", "Clôture"])
    screenshot(page, "tableau-de-bord")
    page.click("#waterfall table a:has-text('Expansion')")
    cells = [spaces(t) for t in page.locator("#figure-customers tbody tr td.num").all_inner_texts()]
    assert cells == ["400,00 €", "1 950,00 €", "1 550,00 €"]
    expect(page.locator("#figure-customers thead")).to_contain_text("MRR après")
    screenshot(page, "tableau-de-bord-expansion")
    page.click("text=Dupont SA")
    expect(page.locator("h1")).to_contain_text("Dupont SA")


def test_finance_imports_an_ecb_file_with_a_bad_line_then_a_good_one(page, console, tmp_path):
    sign_in(page, console, "fin@example.com")
    page.click("nav.sections >> text=Exchange rates")
    expect(page.locator("h1")).to_have_text("Exchange rates")
    bad = tmp_path / "eurofxref-hist.csv"
    bad.write_text("Date,USD,GBP\n2026-03-31,1.0811,0.8402\n2026-03-30,abc,0.8390\n2026-02-30,1.07,0.82\n")
    page.set_input_files("#file", str(bad))
    page.click("text=Import >> nth=-1")
    expect(page.locator("#problems li")).to_have_count(2)
    expect(page.locator("#problems li").first).to_contain_text("Line 3")
    expect(page.locator("#rates tbody")).to_contain_text("No rate yet.")
    screenshot(page, "rates-refused")
    good = tmp_path / "eurofxref.csv"
    good.write_text("Date,USD,GBP\n2026-03-31,1.0811,0.8402\n2026-03-30,1.0799,0.8390\n")
    page.set_input_files("#file", str(good))
    page.click("text=Import >> nth=-1")
    expect(page.locator(".notice.success")).to_have_text("4 rates of 2 currencies over 2 days imported.")
    page.fill("#on", "2026-04-30")
    page.fill("#currency", "USD")
    page.fill("#rate", "1.0850")
    page.click("text=Store the rate")
    expect(page.locator(".notice.success")).to_contain_text("1 EUR = 1.0850 USD")
    expect(page.locator("#rates tbody tr").last).to_contain_text("Apr 30, 2026USD1.085")
    screenshot(page, "rates")
