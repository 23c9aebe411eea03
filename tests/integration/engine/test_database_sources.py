"""The bill run and the MRR bridge straight from the engine's tables: subscriptions started through
the subscription use cases, billed by ``bill_customers``, measured by ``mrr_bridge_report``; MRR
changes announced to the outbox; the Account summary the push writes."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal as D

from sqlalchemy import event, select, update
from sqlmodel import Session

from billing_engine.catalog import make_price, make_product
from billing_engine.customers import Customer
from billing_engine.storage.invoices import Invoice, invoice_lines
from billing_engine.storage.outbox import OutboxRow
from billing_engine.storage.revenue import CustomerMrr
from billing_engine.subscriptions import Amendment, AmendmentAction, SubscriptionItem, make_subscription
from billing_engine.use_cases.billing import bill_customers
from billing_engine.use_cases.catalog import upsert_price, upsert_product
from billing_engine.use_cases.customers import upsert_customer
from billing_engine.use_cases.exports import account_billing_summary
from billing_engine.use_cases.payments import record_payment
from billing_engine.use_cases.revenue import (
    SubscriptionMrrSource,
    customer_mrr,
    customers_mrr,
    mrr_bridge,
    mrr_bridge_report,
)
from billing_engine.use_cases.subscriptions import (
    amend_subscription,
    cancel_subscription,
    get_subscription,
    start_subscription,
)
from billing_engine.use_cases.usage import record_usage
from connector.database import transaction

SEATS = make_price("pr-seats", make_product("p-seats", "SEATS", "Licences"), currency="EUR", model="graduated",
                   tiers=[{"up_to": 5, "unit_price": 200}, {"up_to": 10, "unit_price": 150},
                          {"up_to": None, "unit_price": 100}])
SUPPORT = make_price("pr-support", make_product("p-support", "SUPPORT", "Premium support"), currency="EUR",
                     model="percent_of", percent="10", covered_product_codes=["SEATS"])
DATA = make_price("pr-data", make_product("p-data", "DATA", "Data plan"), currency="EUR", model="allowance",
                  charge_type="usage", unit_price="10", included_units="40", overage_unit_price="0.50")
PRO = make_price("pr-pro", make_product("p-pro", "PRO", "Pro plan"), currency="USD", model="flat", unit_price="300")
BASE = make_price("pr-base", make_product("p-base", "BASE", "Base fee"), currency="JPY", model="flat",
                  unit_price="5000")
YEARLY = make_price("pr-year", make_product("p-year", "YEAR", "Annual plan"), currency="EUR", model="per_unit",
                    interval="year", unit_price="100")
CUSTOMERS = [Customer("cus-a", "Acme GmbH", "EUR", tax_rate_percent=D(20)),
             Customer("cus-b", "Bolt Inc", "USD", tax_exempt_reason="Export of services"),
             Customer("cus-c", "Chiyoda KK", "JPY", tax_rate_percent=D(10)),
             Customer("cus-d", "Dormant SA", "EUR")]
JAN, FEB, MAR, APR = (date(2026, m, 1) for m in (1, 2, 3, 4))


def seed_catalog(engine):
    with transaction(engine) as s:
        for customer in CUSTOMERS:
            upsert_customer(s, customer)
        for price in (SEATS, SUPPORT, DATA, PRO, BASE, YEARLY):
            upsert_product(s, price.product)
            upsert_price(s, price)


def start_all(engine):
    subs = [
        make_subscription("sub-a", "cus-a", "EUR", JAN, [SubscriptionItem("a-seats", SEATS, quantity=D(12)),
                                                         SubscriptionItem("a-support", SUPPORT),
                                                         SubscriptionItem("a-data", DATA)],
                          external_key="006000000000001AAA"),
        make_subscription("sub-b", "cus-b", "USD", JAN, [SubscriptionItem("b-pro", PRO)]),
        make_subscription("sub-c", "cus-c", "JPY", JAN, [SubscriptionItem("c-base", BASE)]),
    ]
    with transaction(engine) as s:
        for sub in subs:
            start_subscription(s, sub, now=datetime(2025, 12, 20, 9, tzinfo=UTC))


def invoices_on(engine, on):
    with Session(engine) as s:
        return {inv.customer_id: inv for inv in s.scalars(select(Invoice).where(Invoice.bill_run_on == on))}


def outbox(engine, topic=None):
    with Session(engine) as s:
        rows = s.scalars(select(OutboxRow).order_by(OutboxRow.id)).all()
    return [r for r in rows if topic is None or r.topic == topic]


def deliver_outbox(engine):
    """What the push does once it delivered the rows."""
    with transaction(engine) as s:
        s.execute(update(OutboxRow.__table__).values(status="done"))


def test_subscriptions_started_through_services_are_billed_from_the_database(engine):
    seed_catalog(engine)
    start_all(engine)
    # subscription.created carries the Opportunity id (the push writes the subscription id back to it)
    created = {r.aggregate_id: json.loads(r.payload) for r in outbox(engine, "subscription.created")}
    assert created["sub-a"]["salesforce_opportunity_id"] == "006000000000001AAA"
    assert created["sub-b"]["salesforce_opportunity_id"] is None
    assert sorted(r.aggregate_id for r in outbox(engine, "customer.summary_changed")) == ["cus-a", "cus-b", "cus-c"]

    result = bill_customers(engine, JAN)
    assert (result.invoices_created, result.invoices_finalized, result.failures) == (3, 3, {})
    jan = invoices_on(engine, JAN)
    # A: seats graduated 12 = 1,950 + support 10 % = 195 → 2,145 + 20 % = 2,574.00 (usage in arrears)
    # B: 300 exempt; C: 5,000 + 10 % = 5,500; D has no subscription: not billed
    assert {c: (inv.total, inv.status, inv.number is not None) for c, inv in jan.items()} == {
        "cus-a": (D("2574.00"), "open", True), "cus-b": (D("300.00"), "open", True),
        "cus-c": (D(5500), "open", True)}
    assert jan["cus-b"].tax_reason == "Export of services"
    assert bill_customers(engine, JAN).invoices_created == 0  # idempotent

    # February: 55 GB of January data → 10 + 15 × 0.50 = 17.50; then 5 GB more arrive late
    with transaction(engine) as s:
        record_usage(s, subscription_id="sub-a", item_id="a-data", quantity=D(55),
                         occurred_at=datetime(2026, 1, 20, tzinfo=UTC), source="meter", idempotency_key="a-1")
    bill_customers(engine, FEB)
    assert invoices_on(engine, FEB)["cus-a"].net == D("2162.50")
    with transaction(engine) as s:
        record_usage(s, subscription_id="sub-a", item_id="a-data", quantity=D(5),
                         occurred_at=datetime(2026, 1, 31, 23, tzinfo=UTC), source="meter", idempotency_key="a-2")
    bill_customers(engine, MAR)
    mar_a = invoices_on(engine, MAR)["cus-a"]
    with Session(engine) as s:
        lines = invoice_lines(s, mar_a.id)
    late = [ln for ln in lines if ln.starts_on == JAN]
    # one usage line for January: 60 GB → 20.00, 17.50 billed before → +2.50
    assert [(ln.kind, ln.quantity, ln.net) for ln in late] == [("usage", D(5), D("2.50"))]
    assert mar_a.net == D("2145.00") + D("10.00") + D("2.50")  # Feb data 0 GB → 10


def test_the_bill_run_loads_subscriptions_in_a_fixed_number_of_queries(engine):
    seed_catalog(engine)
    with transaction(engine) as s:
        for n in range(30):
            cid = f"cus-x{n:02d}"
            upsert_customer(s, Customer(cid, cid, "EUR"))
            start_subscription(s, make_subscription(f"sub-x{n:02d}", cid, "EUR", JAN, [
                SubscriptionItem(f"x{n}-seats", SEATS, quantity=D(1 + n % 12)), SubscriptionItem(f"x{n}-s", SUPPORT)]))
    statements = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        result = bill_customers(engine, JAN, batch_size=100)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert result.invoices_created == 30
    loads = [s for s in statements if "FROM subscription_items" in s or "FROM amendments" in s]
    assert len(loads) == 2, "items and amendments: one query each per batch, not one per subscription"
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(reads) < 15, reads


def test_the_mrr_bridge_from_the_database_equals_the_pure_computation(engine):
    seed_catalog(engine)
    start_all(engine)
    with transaction(engine) as s:
        upsert_customer(s, Customer("cus-e", "Echo", "EUR"))
        start_subscription(s, make_subscription("sub-e", "cus-e", "EUR", date(2026, 2, 10),
                                                         [SubscriptionItem("e-year", YEARLY, quantity=D(3))]))
        amend_subscription(s, "sub-a", Amendment("", 0, AmendmentAction.CHANGE_QUANTITY,
                                                                   date(2026, 4, 16), item_id="a-seats",
                                                                   quantity=D(15)))
        cancel_subscription(s, "sub-c", date(2026, 9, 11), immediate=True)
    rows = mrr_bridge_report(engine, "2026-01", "2026-12")
    with Session(engine) as s:
        subs = [get_subscription(s, sid) for sid in ("sub-a", "sub-b", "sub-c", "sub-e")]
        pure, _ = mrr_bridge(s, "2026-01", "2026-12", source=SubscriptionMrrSource(lambda _s: subs))
        assert mrr_bridge_report(s, "2026-01", "2026-12") == rows  # a session works too
    assert rows == [r.as_row() for r in pure]
    closing = {(r["month"], r["currency"]): D(r["closing"]) for r in rows}
    # EUR: A 2,145 + E 3 × 100 / 12 = 25.00 → 2,170.00; from Apr 16 A is 2,250 + 225 = 2,475 → 2,500.00
    assert closing[("2026-03", "EUR")] == D("2170.00") and closing[("2026-04", "EUR")] == D("2500.00")
    assert closing[("2026-08", "JPY")] == D(5000) and closing[("2026-09", "JPY")] == 0


def test_every_mrr_change_is_announced_including_a_cancellation_taking_effect(engine):
    seed_catalog(engine)
    start_all(engine)
    bill_customers(engine, JAN)
    deliver_outbox(engine)
    with Session(engine) as s:
        assert customer_mrr(s, "cus-a", JAN) == D("2145.00")
        assert customer_mrr(s, "cus-d", JAN) == D("0.00")
        # many customers in one read: the same figures
        assert customers_mrr(s, {"cus-a": "EUR", "cus-d": "EUR"}, JAN) == {"cus-a": D("2145.00"), "cus-d": D("0.00")}
    # recorded in February, effective Mar 15: announced when recorded...
    with transaction(engine) as s:
        cancel_subscription(s, "sub-c", date(2026, 3, 15), immediate=True,
                                     now=datetime(2026, 2, 10, 8, tzinfo=UTC))
    assert [r.aggregate_id for r in outbox(engine, "customer.summary_changed") if r.status == "pending"] == ["cus-c"]
    deliver_outbox(engine)
    bill_customers(engine, FEB)
    bill_customers(engine, MAR)
    deliver_outbox(engine)
    # ...and again when it takes effect: the April bill run sees C's MRR drop to 0 (no invoice needed for it)
    bill_customers(engine, APR)
    pending = [r for r in outbox(engine) if r.status == "pending"]
    summary = [r.aggregate_id for r in pending if r.topic == "customer.summary_changed"]
    assert "cus-c" in summary
    with Session(engine) as s:
        assert customer_mrr(s, "cus-c", APR) == D(0)
        mrr_rows = {r.customer_id: r.mrr for r in s.scalars(select(CustomerMrr))}
    assert mrr_rows == {"cus-a": D("2145.00"), "cus-b": D("300.00"), "cus-c": D(0)}
    # nothing changed for A and B in April: no summary row for them unless an invoice was issued
    deliver_outbox(engine)
    bill_customers(engine, date(2026, 4, 2))
    assert [r for r in outbox(engine) if r.status == "pending"] == []


def test_the_account_summary_has_what_the_account_push_writes(engine):
    seed_catalog(engine)
    start_all(engine)
    bill_customers(engine, JAN)
    with Session(engine) as s:
        a = account_billing_summary(s, "cus-a", date(2026, 1, 15))
        assert (a.currency, a.mrr, a.arr, a.balance, a.last_invoice_on, a.billing_status) == (
            "EUR", D("2145.00"), D("25740.00"), D("2574.00"), JAN, "active")
        assert a.as_payload()["mrr"] == "2145.00"
        # net 30: unpaid on Feb 1 → past due
        assert account_billing_summary(s, "cus-a", date(2026, 2, 1)).billing_status == "past_due"
        d = account_billing_summary(s, "cus-d", JAN)
        assert (d.mrr, d.balance, d.last_invoice_on, d.billing_status) == (D("0.00"), D("0.00"), None, "none")
    with transaction(engine) as s:
        record_payment(s, customer_id="cus-c", amount=D(5500), currency="JPY", received_on=date(2026, 1, 5),
                           method="bank_transfer", source="bank", external_reference="C-1")
        cancel_subscription(s, "sub-c", date(2026, 1, 20), immediate=True)
    with Session(engine) as s:
        c = account_billing_summary(s, "cus-c", FEB)
        assert (c.mrr, c.arr, c.balance, c.billing_status) == (D(0), D(0), D(0), "cancelled")
