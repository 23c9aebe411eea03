"""``POST /api/v1/usage-events``: usage sent through the API is billed for its period, once per
transaction id, late events as a late-usage line; bad events are refused one by one."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D

import pytest
from sqlalchemy import select
from sqlmodel import Session

from billing_engine.catalog import make_price, make_product
from billing_engine.customers import Customer
from billing_engine.storage.invoices import Invoice, invoice_lines
from billing_engine.subscriptions import SubscriptionItem, make_subscription
from billing_engine.use_cases import audit
from billing_engine.use_cases.billing import bill_customers
from billing_engine.use_cases.catalog import upsert_price, upsert_product
from billing_engine.use_cases.customers import upsert_customer
from billing_engine.use_cases.subscriptions import start_subscription
from connector.database import transaction
from connector.settings import load_settings
from tests.support.api import bearer, new_key

API = make_price("pr-api", make_product("p-api", "api_calls", "API calls"), currency="EUR", model="graduated",
                 charge_type="usage", tiers=[{"up_to": 1000, "unit_price": "0.10"},
                                             {"up_to": None, "unit_price": "0.05"}])
NOW = datetime.now(UTC).replace(microsecond=0)
THIS_MONTH = NOW.date().replace(day=1)
LAST_MONTH = (THIS_MONTH - timedelta(days=1)).replace(day=1)
URL = "/api/v1/usage-events"


@pytest.fixture
def settings(database_url):
    """Events of last month stay within the accepted window whatever today's date."""
    return load_settings({"DATABASE_URL": database_url, "LOG_LEVEL": "warning", "USAGE_MAX_AGE_DAYS": "100"})


@pytest.fixture
def engine_of(app):
    return app.extensions["billsync"].engine


@pytest.fixture
def metered(engine_of):
    """cus-1 with sub-1 (API calls, graduated) since well before last month."""
    with transaction(engine_of) as s:
        upsert_customer(s, Customer("cus-1", "Acme", "EUR"))
        upsert_product(s, API.product)
        upsert_price(s, API)
        start_subscription(s, make_subscription("sub-1", "cus-1", "EUR", date(2020, 1, 1),
                                                [SubscriptionItem("api", API)], term_months=None),
                           now=datetime(2019, 12, 1, tzinfo=UTC))
    return engine_of


@pytest.fixture
def usage_key(app):
    return new_key(app, "meter", "usage")


def event(key: str, quantity: object = "10", *, at: datetime | None = None, **fields) -> dict:
    return {"transaction_id": key, "subscription_id": "sub-1", "metric": "api_calls", "quantity": quantity,
            "timestamp": (at or NOW - timedelta(hours=1)).isoformat(), **fields}


def post(client, key, body, **headers):
    return client.post(URL, data=json.dumps(body), content_type="application/json",
                       headers={**bearer(key), **headers})


def usage_lines(engine, on):
    with Session(engine) as s:
        invoice = s.scalars(select(Invoice).where(Invoice.customer_id == "cus-1", Invoice.bill_run_on == on)).one()
        return [(ln.description, ln.quantity, ln.net) for ln in invoice_lines(s, invoice.id) if ln.kind == "usage"]


def in_last_month(day: int) -> datetime:
    return datetime(LAST_MONTH.year, LAST_MONTH.month, day, 12, tzinfo=UTC)


def test_a_usage_product_bills_the_events_sent_through_the_api_for_its_period(client, usage_key, metered):
    batch = {"events": [event("e1", "900", at=in_last_month(3)), event("e2", 250, at=in_last_month(20))]}
    response = post(client, usage_key, batch)
    assert response.status_code == 200, response.json
    assert response.json == {"accepted": 2, "duplicates": 0, "failed": 0, "results": [
        {"index": 0, "transaction_id": "e1", "status": "accepted", "errors": None},
        {"index": 1, "transaction_id": "e2", "status": "accepted", "errors": None}]}
    single = post(client, usage_key, event("e3", "50", at=in_last_month(21)))
    assert single.status_code == 200 and single.json["accepted"] == 1
    bill_customers(metered, THIS_MONTH)
    # 1,200 calls: 1,000 × 0.10 + 200 × 0.05 = 110.00
    assert [line[1:] for line in usage_lines(metered, THIS_MONTH)] == [(D(1200), D("110.00"))]


def test_an_event_resent_with_the_same_transaction_id_counts_once(client, usage_key, metered):
    first = post(client, usage_key, {"events": [event("e1", "7"), event("e1", "7")]})
    assert [r["status"] for r in first.json["results"]] == ["accepted", "duplicate"]
    again = post(client, usage_key, event("e1", "7000"))
    assert again.status_code == 200
    assert again.json == {"accepted": 0, "duplicates": 1, "failed": 0, "results": [
        {"index": 0, "transaction_id": "e1", "status": "duplicate", "errors": None}]}
    next_month = (THIS_MONTH + timedelta(days=32)).replace(day=1)
    bill_customers(metered, next_month)
    assert [line[1:] for line in usage_lines(metered, next_month)] == [(D(7), D("0.70"))]


def test_a_late_event_is_billed_as_a_late_usage_line_on_the_next_run(client, usage_key, metered):
    assert post(client, usage_key, event("e1", "100", at=in_last_month(2))).json["accepted"] == 1
    bill_customers(metered, THIS_MONTH)
    assert [line[1:] for line in usage_lines(metered, THIS_MONTH)] == [(D(100), D("10.00"))]
    late = post(client, usage_key, event("late", "40", at=in_last_month(28)))
    assert late.status_code == 200 and late.json["accepted"] == 1
    next_day = THIS_MONTH + timedelta(days=1)
    bill_customers(metered, next_day)
    assert [(d.split(" (")[0], q, n) for d, q, n in usage_lines(metered, next_day)] == [
        ("API calls late usage", D(40), D("4.00"))]


def test_bad_events_are_refused_one_by_one_and_the_valid_ones_stored(client, usage_key, metered, app):
    response = post(client, usage_key, {"events": [
        event("ok", "5"),
        event("metric", metric="sms"),
        event("sub", subscription_id="sub-404"),
        event("negative", "-3"),
        event("future", at=NOW + timedelta(hours=1)),
        event("old", at=NOW - timedelta(days=101)),
        event("offset", timestamp="2026-11-20T10:00:00"),
    ]})
    assert response.status_code == 207
    body = response.json
    assert (body["accepted"], body["duplicates"], body["failed"]) == (1, 0, 6)
    assert [(r["status"], [e["pointer"] for e in r["errors"] or []]) for r in body["results"]] == [
        ("accepted", []), ("error", ["/events/1/metric"]), ("error", ["/events/2/subscription_id"]),
        ("error", ["/events/3/quantity"]), ("error", ["/events/4/timestamp"]), ("error", ["/events/5/timestamp"]),
        ("error", ["/events/6/timestamp"])]
    assert body["results"][3]["errors"][0]["detail"] == "must not be negative, got -3"
    with transaction(app.extensions["billsync"].engine) as s:
        [entry] = audit.list_actions(s, limit=10, action="usage.ingest")
    assert entry.actor == "api-key:meter" and entry.after == {"accepted": 1, "duplicates": 0, "failed": 6}


def test_an_event_may_name_the_customer_instead_of_the_subscription(client, usage_key, metered):
    response = post(client, usage_key, event("by-customer", "2", subscription_id=None, customer_id="cus-1"))
    assert response.status_code == 200 and response.json["accepted"] == 1
    both = post(client, usage_key, event("both", "2", customer_id="cus-1"))
    assert both.status_code == 422
    assert both.json["errors"] == [{"pointer": "/customer_id",
                                    "detail": "give subscription_id or customer_id, not both"}]


def test_when_no_event_is_stored_the_answer_is_a_422_problem_naming_each(client, usage_key, metered):
    response = post(client, usage_key, event("bad", "-1"))
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    assert response.json["errors"] == [{"pointer": "/quantity", "detail": "must not be negative, got -1"}]
    response = post(client, usage_key, {"events": [event("a", metric="nope"), event("b", subscription_id="x")]})
    assert response.status_code == 422
    assert [e["pointer"] for e in response.json["errors"]] == ["/events/0/metric", "/events/1/subscription_id"]
    # Nothing was stored: fixed, they are accepted.
    assert post(client, usage_key, event("bad", "1")).json["accepted"] == 1


@pytest.mark.parametrize("body, pointer", [
    ({"events": []}, "/events"),
    ({"events": [event("x")] * 1001}, "/events"),
    ({"events": [{**event("x"), "unit": "GB"}]}, "/events/0/unit"),
    ({"events": [{k: v for k, v in event("x").items() if k != "quantity"}]}, "/events/0/quantity"),
    ({"events": [event("x", 1.5)]}, "/events/0/quantity"),
])
def test_a_body_that_does_not_match_the_schema_stores_nothing(client, usage_key, metered, body, pointer):
    response = post(client, usage_key, body)
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    assert pointer in [e.get("pointer") for e in response.json["errors"]]


def test_the_route_needs_a_usage_key(client, app, metered):
    read = new_key(app, "reader", "read")
    assert post(client, read, event("e1")).status_code == 403
    write = new_key(app, "writer", "write")
    assert post(client, write, event("e1")).status_code == 403
    assert client.post(URL, json=event("e1")).status_code == 401


def test_the_document_describes_the_route(client):
    spec = client.get("/api/v1/openapi.json").json
    operation = spec["paths"][URL]["post"]
    assert operation["security"] == [{"bearer": ["usage"]}]
    assert {"200", "207", "422", "401", "403"} <= set(operation["responses"])
    forms = spec["components"]["schemas"]["UsageEventsIn"]["anyOf"]
    assert [sorted(form["required"]) for form in forms] == [["metric", "quantity", "timestamp", "transaction_id"],
                                                            ["events"]]
    assert forms[1]["properties"]["events"]["maxItems"] == 1000
