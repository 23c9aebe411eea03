"""The console's dashboard and exchange rates pages: the page's figures are the API's, the
reporting currency's total is the per-currency totals converted at the stored rates, every figure
opens the customers behind it, and rates are entered and imported through the same use cases."""

from __future__ import annotations

import html
import io
import re
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import pytest
from babel.numbers import format_currency, format_percent

from tests.integration.console.conftest import csrf_token
from tests.support.api import bearer, new_key
from tests.support.dashboard import seed_this_month


@pytest.fixture
def today(app):
    from datetime import datetime

    return datetime.now(ZoneInfo(app.extensions["billsync"].settings.billsync_timezone)).date()


@pytest.fixture
def seeded(app, today):
    seed_this_month(app.extensions["billsync"].engine, today)
    return app


def _month(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def _text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def _cell(page: str, element_id: str) -> str:
    found = re.search(rf'id="{re.escape(element_id)}"[^>]*>(?:<a [^>]*>)?([^<]*)<', page)
    assert found, element_id
    return found.group(1).strip()


def _money(amount: str, currency: str) -> str:
    return format_currency(Decimal(amount), currency, locale="en", decimal_quantization=False)


def _api(client, key, url):
    response = client.get(url, headers=bearer(key))
    assert response.status_code == 200, response.json
    return response.json


@pytest.mark.parametrize("currency", [None, "EUR", "USD"])
def test_the_dashboard_page_shows_the_api_s_figures_and_bridge(seeded, finance, today, currency):
    key = new_key(seeded, "board", "read")
    month = _month(today)
    board = _api(finance, key, f"/api/v1/metrics/dashboard?month={month}")
    bridge = _api(finance, key, f"/api/v1/metrics/mrr?from={month}&to={month}")
    response = finance.get(f"/dashboard/?month={month}" + (f"&currency={currency}" if currency else ""))
    assert response.status_code == 200
    page = _text(response)
    figures = board["reporting"] if currency is None else next(
        f for f in board["currencies"] if f["currency"] == currency)
    code = figures["currency"]
    water = figures["waterfall"]
    if currency is not None:  # the page's waterfall is the bridge's row of that currency
        row = next(r for r in bridge["months"] if r["currency"] == currency)
        assert {part: water[part] for part in ("opening", "new", "expansion", "closing")} == {
            part: row[part] for part in ("opening", "new", "expansion", "closing")}
    assert _cell(page, "wf-opening") == _money(water["opening"]["amount"], code)
    for kind, sign in (("new", "+"), ("expansion", "+"), ("reactivation", "+"), ("contraction", "−"),
                       ("churn", "−")):
        amount = water[kind]["amount"]
        assert _cell(page, f"wf-{kind}") == (sign if Decimal(amount) else "") + _money(amount, code), kind
    assert _cell(page, "wf-closing") == _money(water["closing"]["amount"], code)
    latest = figures["mrr_series"][-1]
    assert _cell(page, "kpi-mrr") == _money(latest["mrr"]["amount"], code)
    assert _cell(page, "kpi-arr") == _money(latest["arr"]["amount"], code)
    assert _cell(page, "kpi-arpa") == _money(figures["arpa"]["amount"], code)
    assert _cell(page, "kpi-nrr") == format_percent(Decimal(figures["net_revenue_retention"]) / 100, locale="en",
                                                    decimal_quantization=False)
    for status, count in board["customers_by_status"].items():
        assert f'figure=status:{status}' in page and str(count) in page
    assert 'id="missing-rates"' not in page  # every month's USD rate is stored


def test_the_reporting_total_is_the_per_currency_totals_at_the_stored_rates(seeded, finance, today):
    key = new_key(seeded, "board", "read")
    month = _month(today)
    board = _api(finance, key, f"/api/v1/metrics/dashboard?month={month}")
    page = _text(finance.get(f"/dashboard/?month={month}"))
    rate = Decimal(next(r["rate"] for r in board["rates"] if r["month"] == month and r["currency"] == "USD"))
    assert rate == Decimal("1.0834")
    for part in ("opening", "expansion", "closing"):
        unrounded = sum(Decimal(f["waterfall"][part]["amount"]) / (rate if f["currency"] == "USD" else 1)
                        for f in board["currencies"])
        expected = unrounded.quantize(Decimal("0.01"), ROUND_HALF_UP)
        assert Decimal(board["reporting"]["waterfall"][part]["amount"]) == expected, part
        shown = _cell(page, f"wf-{part}").lstrip("+")
        assert shown == _money(str(expected), "EUR"), part
    assert "1.0834" in page  # the rate used is shown


def test_the_expansion_opens_the_customers_behind_it_and_each_opens_its_page(seeded, finance, today):
    page = _text(finance.get("/dashboard/"))  # the current month by default
    link = re.search(r'href="(/dashboard/customers\?[^"]*figure=movement(?::|%3A)expansion[^"]*)"', page)
    assert link, "the expansion links to its customers"
    listing = finance.get(html.unescape(link.group(1)))
    assert listing.status_code == 200
    text = _text(listing)
    assert "Dupont SA" in text and "€400.00" in text and "€1,950.00" in text and "€1,550.00" in text
    assert "Eagle Inc" not in text
    customer = finance.get("/customers/cus-d")
    assert customer.status_code == 200 and "Dupont SA" in _text(customer)
    assert 'href="/customers/cus-d"' in text


def test_the_dashboard_is_the_landing_page(finance):
    response = finance.get("/")
    assert response.status_code == 302 and response.headers["Location"].endswith("/dashboard/")


def test_the_chart_is_an_svg_with_axes_and_month_labels(seeded, finance, today):
    page = _text(finance.get("/dashboard/?months=12"))
    assert page.count("<svg") == 4  # MRR, ARR, the waterfall and the forecast
    assert 'class="axis"' in page and 'class="grid"' in page
    assert today.strftime("%b") in page  # the month's short name under the axis
    assert "<script>" not in page


def test_a_month_missing_its_rate_is_listed_and_its_converted_figures_are_not_guessed(app, finance):
    page = _text(finance.get("/dashboard/?month=2026-04"))  # USD had MRR with no rate
    warning = re.search(r'id="missing-rates">(.*?)</div>', page, re.S).group(1)
    assert "USD (2026-04)" in warning and "USD (2026-01)" in warning
    assert 'id="wf-opening"' not in page


@pytest.mark.parametrize("query", ["month=2026-13", "month=april", "months=36", "months=x"])
def test_a_bad_month_is_a_message_on_the_page(finance, query):
    response = finance.get(f"/dashboard/?{query}")
    assert response.status_code == 422 and 'class="notice error"' in response.get_data(as_text=True)


def test_a_bad_figure_is_a_message_on_the_page(finance):
    response = finance.get("/dashboard/customers?month=2026-03&figure=movement:lost")
    assert response.status_code == 422 and "figure" in _text(response)


def test_the_customers_behind_a_figure_come_in_pages(app, finance, monkeypatch):
    from connector.console import dashboard as page

    whole = _text(finance.get("/dashboard/customers?month=2026-01&figure=movement:new"))
    assert "Customer cus-a" in whole and "Customer cus-b" in whole and "€2,145.00" in whole and "$300.00" in whole
    assert 'rel="next"' not in whole
    monkeypatch.setattr(page, "PAGE_SIZE", 1)
    first = _text(finance.get("/dashboard/customers?month=2026-01&figure=movement:new"))
    assert "Customer cus-a" in first and "Customer cus-b" not in first
    following = re.search(r'href="([^"]+)" rel="next"', first).group(1)
    second = _text(finance.get(html.unescape(following)))
    assert "Customer cus-b" in second and "Customer cus-a" not in second and 'rel="next"' not in second


# ---------------------------------------------------------------- exchange rates


def _post(client, path, data, **kwargs):
    return client.post(path, data={**data, "csrf_token": csrf_token(client, "/exchange-rates/")}, **kwargs)


def _audit(app):
    key = new_key(app, "auditor", "read")
    return app.test_client().get("/api/v1/audit-log", headers=bearer(key)).json["data"]


def test_finance_enters_a_rate_that_the_api_lists_and_the_audit_log_names_them(app, finance):
    response = _post(finance, "/exchange-rates/", {"on": "2026-03-31", "currency": "usd", "rate": "1.0800"})
    assert response.status_code == 303
    key = new_key(app, "reader", "read")
    listed = finance.get("/api/v1/exchange-rates?currency=USD", headers=bearer(key)).json["data"]
    assert [(r["date"], r["rate"], r["entered_by"]) for r in listed] == [
        ("2026-03-31", "1.0800", "console:fin@example.com")]
    assert "1.08" in _text(finance.get("/exchange-rates/"))
    entry = next(e for e in _audit(app) if e["action"] == "exchange_rate.set")
    assert entry["actor"] == "console:fin@example.com" and entry["target_id"] == "2026-03-31/USD"


def test_a_french_user_types_a_rate_with_a_comma(app, finance):
    finance.post("/language", data={"locale": "fr", "csrf_token": csrf_token(finance, "/exchange-rates/")})
    response = _post(finance, "/exchange-rates/", {"on": "2026-03-31", "currency": "USD", "rate": "1,0800"})
    assert response.status_code == 303
    assert "1,08" in _text(finance.get("/exchange-rates/"))


@pytest.mark.parametrize("rate", ["-1", "0", "abc", "1.12345678901234"])
def test_a_bad_rate_is_a_message_and_nothing_is_stored(app, finance, rate):
    response = _post(finance, "/exchange-rates/", {"on": "2026-03-31", "currency": "USD", "rate": rate})
    assert response.status_code == 422 and 'class="notice error"' in response.get_data(as_text=True)
    assert "No rate yet." in _text(finance.get("/exchange-rates/"))


ECB = "Date,USD,JPY,GBP,\n2026-03-31,1.0811,162.10,0.8402,\n2026-03-30,1.0799,161.95,0.8390,\n"


def test_finance_imports_an_ecb_file(app, finance):
    response = _post(finance, "/exchange-rates/import",
                     {"file": (io.BytesIO(ECB.encode()), "eurofxref-hist.csv")}, content_type="multipart/form-data")
    assert response.status_code == 303, _text(response)
    page = _text(finance.get("/exchange-rates/?currency=GBP"))
    assert "0.8402" in page and "0.839" in page
    entry = next(e for e in _audit(app) if e["action"] == "exchange_rate.import")
    assert entry["actor"] == "console:fin@example.com"


def test_an_ecb_file_with_bad_lines_shows_one_message_per_line_and_stores_nothing(app, finance):
    bad = "Date,USD,GBP\n2026-03-31,1.0811,0.84\n2026-03-30,abc,0.83\n2026-02-30,1.07,0.82\n"
    response = _post(finance, "/exchange-rates/import",
                     {"file": (io.BytesIO(bad.encode()), "rates.csv")}, content_type="multipart/form-data")
    assert response.status_code == 422
    problems = re.search(r'<ul class="problems" id="problems">(.*?)</ul>', _text(response), re.S).group(1)
    assert re.findall(r"<li>Line (\d+):", problems) == ["3", "4"]
    assert "No rate yet." in _text(finance.get("/exchange-rates/"))


def test_a_viewer_reads_the_rates_but_cannot_change_them(app, viewer):
    page = _text(viewer.get("/exchange-rates/"))
    assert "Enter a rate" not in page and "Import an ECB file" not in page
    response = _post(viewer, "/exchange-rates/", {"on": "2026-03-31", "currency": "USD", "rate": "1.08"})
    assert response.status_code == 403
    assert viewer.get("/dashboard/").status_code == 200
