"""The drafts the anomaly guard held, through /api/v1: listed with their reasons, shown on the
invoice, released with a note (finalized) or refused with a problem (docs/intelligence.md)."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal as D

import pytest

from billing_engine.charges import ChargeLine
from billing_engine.use_cases.anomalies import AnomalyGuard
from billing_engine.use_cases.billing import run_billing
from tests.support.api import bearer
from tests.support.billing import StaticSource, account, seed_source

JAN, FEB, MAR = date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)
TODAY = date(2026, 2, 3)


def charge(key, starts_on, ends_before, currency="EUR"):
    return ChargeLine(key, "sub-a", "seats", "SEATS", "Seats", "recurring", starts_on, ends_before, D(1), D("100.00"),
                      D("100.00"), D(0), currency, "", "Seats")


@pytest.fixture
def held(app, monkeypatch):
    """cus-a billed 100.00 EUR in January; February's invoice came in USD: held (id 2)."""
    import connector.api.invoices

    monkeypatch.setattr(connector.api.invoices, "business_date", lambda: TODAY)
    engine = app.extensions["billsync"].engine
    source = StaticSource([account("cus-a")], {"cus-a": [charge("a:1", JAN, FEB), charge("a:2", FEB, MAR, "USD")]})
    seed_source(engine, source)
    run_billing(engine, JAN, source=source, guard=AnomalyGuard("hold"))
    result = run_billing(engine, FEB, source=source, guard=AnomalyGuard("hold"))
    assert (result.invoices_finalized, result.invoices_anomalous) == (0, 1)
    return 2


def test_held_drafts_are_listed_with_their_reasons_and_released_with_a_note(held, client, write_key):
    listing = client.get("/api/v1/invoices/anomalies", headers=bearer(write_key))
    assert listing.status_code == 200, listing.get_data(as_text=True)
    [item] = listing.json["data"]
    assert (item["id"], item["customer_id"], item["currency"], item["total"]) == \
        (held, "cus-a", "USD", {"amount": "120.00", "currency": "USD"})
    assert item["anomalies"] == [{"kind": "currency", "score": "1.00",
                                  "reason": "billed in USD; this customer's previous invoice was in EUR",
                                  "released_at": None, "release_note": ""}]
    assert listing.json["next"] is None
    shown = client.get(f"/api/v1/invoices/{held}", headers=bearer(write_key)).json
    assert (shown["status"], shown["anomalies"][0]["kind"]) == ("draft", "currency")

    released = client.post(f"/api/v1/invoices/{held}/release", json={"note": "moved to the US entity"},
                           headers=bearer(write_key))

    assert released.status_code == 200, released.get_data(as_text=True)
    body = released.json
    assert (body["status"], body["number"], body["issued_on"]) == ("open", "INV-2026-000002", "2026-02-03")
    assert body["anomalies"][0]["release_note"] == "moved to the US entity"
    assert body["anomalies"][0]["released_at"] is not None
    assert client.get("/api/v1/invoices/anomalies", headers=bearer(write_key)).json["data"] == []
    audit = client.get("/api/v1/audit-log", headers=bearer(write_key)).json["data"]
    assert audit[0]["action"] == "invoice.release"


def test_release_is_refused_without_a_note_and_for_an_invoice_not_held(held, client, write_key):
    empty = client.post(f"/api/v1/invoices/{held}/release", json={"note": "  "}, headers=bearer(write_key))
    assert empty.status_code == 422 and empty.mimetype == "application/problem+json"
    assert "note" in empty.get_data(as_text=True)
    finalized = client.post("/api/v1/invoices/1/release", json={"note": "fine"}, headers=bearer(write_key))
    assert finalized.status_code == 409 and finalized.mimetype == "application/problem+json"
    assert "not held for anomalies" in json.loads(finalized.data)["detail"]


def test_release_needs_the_write_scope(held, client, read_key):
    response = client.post(f"/api/v1/invoices/{held}/release", json={"note": "ok"}, headers=bearer(read_key))
    assert response.status_code == 403


def test_the_list_pages_by_invoice_id(app, client, read_key):
    engine = app.extensions["billsync"].engine
    customers = ["cus-a", "cus-b", "cus-c"]
    source = StaticSource([account(c) for c in customers],
                          {c: [ChargeLine(f"{c}:{n}", f"sub-{c}", "seats", "SEATS", "Seats", "recurring", start, end,
                                          D(1), D("100.00"), D("100.00"), D(0), currency, "", "Seats")
                               for n, (start, end, currency) in enumerate(((JAN, FEB, "EUR"), (FEB, MAR, "GBP")))]
                           for c in customers})
    seed_source(engine, source)
    run_billing(engine, JAN, source=source, guard=AnomalyGuard("hold"))
    run_billing(engine, FEB, source=source, guard=AnomalyGuard("hold"))

    seen = []
    url = "/api/v1/invoices/anomalies?limit=2"
    while url:
        page = client.get(url, headers=bearer(read_key))
        assert page.status_code == 200, page.get_data(as_text=True)
        seen += [(item["id"], item["customer_id"]) for item in page.json["data"]]
        url = page.json["next"]
    assert seen == [(4, "cus-a"), (5, "cus-b"), (6, "cus-c")]
