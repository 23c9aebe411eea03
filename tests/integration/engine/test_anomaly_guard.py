"""The anomaly guard through the database (docs/intelligence.md, The anomaly guard): monthly bill runs
over stored subscriptions and usage, an invoice far from the customer's history held as a draft with
its reasons and nothing of it in the outbox, released or voided by finance; an upgrade recorded by an
amendment finalized as usual."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal as D

import pytest
from sqlalchemy import select
from sqlmodel import Session

from billing_engine.catalog import make_price, make_product
from billing_engine.customers import Customer
from billing_engine.errors import ConflictError, InvalidInputError
from billing_engine.storage.anomalies import InvoiceAnomaly
from billing_engine.storage.invoices import Invoice
from billing_engine.storage.outbox import OutboxRow
from billing_engine.subscriptions import Amendment, AmendmentAction, SubscriptionItem, make_subscription
from billing_engine.use_cases.anomalies import AnomalyGuard, GuardRules, list_held_invoices, release_invoice
from billing_engine.use_cases.billing import bill_customers, void_invoice
from billing_engine.use_cases.catalog import upsert_price, upsert_product
from billing_engine.use_cases.customers import upsert_customer
from billing_engine.use_cases.invoices import get_invoice
from billing_engine.use_cases.subscriptions import amend_subscription, start_subscription
from billing_engine.use_cases.usage import record_usage
from connector.database import transaction

SEATS = make_price("pr-seats", make_product("p-seats", "SEATS", "Seats"), currency="EUR", model="per_unit",
                   unit_price="35")
API = make_price("pr-api", make_product("p-api", "API", "API calls"), currency="EUR", model="per_unit",
                 charge_type="usage", unit_price="0.01")
CUSTOMER = Customer("cus-1", "Acme", "EUR", tax_rate_percent=D(20))
#: Calls a month, January to June 2026: the customer's pattern.
CALLS = {1: 1000, 2: 1150, 3: 900, 4: 1050, 5: 980, 6: 1100}
HOLD = AnomalyGuard("hold", GuardRules(min_history=3))


def month(m: int) -> date:
    return date(2026 + (m - 1) // 12, (m - 1) % 12 + 1, 1)


def at(m: int) -> datetime:
    return datetime(month(m).year, month(m).month, 1, 6, tzinfo=UTC)


def use(engine, m: int, calls: int) -> None:
    with transaction(engine) as s:
        record_usage(s, subscription_id="sub-1", item_id="api", quantity=D(calls),
                     occurred_at=datetime(month(m).year, month(m).month, 15, 12, tzinfo=UTC), source="test",
                     idempotency_key=f"u-{m}-{calls}")


@pytest.fixture
def history(engine):
    """Six months billed and finalized: 10 seats and about a thousand calls a month, the guard on."""
    with transaction(engine) as s:
        for price in (SEATS, API):
            upsert_product(s, price.product)
            upsert_price(s, price)
        upsert_customer(s, CUSTOMER)
        start_subscription(s, make_subscription("sub-1", "cus-1", "EUR", month(1), [
            SubscriptionItem("seats", SEATS, quantity=D(10)), SubscriptionItem("api", API)]), now=at(1))
    for m in range(1, 7):
        if m > 1:
            use(engine, m - 1, CALLS[m - 1])
        result = bill_customers(engine, month(m), now=at(m), guard=HOLD)
        assert (result.invoices_finalized, result.invoices_anomalous, result.failures) == (1, 0, {})
    use(engine, 6, CALLS[6])
    return engine


def invoices(engine) -> list[Invoice]:
    with Session(engine) as s:
        return list(s.scalars(select(Invoice).order_by(Invoice.id)))


def finalized_events(engine) -> list[int]:
    with Session(engine) as s:
        return [int(row.aggregate_id)
                for row in s.scalars(select(OutboxRow).where(OutboxRow.topic == "invoice.finalized"))]


def test_usage_ten_times_the_pattern_is_held_with_its_reasons_and_not_sent(history):
    engine = history
    use(engine, 6, 11000)  # June's calls: 1,100 read, then 11,000 more by a broken meter

    result = bill_customers(engine, month(7), now=at(7), guard=HOLD)

    assert (result.invoices_created, result.invoices_finalized, result.invoices_anomalous) == (1, 0, 1)
    held = invoices(engine)[-1]
    assert (held.status, held.number) == ("draft", None)
    assert held.id not in finalized_events(engine)  # nothing to push to Salesforce
    with Session(engine) as s:
        [listed] = list_held_invoices(s)
        detail = get_invoice(s, held.id, as_of=month(7))
    assert listed.invoice_id == held.id and listed.total.amount == held.total
    kinds = [a.kind for a in listed.anomalies]
    assert "usage" in kinds
    [usage] = [a for a in detail.anomalies if a.kind == "usage"]
    assert usage.reason.startswith("API calls usage 12100 where the customer's 5 invoices had a median of 1000")
    assert usage.released_at is None and isinstance(usage.score, D) and usage.score >= D("4.5")

    with transaction(engine) as s:
        done = release_invoice(s, held.id, note="meter checked: a load test by the customer, billable", on=month(7),
                               now=at(7))
    after = invoices(engine)[-1]
    assert (after.status, after.number) == ("open", done.number)
    assert held.id in finalized_events(engine)
    with Session(engine) as s:
        assert list_held_invoices(s) == []
        released = get_invoice(s, held.id, as_of=month(7)).anomalies
    assert all(a.release_note == "meter checked: a load test by the customer, billable" and a.released_at
               for a in released)


def test_an_upgrade_recorded_by_an_amendment_is_finalized_as_usual(history):
    engine = history
    with transaction(engine) as s:
        amend_subscription(s, "sub-1", Amendment("A-1", 1, AmendmentAction.CHANGE_QUANTITY, date(2026, 6, 15),
                                                 item_id="seats", quantity=D(60)), now=at(6))

    result = bill_customers(engine, month(7), now=at(7), guard=HOLD)

    assert (result.invoices_finalized, result.invoices_anomalous) == (1, 0)
    assert invoices(engine)[-1].status == "open"


def test_a_changed_tax_rate_is_held_and_voiding_it_clears_the_list(history):
    engine = history
    with transaction(engine) as s:
        upsert_customer(s, Customer("cus-1", "Acme", "EUR", tax_rate_percent=D(2)))

    bill_customers(engine, month(7), now=at(7), guard=HOLD)

    held = invoices(engine)[-1]
    with Session(engine) as s:
        reasons = [a.reason for a in get_invoice(s, held.id, as_of=month(7)).anomalies if a.kind == "tax_rate"]
    assert sorted(reasons) == ["API calls taxed at 2 %; the customer's previous invoice with it (2026-06-01) had 20 %",
                               "Seats taxed at 2 %; the customer's previous invoice with it (2026-06-01) had 20 %"]
    with transaction(engine) as s:
        void_invoice(s, held.id, on=month(7), reason="wrong tax rate on the account", now=at(7))
    with Session(engine) as s:
        assert list_held_invoices(s) == []
    assert invoices(engine)[-1].status == "void" and held.id not in finalized_events(engine)


def test_in_flag_mode_the_invoice_is_finalized_and_keeps_its_reasons(history):
    engine = history
    with transaction(engine) as s:
        upsert_customer(s, Customer("cus-1", "Acme", "EUR", tax_rate_percent=D(2)))

    result = bill_customers(engine, month(7), now=at(7), guard=AnomalyGuard("flag"))

    assert (result.invoices_finalized, result.invoices_anomalous) == (1, 1)
    flagged = invoices(engine)[-1]
    assert flagged.status == "open" and flagged.id in finalized_events(engine)
    with Session(engine) as s:
        assert list_held_invoices(s) == []
        assert [a.kind for a in get_invoice(s, flagged.id, as_of=month(7)).anomalies] == ["tax_rate", "tax_rate"]


def test_without_the_guard_nothing_is_scored(history):
    engine = history
    use(engine, 6, 11000)
    result = bill_customers(engine, month(7), now=at(7))
    assert (result.invoices_finalized, result.invoices_anomalous) == (1, 0)
    with Session(engine) as s:
        assert s.scalars(select(InvoiceAnomaly)).all() == []


def test_a_dry_run_says_why_it_would_hold_and_writes_nothing(history):
    engine = history
    use(engine, 6, 11000)
    before = len(invoices(engine))
    result = bill_customers(engine, month(7), now=at(7), guard=HOLD, dry_run=True)
    [preview] = result.previews
    assert preview.held.startswith("anomaly: API calls usage 12100")
    assert len(invoices(engine)) == before


def test_release_refuses_an_invoice_not_held_and_an_empty_note(history):
    engine = history
    first = invoices(engine)[0]
    with transaction(engine) as s, pytest.raises(ConflictError, match="not held for anomalies"):
        release_invoice(s, first.id, note="fine", on=month(7), now=at(7))
    with transaction(engine) as s, pytest.raises(InvalidInputError, match="note"):
        release_invoice(s, first.id, note="   ", on=month(7), now=at(7))
