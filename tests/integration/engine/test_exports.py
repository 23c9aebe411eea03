"""What the engine exports to the CRM: the Account summary has one definition, the same for the
push (the record the connector builds and maps) and for the engine's own summary."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

from sqlmodel import Session

from billing_engine.catalog import make_price, make_product
from billing_engine.customers import Customer
from billing_engine.subscriptions import SubscriptionItem, make_subscription
from billing_engine.use_cases.billing import bill_customers
from billing_engine.use_cases.catalog import upsert_price, upsert_product
from billing_engine.use_cases.customers import upsert_customer
from billing_engine.use_cases.exports import account_billing_summary
from billing_engine.use_cases.payments import record_payment
from billing_engine.use_cases.subscriptions import cancel_subscription, start_subscription
from connector.database import transaction
from connector.sync.records import load_account_summaries
from mappings import apply_outbound, load_specs

PLAN = make_price("pr-plan", make_product("p-plan", "PLAN", "Plan"), currency="EUR", model="flat", unit_price="500")
ACCOUNT = "001000000000001AAA"
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
    assert (record["billing_status"], record["mrr"], record["balance"], record["billing_ends_on"]) == \
        (summary.billing_status, summary.mrr, summary.balance, summary.ends_before)
    assert (pushed["Billing_Status__c"], pushed["MRR__c"], pushed["Balance__c"]) == ("cancelling", D("500.00"),
                                                                                     D("400.00"))
    with Session(engine) as s:  # after its end date it is cancelled, with no MRR
        ended = account_billing_summary(s, "cus-a", date(2027, 1, 1))
    assert (ended.billing_status, ended.mrr) == ("cancelled", D("0.00"))
