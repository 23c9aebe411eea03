"""What the engine exports to the CRM: the Account summary has one definition, the same for the
push (the record the connector builds and maps) and for the engine's own summary."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

from sqlmodel import Session, select

from billing_engine.catalog import make_price, make_product
from billing_engine.customers import Customer
from billing_engine.storage.invoices import InvoiceLine
from billing_engine.subscriptions import Amendment, AmendmentAction, SubscriptionItem, make_subscription
from billing_engine.use_cases.billing import bill_customers
from billing_engine.use_cases.catalog import upsert_price, upsert_product
from billing_engine.use_cases.customers import upsert_customer
from billing_engine.use_cases.exports import (
    account_billing_summary,
    invoices_issued_between,
    subscription_links,
)
from billing_engine.use_cases.payments import record_payment
from billing_engine.use_cases.revenue import mrr_bridge_report
from billing_engine.use_cases.subscriptions import amend_subscription, cancel_subscription, start_subscription
from connector.database import transaction
from connector.sync.installation import Keys
from connector.sync.records import (
    load_account_summaries,
    load_invoice_lines,
    load_invoices,
    load_subscription_links,
)
from mappings import apply_outbound, load_specs

PLAN = make_price("pr-plan", make_product("p-plan", "PLAN", "Plan"), currency="EUR", model="flat", unit_price="500")
ACCOUNT = "001000000000001AAA"
OPPORTUNITY = "006000000000001AAA"
JAN = date(2026, 1, 1)


def test_a_subscription_cancelled_at_the_end_of_its_term_is_cancelling_mid_term_in_exports_and_summary(engine):
    with transaction(engine) as s:
        upsert_customer(s, Customer("cus-a", "Acme", "EUR", payment_terms_days=365, salesforce_account_id=ACCOUNT))
        upsert_product(s, PLAN.product)
        upsert_price(s, PLAN)
        start_subscription(s, make_subscription("sub-a", "cus-a", "EUR", JAN, [SubscriptionItem("a-plan", PLAN)],
                                                term_months=12, auto_renew=False))
    bill_customers(engine, JAN)
    with transaction(engine) as s:
        record_payment(s, customer_id="cus-a", amount=D("100.00"), currency="EUR", received_on=date(2026, 1, 10),
                       method="bank_transfer", source="bank", external_reference="A-1")
        cancel_subscription(s, "sub-a", date(2026, 3, 10))  # at the end of the term: 1 Jan 2027
    mid_term = date(2026, 6, 15)

    with Session(engine) as s:
        summary = account_billing_summary(s, "cus-a", mid_term)
        record = load_account_summaries(s, ["cus-a"], mid_term)["cus-a"]
    [spec] = load_specs().outbound_for("account_summary")
    pushed = apply_outbound(spec, record)

    assert (summary.billing_status, summary.ends_before) == ("cancelling", date(2027, 1, 1))
    assert (summary.mrr, summary.balance) == (D("500.00"), D("400.00"))
    assert (record["billing_status"], record["mrr"], record["balance"]) == \
        (summary.billing_status, summary.mrr, summary.balance)
    assert (pushed["Billing_Status__c"], pushed["MRR__c"], pushed["Balance__c"]) == ("cancelling", D("500.00"),
                                                                                     D("400.00"))
    # Salesforce shows the last day billed and served: the day before the exclusive end.
    assert (record["billing_ends_on"], pushed["Billing_Ends_On__c"]) == (date(2026, 12, 31), "2026-12-31")
    with Session(engine) as s:  # after its end date it is cancelled, with no MRR
        ended = account_billing_summary(s, "cus-a", date(2027, 1, 1))
    assert (ended.billing_status, ended.mrr, ended.ends_before) == ("cancelled", D("0.00"), date(2027, 1, 1))


def test_a_subscription_link_carries_the_status_and_end_date_of_the_account_summary_rules(engine):
    """The deal that started a subscription shows its status as of a date with the Account summary's
    vocabulary: active, then cancelling with its last day once an end-of-term cancellation is recorded,
    cancelled after it; past_due while the customer has an overdue invoice."""
    with transaction(engine) as s:
        upsert_customer(s, Customer("cus-l", "Lumen", "EUR", payment_terms_days=30, salesforce_account_id=ACCOUNT))
        upsert_product(s, PLAN.product)
        upsert_price(s, PLAN)
        start_subscription(s, make_subscription("sub-l", "cus-l", "EUR", JAN, [SubscriptionItem("l-plan", PLAN)],
                                                term_months=12, auto_renew=False, external_key=OPPORTUNITY))
    [spec] = load_specs().outbound_for("subscription_link")

    def link_on(day: date) -> tuple[str, date | None, dict]:
        with Session(engine) as s:
            [link] = subscription_links(s, ["sub-l"], day).values()
            record = load_subscription_links(s, ["sub-l"], day)["sub-l"]
        pushed = apply_outbound(spec, record)
        assert (record["status"], record["subscription_id"]) == (link.status, "sub-l")
        return link.status, link.ends_before, pushed

    status, ends, pushed = link_on(date(2026, 1, 15))
    assert (status, ends) == ("active", None)
    assert (pushed["Billsync_Subscription_Status__c"], pushed["Billsync_Subscription_Ends_On__c"]) == ("active", None)

    bill_customers(engine, JAN)  # due Jan 31, unpaid
    status, _, pushed = link_on(date(2026, 2, 1))
    assert (status, pushed["Billsync_Subscription_Status__c"]) == ("past_due", "past_due")
    with Session(engine) as s:
        assert account_billing_summary(s, "cus-l", date(2026, 2, 1)).billing_status == "past_due"

    with transaction(engine) as s:
        record_payment(s, customer_id="cus-l", amount=D("500.00"), currency="EUR", received_on=date(2026, 2, 2),
                       method="bank_transfer", source="bank", external_reference="L-1")
        cancel_subscription(s, "sub-l", date(2026, 3, 10))  # at the end of the term: 1 Jan 2027
    status, ends, pushed = link_on(date(2026, 3, 15))
    assert (status, ends) == ("cancelling", date(2027, 1, 1))
    assert (pushed["Billsync_Subscription_Status__c"], pushed["Billsync_Subscription_Ends_On__c"]) == \
        ("cancelling", "2026-12-31")

    status, ends, pushed = link_on(date(2027, 1, 1))
    assert (status, ends) == ("cancelled", date(2027, 1, 1))
    assert (pushed["Billsync_Subscription_Status__c"], pushed["Billsync_Subscription_Ends_On__c"]) == \
        ("cancelled", "2026-12-31")


SEAT = make_price("pr-seat", make_product("p-seat", "SEAT", "Seat"), currency="EUR", model="per_unit",
                  unit_price="25")
CARE = make_price("pr-care", make_product("p-care", "CARE", "Care"), currency="EUR", model="percent_of",
                  percent="10", covered_product_codes=["SEAT"])


def test_a_prorated_credit_with_a_line_discount_reaches_the_invoice_row_and_the_pushed_invoice_exactly(engine):
    """docs/billing-rules.md §3 Proration, §13 Invoices: 12 seats × 25 EUR with 10 % off, 20 seats from
    Jan 15 2026 (17/31 days left), a 10 % care item on the seats. The credit line is stored and pushed as
    gross −164.52, discount −16.46, net −148.06; the invoice's Subtotal__c and Discount__c are 119.54 and
    10.96 (not 152.46 and 43.88), its total 108.58."""
    with transaction(engine) as s:
        upsert_customer(s, Customer("cus-b", "Bolt", "EUR", salesforce_account_id=ACCOUNT))
        for price in (SEAT, CARE):
            upsert_product(s, price.product)
            upsert_price(s, price)
        start_subscription(s, make_subscription("sub-b", "cus-b", "EUR", JAN, [
            SubscriptionItem("b-seats", SEAT, D(12), discount_percent=D(10)), SubscriptionItem("b-care", CARE)]))
    bill_customers(engine, JAN)
    change_on = date(2026, 1, 15)
    with transaction(engine) as s:
        amend_subscription(s, "sub-b", Amendment("", 0, AmendmentAction.CHANGE_QUANTITY, change_on,
                                                 item_id="b-seats", quantity=D(20)))
    bill_customers(engine, change_on)

    with Session(engine) as s:
        [invoice] = invoices_issued_between(s, change_on, date(2026, 1, 16), change_on)
        record = load_invoices(s, [invoice.invoice_id], change_on, Keys("inst"))[invoice.invoice_id]
        line_records = load_invoice_lines(s, [invoice.invoice_id], Keys("inst"))[invoice.invoice_id]
        rows = s.exec(select(InvoiceLine).where(InvoiceLine.invoice_id == invoice.invoice_id)
                      .order_by(InvoiceLine.position)).all()
    assert [(r.kind, r.gross, r.line_discount, r.net) for r in rows] == [
        ("proration_credit", D("-164.52"), D("-16.46"), D("-148.06")),
        ("proration_charge", D("274.19"), D("27.42"), D("246.77")),
        ("proration_charge", D("9.87"), D("0.00"), D("9.87"))]
    assert (invoice.subtotal, invoice.discount, invoice.total) == (D("119.54"), D("10.96"), D("108.58"))

    specs = load_specs()
    [invoice_spec] = specs.outbound_for("invoice")
    [line_spec] = specs.outbound_for("invoice_line")
    pushed = apply_outbound(invoice_spec, record)
    assert (pushed["Subtotal__c"], pushed["Discount__c"], pushed["Total__c"]) == \
        (D("119.54"), D("10.96"), D("108.58"))
    pushed_credit = apply_outbound(line_spec, line_records[0])
    assert (pushed_credit["Kind__c"], pushed_credit["Discount__c"], pushed_credit["Amount__c"]) == \
        ("proration_credit", D("-16.46"), D("-148.06"))


def test_a_cancellation_on_the_first_day_recorded_after_billing_credits_the_billed_month(engine):
    """docs/billing-rules.md §10 Cancellations: 500/month billed on Jan 1 2026, cancelled immediately
    effective Jan 1 and recorded on Jan 5: the next bill run credits the 500.00 (a credit note that
    becomes customer credit against the open invoice), so the customer owes nothing and has no MRR."""
    with transaction(engine) as s:
        upsert_customer(s, Customer("cus-c", "Cobalt", "EUR", salesforce_account_id=ACCOUNT))
        upsert_product(s, PLAN.product)
        upsert_price(s, PLAN)
        start_subscription(s, make_subscription("sub-c", "cus-c", "EUR", JAN, [SubscriptionItem("c-plan", PLAN)]))
    bill_customers(engine, JAN)
    with transaction(engine) as s:
        cancel_subscription(s, "sub-c", JAN, immediate=True)
    result = bill_customers(engine, date(2026, 1, 5))
    assert result.credit_notes_issued == 1

    with Session(engine) as s:
        summary = account_billing_summary(s, "cus-c", date(2026, 1, 5))
        [credit] = s.exec(select(InvoiceLine).where(InvoiceLine.kind == "proration_credit")).all()
    assert (credit.gross, credit.net, credit.starts_on, credit.ends_before) == \
        (D("-500.00"), D("-500.00"), JAN, date(2026, 2, 1))
    assert (summary.mrr, summary.balance, summary.credit_balance) == (D("0.00"), D("0.00"), D("500.00"))


def test_a_29000_yearly_contract_shows_arr_29000_in_the_summary_the_push_and_the_bridge(engine):
    """docs/billing-rules.md §17 Revenue metrics: MRR and ARR: ARR comes from the yearly amount, so a
    29,000/year contract shows ARR 29,000.00 (MRR 2,416.67), not 2,416.67 × 12 = 29,000.04."""
    yearly = make_price("pr-year", make_product("p-year", "PLATFORM", "Platform"), currency="EUR", model="flat",
                        interval="year", unit_price="29000")
    with transaction(engine) as s:
        upsert_customer(s, Customer("cus-y", "Yearly", "EUR", salesforce_account_id=ACCOUNT))
        upsert_product(s, yearly.product)
        upsert_price(s, yearly)
        start_subscription(s, make_subscription("sub-y", "cus-y", "EUR", JAN, [SubscriptionItem("y-plan", yearly)]))
    on = date(2026, 3, 15)
    with Session(engine) as s:
        summary = account_billing_summary(s, "cus-y", on)
        record = load_account_summaries(s, ["cus-y"], on)["cus-y"]
        bridge = mrr_bridge_report(s, "2026-01", "2026-02")
    [spec] = load_specs().outbound_for("account_summary")
    pushed = apply_outbound(spec, record)

    assert (summary.mrr, summary.arr) == (D("2416.67"), D("29000.00"))
    assert (record["mrr"], record["arr"]) == (D("2416.67"), D("29000.00"))
    assert (pushed["MRR__c"], pushed["ARR__c"]) == (D("2416.67"), D("29000.00"))
    assert [(row["month"], row["closing"], row["arr"]) for row in bridge] == [
        ("2026-01", "2416.67", "29000.00"), ("2026-02", "2416.67", "29000.00")]
