"""A French seller's bill run: each line taxed by its product's category and the countries, tax rounded
once per VAT group, the buyer's references splitting invoices, a product without a category refused
with a readable reason (docs/billing-rules.md §14 Tax)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal as D

from sqlmodel import Session, select

from billing_engine.catalog import Product, make_price
from billing_engine.customers import Address, Customer
from billing_engine.storage.invoices import BillRunError, CreditNoteLine, Invoice, InvoiceTax, invoice_lines
from billing_engine.subscriptions import SubscriptionItem, make_subscription
from billing_engine.tax import ProductTax, TaxCategory
from billing_engine.use_cases.billing import bill_customers, issue_credit_note, void_invoice
from billing_engine.use_cases.catalog import upsert_price, upsert_product
from billing_engine.use_cases.customers import upsert_customer
from billing_engine.use_cases.subscriptions import start_subscription
from connector.database import transaction

JAN = date(2026, 1, 1)
LIC = make_price("pr-lic", Product("p-lic", "LIC", "Licences", tax=ProductTax(TaxCategory.STANDARD)),
                 currency="EUR", model="per_unit", unit_price="10.04")
BOOK = make_price("pr-book", Product("p-book", "BOOK", "E-book library", tax=ProductTax(TaxCategory.REDUCED, D("5.5"))),
                  currency="EUR", model="flat", unit_price="100")
BARE = make_price("pr-bare", Product("p-bare", "BARE", "Uncategorised"), currency="EUR", model="flat",
                  unit_price="50")
PARIS = Address("1 rue de Rivoli", "", "Paris", "75001", "", "FR")


def seed(engine, customers, subscriptions):
    with transaction(engine) as s:
        for price in (LIC, BOOK, BARE):
            upsert_product(s, price.product)
            upsert_price(s, price)
        for customer in customers:
            upsert_customer(s, customer)
        for sub in subscriptions:
            start_subscription(s, sub, now=datetime(2025, 12, 20, tzinfo=UTC))


def rows(engine, model, **where):
    with Session(engine) as s:
        stmt = select(model)
        for name, value in where.items():
            stmt = stmt.where(getattr(model, name) == value)
        return list(s.scalars(stmt.order_by(model.id)).all())


def test_a_french_invoice_with_20_and_5_5_percent_lines(engine):
    # 3 licences at 10.04 (30.12 at 20 % → 6.024 → 6.02) and the library at 5.5 % with 10 % off
    # (90.00 → 4.95): total 120.12 + 10.97 = 131.09.
    customer = Customer("cus-fr", "Dupont SARL", "EUR", billing_address=PARIS, tax_rate_percent=D(20))
    sub = make_subscription("sub-fr", "cus-fr", "EUR", JAN, [SubscriptionItem("fr-lic", LIC, quantity=D(3)),
                                                           SubscriptionItem("fr-book", BOOK, discount_percent=D(10))])
    seed(engine, [customer], [sub])
    result = bill_customers(engine, JAN, seller_country="FR")
    assert (result.invoices_finalized, result.failures) == (1, {})
    [inv] = rows(engine, Invoice)
    assert (inv.net, inv.tax, inv.total) == (D("120.12"), D("10.97"), D("131.09"))
    assert [(t.category, t.tax_percent, t.net, t.tax) for t in rows(engine, InvoiceTax)] == [
        ("S", D("5.5"), D("90.00"), D("4.95")), ("S", D(20), D("30.12"), D("6.02"))]
    with Session(engine) as s:
        assert [(ln.product_code, ln.tax_category, ln.tax_percent) for ln in invoice_lines(s, inv.id)] == [
            ("LIC", "S", D(20)), ("BOOK", "S", D("5.5"))]

    # An amount alone cannot say which VAT group it credits; voiding credits each group at its rate.
    with transaction(engine) as s:
        try:
            issue_credit_note(s, inv.id, amount=D("10.00"), reason="goodwill", on=date(2026, 1, 5))
        except Exception as exc:  # noqa: BLE001 - the message is what finance reads
            refused = str(exc)
    assert refused == "amount: invoice INV-2026-000001 has 2 VAT groups; credit its lines instead of an amount"
    with transaction(engine) as s:
        void_invoice(s, inv.id, on=date(2026, 1, 5), reason="order cancelled")
    lines = rows(engine, CreditNoteLine)
    assert [(ln.net, ln.tax_category, ln.tax_percent) for ln in lines] == [
        (D("90.00"), "S", D("5.5")), (D("30.12"), "S", D(20))]


def test_an_intra_eu_business_is_reverse_charged_and_an_export_is_zero_rated(engine):
    customers = [Customer("cus-de", "Acme GmbH", "EUR", billing_address=Address(country="DE"),
                          vat_id="DE136695976", tax_rate_percent=D(19)),
                 Customer("cus-us", "Bolt Inc", "EUR", billing_address=Address(country="US"))]
    subs = [make_subscription("sub-de", "cus-de", "EUR", JAN, [SubscriptionItem("de-lic", LIC, quantity=D(10))]),
            make_subscription("sub-us", "cus-us", "EUR", JAN, [SubscriptionItem("us-lic", LIC, quantity=D(10))])]
    seed(engine, customers, subs)
    bill_customers(engine, JAN, seller_country="FR", default_tax_percent=D(20))
    invoices = {inv.customer_id: inv for inv in rows(engine, Invoice)}
    assert (invoices["cus-de"].tax, invoices["cus-de"].total, invoices["cus-de"].tax_reason) == (
        D("0.00"), D("100.40"), "Reverse charge")
    assert (invoices["cus-us"].tax, invoices["cus-us"].tax_reason) == (D("0.00"), "Export outside the EU")
    assert sorted((t.category, t.reason) for t in rows(engine, InvoiceTax)) == [
        ("AE", "Reverse charge"), ("G", "Export outside the EU")]


def test_a_product_without_a_tax_category_on_a_french_invoice_is_refused_with_the_reason(engine):
    customer = Customer("cus-fr", "Dupont SARL", "EUR", billing_address=PARIS)
    sub = make_subscription("sub-fr", "cus-fr", "EUR", JAN, [SubscriptionItem("fr-bare", BARE)])
    seed(engine, [customer], [sub])
    result = bill_customers(engine, JAN, seller_country="FR", default_tax_percent=D(20))
    assert result.invoices_created == 0
    assert result.failures["cus-fr"] == ("InvalidInputError: product BARE: has no tax category; a French invoice "
                                         "needs the VAT category of every line (Tax_Category__c on the product)")
    assert [e.customer_id for e in rows(engine, BillRunError)] == ["cus-fr"]
    assert rows(engine, Invoice) == []
    # Without a French seller the same product bills at the customer's rate, as it always did.
    assert bill_customers(engine, JAN, default_tax_percent=D(20)).invoices_finalized == 1
    [inv] = rows(engine, Invoice)
    assert (inv.tax, inv.total) == (D("10.00"), D("60.00"))


def test_subscriptions_with_different_purchase_orders_are_invoiced_apart(engine):
    customer = Customer("cus-fr", "Dupont SARL", "EUR", billing_address=PARIS, tax_rate_percent=D(20))
    subs = [make_subscription("sub-1", "cus-fr", "EUR", JAN, [SubscriptionItem("i-1", LIC)],
                              purchase_order="PO-1", buyer_reference="FIN"),
            make_subscription("sub-2", "cus-fr", "EUR", JAN, [SubscriptionItem("i-2", BOOK)],
                              purchase_order="PO-2", buyer_reference="FIN"),
            make_subscription("sub-3", "cus-fr", "EUR", JAN, [SubscriptionItem("i-3", LIC)],
                              purchase_order="PO-1", buyer_reference="FIN")]
    seed(engine, [customer], subs)
    bill_customers(engine, JAN, seller_country="FR")
    invoices = rows(engine, Invoice)
    assert sorted((inv.purchase_order, inv.buyer_reference, inv.net) for inv in invoices) == [
        ("PO-1", "FIN", D("20.08")), ("PO-2", "FIN", D("100.00"))]


def test_an_invoice_keeps_the_custom_attributes_it_was_assembled_with(engine):
    from billing_engine.use_cases.subscriptions import get_subscription, update_subscription_attributes

    customer = Customer("cus-fr", "Dupont SARL", "EUR", billing_address=PARIS, tax_rate_percent=D(20))
    subs = [make_subscription("sub-1", "cus-fr", "EUR", JAN, [SubscriptionItem("i-1", LIC)],
                              attributes={"cost_centre": "CC-1", "project": "Apollo"}),
            make_subscription("sub-2", "cus-fr", "EUR", JAN, [SubscriptionItem("i-2", BOOK)],
                              attributes={"cost_centre": "CC-2", "project": ""})]
    seed(engine, [customer], subs)
    bill_customers(engine, JAN, seller_country="FR")
    assert sorted((inv.net, inv.attributes) for inv in rows(engine, Invoice)) == [
        (D("10.04"), {"cost_centre": "CC-1", "project": "Apollo"}), (D("100.00"), {"cost_centre": "CC-2"})]
    # A later deal moves the cost centre and keeps the project: the issued invoices keep theirs.
    with transaction(engine) as s:
        update_subscription_attributes(s, "sub-1", {"cost_centre": "CC-9", "project": None})
    with Session(engine) as s:
        assert get_subscription(s, "sub-1").attributes == (("cost_centre", "CC-9"), ("project", "Apollo"))
    bill_customers(engine, date(2026, 2, 1), seller_country="FR")
    assert sorted(tuple(inv.attributes.values()) for inv in rows(engine, Invoice)) == [
        ("CC-1", "Apollo"), ("CC-2",), ("CC-2",), ("CC-9", "Apollo")]
