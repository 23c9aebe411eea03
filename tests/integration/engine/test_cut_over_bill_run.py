"""The cut-over on the backend under test: a subscription's own ``bills_from`` is stored and read
back, the bill run's floor is applied to every subscription, usage before it is not billed, and
MRR keeps the true history (docs/billing-rules.md §19 Cut-over)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal as D

from sqlalchemy import select
from sqlmodel import Session

from billing_engine.catalog import make_price, make_product
from billing_engine.customers import Customer
from billing_engine.storage.invoices import Invoice, invoice_lines
from billing_engine.subscriptions import SubscriptionItem, make_subscription
from billing_engine.use_cases.billing import bill_customers
from billing_engine.use_cases.catalog import upsert_price, upsert_product
from billing_engine.use_cases.customers import upsert_customer
from billing_engine.use_cases.revenue import customer_mrr, mrr_bridge_report
from billing_engine.use_cases.subscriptions import get_subscription, start_subscription
from billing_engine.use_cases.usage import record_usage
from connector.database import transaction

SEATS = make_price("pr-cut-seats", make_product("p-cut-seats", "SEATS", "Seats"), currency="EUR", model="per_unit",
                   unit_price="25")
API = make_price("pr-cut-api", make_product("p-cut-api", "API", "API calls"), currency="EUR", model="per_unit",
                 unit_price="0.1", charge_type="usage")
CUT_OVER = date(2026, 12, 1)


def start(engine):
    with transaction(engine) as s:
        for cid in ("cus-old", "cus-through"):
            upsert_customer(s, Customer(cid, cid, "EUR"))
        for price in (SEATS, API):
            upsert_product(s, price.product)
            upsert_price(s, price)
        # Since 15 Mar 2022, 12 seats, with metered API calls.
        start_subscription(s, make_subscription(
            "sub-old", "cus-old", "EUR", date(2022, 3, 15),
            [SubscriptionItem("seats", SEATS, D(12)), SubscriptionItem("api", API, D(0))]),
            now=datetime(2022, 3, 15, tzinfo=UTC))
        # Since 1 Jan 2024, billed elsewhere through 31 Dec 2026.
        start_subscription(s, make_subscription(
            "sub-through", "cus-through", "EUR", date(2024, 1, 1), [SubscriptionItem("seats", SEATS, D(4))],
            bills_from=date(2027, 1, 1)), now=datetime(2024, 1, 1, tzinfo=UTC))
        for key, on, quantity in (("before", date(2026, 11, 20), 5000), ("after", date(2026, 12, 3), 800)):
            record_usage(s, subscription_id="sub-old", item_id="api", quantity=D(quantity),
                         occurred_at=datetime(on.year, on.month, on.day, 12, tzinfo=UTC), source="meter",
                         idempotency_key=key)


def lines_of(engine, customer_id):
    with Session(engine) as s:
        invoices = s.scalars(select(Invoice).where(Invoice.customer_id == customer_id)
                             .order_by(Invoice.id)).all()
        return invoices, [[(ln.kind, ln.starts_on, ln.net) for ln in invoice_lines(s, inv.id)]
                          for inv in invoices]


def test_the_bill_run_charges_nothing_before_the_cut_over(engine):
    start(engine)
    with Session(engine) as s:
        assert get_subscription(s, "sub-through").bills_from == date(2027, 1, 1)
        assert get_subscription(s, "sub-old").bills_from is None

    result = bill_customers(engine, date(2026, 12, 6), bills_from=CUT_OVER)
    assert (result.invoices_created, result.failures) == (1, {})
    invoices, lines = lines_of(engine, "cus-old")
    # [15 Nov, 15 Dec) straddles the cut-over: 300.00 × 14/30 = 140.00; nothing from 2022 to November.
    assert lines == [[("recurring", CUT_OVER, D("140.00"))]]
    assert invoices[0].total == D("140.00")
    assert lines_of(engine, "cus-through") == ([], [])  # billed elsewhere through 31 Dec 2026

    # 15 Dec: the next month in advance, and the API calls of [1 Dec, 15 Dec) only: 800 × 0.10 = 80.00
    # (the 5,000 calls of 20 Nov were before the cut-over).
    bill_customers(engine, date(2026, 12, 15), bills_from=CUT_OVER)
    _, lines = lines_of(engine, "cus-old")
    assert lines[1] == [("usage", CUT_OVER, D("80.00")), ("recurring", date(2026, 12, 15), D("300.00"))]

    # 1 Jan 2027: the deal billed elsewhere starts with its first month, 4 × 25 = 100.00.
    bill_customers(engine, date(2027, 1, 1), bills_from=CUT_OVER)
    _, lines = lines_of(engine, "cus-through")
    assert lines == [[("recurring", date(2027, 1, 1), D("100.00"))]]


def test_mrr_history_is_true_whatever_the_cut_over(engine):
    start(engine)
    bill_customers(engine, date(2026, 12, 6), bills_from=CUT_OVER)
    with Session(engine) as s:
        assert customer_mrr(s, "cus-old", date(2023, 6, 30)) == D("300.00")
        assert customer_mrr(s, "cus-through", date(2024, 6, 30)) == D("100.00")
    rows = {r["month"]: r for r in mrr_bridge_report(engine, "2022-03", "2024-01")}
    assert (rows["2022-03"]["new"], rows["2022-03"]["closing"]) == ("300.00", "300.00")
    assert (rows["2024-01"]["new"], rows["2024-01"]["closing"]) == ("100.00", "400.00")
