"""The MRR forecast on the console's dashboard: the chart with its band and the API's figures, in
English and French, and nothing of it with FORECAST=off."""

from __future__ import annotations

import html
import re
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from babel.dates import format_date
from babel.numbers import format_currency

from billing_engine.forecast import months_after
from billing_engine.use_cases.forecast import month_of
from tests.integration.console.conftest import csrf_token
from tests.support.api import bearer, new_key
from tests.support.forecast import seed_forecast, set_usd_rate


@pytest.fixture
def this_month(app):
    today = datetime.now(ZoneInfo(app.extensions["billsync"].settings.billsync_timezone)).date()
    month = month_of(today)
    engine = app.extensions["billsync"].engine
    seed_forecast(engine, month)
    set_usd_rate(engine, months_after(month, -1), "1.2")
    return month


def _text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def _cell(page: str, element_id: str) -> str:
    found = re.search(rf'id="{re.escape(element_id)}"[^>]*>([^<]*)<', page)
    assert found, element_id
    return found.group(1).strip()


def _forecast_section(page: str) -> str:
    found = re.search(r'<section class="card spaced" id="forecast">(.*?)</section>', page, re.S)
    assert found, "the forecast's section"
    return found.group(1)


@pytest.mark.parametrize("currency", [None, "EUR", "USD"])
def test_the_forecast_shows_the_api_s_figures_with_its_band(app, finance, this_month, currency):
    key = new_key(app, "board", "read")
    body = finance.get("/api/v1/metrics/forecast", headers=bearer(key)).json
    months = body["reporting"] if currency is None else next(
        c for c in body["currencies"] if c["currency"] == currency)["months"]
    page = _text(finance.get("/dashboard/" + (f"?currency={currency}" if currency else "")))
    section = _forecast_section(page)
    assert 'class="band"' in section and 'class="line second"' in section and 'class="line"' in section
    for m in months:
        code = m["contracted"]["currency"]
        assert _cell(page, f"fc-contracted-{m['month']}") == format_currency(
            Decimal(m["contracted"]["amount"]), code, locale="en")
        assert _cell(page, f"fc-expected-{m['month']}") == format_currency(
            Decimal(m["expected"]["amount"]), code, locale="en")
    if currency == "EUR":  # the recorded end-of-term cancellation, then the renewal uplift
        amounts = [Decimal(m["contracted"]["amount"]) for m in months]
        assert amounts[1] - amounts[2] == Decimal("100.00") and amounts[3] - amounts[2] == Decimal("10.00")
    if currency is None:  # the EUR contract + 300.00 USD at 1.2
        eur = next(c for c in body["currencies"] if c["currency"] == "EUR")["months"][0]["contracted"]["amount"]
        assert _cell(page, f"fc-contracted-{this_month}") == format_currency(Decimal(eur) + 250, "EUR", locale="en")


def test_in_french(app, finance, this_month):
    key = new_key(app, "board", "read")
    body = finance.get("/api/v1/metrics/forecast?currency=EUR", headers=bearer(key)).json
    eur = next(c for c in body["currencies"] if c["currency"] == "EUR")["months"]
    finance.post("/language", data={"locale": "fr", "csrf_token": csrf_token(finance, "/dashboard/")})
    page = _text(finance.get("/dashboard/?currency=EUR"))
    assert "Prévision du MRR, 12 prochains mois" in page
    assert _cell(page, f"fc-contracted-{eur[3]['month']}") == format_currency(
        Decimal(eur[3]["contracted"]["amount"]), "EUR", locale="fr")
    assert "Contractuel" in _forecast_section(page)
    year, month = (int(part) for part in eur[0]["month"].split("-"))
    assert format_date(date(year, month, 1), format="MMM yyyy", locale="fr") in _forecast_section(page)


def test_a_missing_rate_is_said_not_guessed(app, finance):
    today = datetime.now(ZoneInfo(app.extensions["billsync"].settings.billsync_timezone)).date()
    seed_forecast(app.extensions["billsync"].engine, month_of(today))
    section = _forecast_section(_text(finance.get("/dashboard/")))
    assert "a rate of" in section and "<svg" not in section


def test_turned_off_the_forecast_is_not_shown(app, finance, this_month, monkeypatch):
    from connector.console.framework import CONSOLE_STATE

    state = app.extensions[CONSOLE_STATE]
    monkeypatch.setattr(state, "settings", replace(state.settings, forecast="off"))
    page = _text(finance.get("/dashboard/"))
    assert 'id="forecast"' not in page and 'class="band"' not in page
