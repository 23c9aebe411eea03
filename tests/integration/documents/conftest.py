"""A French seller's documents: invoices and a credit note of every VAT case, billed by the engine and
rendered by ``generate_documents``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal as D

import pytest
from sqlmodel import Session, select

from billing_engine.catalog import Product, make_price
from billing_engine.customers import Address, Customer
from billing_engine.storage.documents import InvoiceDocument
from billing_engine.storage.invoices import CreditNote, Invoice, InvoiceTax, invoice_lines
from billing_engine.subscriptions import SubscriptionItem, make_subscription
from billing_engine.tax import ProductTax, TaxCategory
from billing_engine.use_cases.billing import bill_customers
from billing_engine.use_cases.catalog import upsert_price, upsert_product
from billing_engine.use_cases.customers import upsert_customer
from billing_engine.use_cases.subscriptions import cancel_subscription, start_subscription
from connector.database import transaction
from connector.settings import load_settings
from tests.support.documents import SELLER

JAN, FEB = date(2026, 1, 1), date(2026, 2, 1)
STANDARD, REDUCED = ProductTax(TaxCategory.STANDARD), ProductTax(TaxCategory.REDUCED, D("5.5"))
LIC = Product("p-lic", "LIC", "Licences", tax=STANDARD)
BOOK = Product("p-book", "BOOK", "E-book library", tax=REDUCED)
PLATFORM = Product("p-platform", "PLATFORM", "Platform fee", tax=STANDARD)
PRICES = [
    make_price("lic-eur", LIC, currency="EUR", model="per_unit", unit_price="10.04"),
    make_price("book-eur", BOOK, currency="EUR", model="flat", unit_price="100"),
    make_price("platform-eur", PLATFORM, currency="EUR", model="flat", unit_price="300"),
    make_price("lic-jpy", LIC, currency="JPY", model="per_unit", unit_price="1234"),
    make_price("lic-kwd", LIC, currency="KWD", model="per_unit", unit_price="3.125"),
]
PRICE = {p.price_id: p for p in PRICES}


def address(country: str, city: str, postal_code: str, street: str) -> Address:
    return Address(street, "", city, postal_code, "", country)


CUSTOMERS = [
    Customer("cus-single", "Martin Conseil SARL", "EUR", billing_address=address("FR", "Lyon", "69002",
                                                                                 "12 quai Saint-Antoine"),
             vat_id="FR40303265045", tax_rate_percent=D(20)),
    Customer("cus-fr", "Dupont Industrie SA", "EUR", billing_address=address("FR", "Paris", "75001",
                                                                             "1 rue de Rivoli"),
             vat_id="FR40303265045", language="en"),
    Customer("cus-de", "Acme GmbH", "EUR", billing_address=address("DE", "Berlin", "10115", "Hauptstraße 1"),
             vat_id="DE136695976", tax_rate_percent=D(19)),
    Customer("cus-us", "Bolt Inc", "EUR", billing_address=address("US", "Austin", "73301", "500 Congress Ave")),
    Customer("cus-jp", "Chiyoda KK", "JPY", billing_address=address("JP", "Tokyo", "100-0001", "1-1 Chiyoda")),
    Customer("cus-cn", "Lefebvre & Fils", "EUR", billing_address=address("FR", "Nantes", "44000", "3 rue Crébillon"),
             vat_id="FR40303265045"),
    Customer("cus-kw", "Gulf Trading Co", "KWD", billing_address=address("KW", "Kuwait City", "13001",
                                                                         "Al Soor Street")),
]


def sub(sid: str, customer: str, currency: str, items, **kw):
    return make_subscription(sid, customer, currency, JAN, items, **kw)


SUBSCRIPTIONS = [
    sub("sub-single", "cus-single", "EUR", [SubscriptionItem("single-lic", PRICE["lic-eur"], quantity=D(25))]),
    sub("sub-fr", "cus-fr", "EUR", [SubscriptionItem("fr-lic", PRICE["lic-eur"], quantity=D(3)),
                                    SubscriptionItem("fr-book", PRICE["book-eur"], discount_percent=D(10))],
        purchase_order="PO-2026-0042", buyer_reference="ACME-FIN"),
    sub("sub-de", "cus-de", "EUR", [SubscriptionItem("de-lic", PRICE["lic-eur"], quantity=D(10))]),
    sub("sub-us", "cus-us", "EUR", [SubscriptionItem("us-lic", PRICE["lic-eur"], quantity=D(10))]),
    sub("sub-jp", "cus-jp", "JPY", [SubscriptionItem("jp-lic", PRICE["lic-jpy"], quantity=D(7))]),
    sub("sub-cn", "cus-cn", "EUR", [SubscriptionItem("cn-platform", PRICE["platform-eur"])]),
    sub("sub-kw", "cus-kw", "KWD", [SubscriptionItem("kw-lic", PRICE["lic-kwd"], quantity=D(3))]),
]


@dataclass
class Issued:
    """The engine's record of one document and the stored document."""

    kind: str
    number: str
    row: object  # Invoice or CreditNote
    taxes: list  # InvoiceTax rows (invoices) or the credit note's groups
    lines: list
    document: InvoiceDocument


@pytest.fixture
def seller_settings(database_url, tmp_path):
    return load_settings({"DATABASE_URL": database_url, "LOG_LEVEL": "warning", **SELLER})


@pytest.fixture
def seller_services(seller_settings):
    from connector.wiring import build_services

    built = build_services(seller_settings)
    yield built
    built.engine.dispose()


def bill_every_case(engine) -> None:
    with transaction(engine) as s:
        for price in PRICES:
            upsert_product(s, price.product)
            upsert_price(s, price)
        for customer in CUSTOMERS:
            upsert_customer(s, customer)
        for subscription in SUBSCRIPTIONS:
            start_subscription(s, subscription, now=datetime(2025, 12, 20, tzinfo=UTC))
    result = bill_customers(engine, JAN, seller_country="FR", default_tax_percent=D(20))
    assert not result.failures, result.failures
    # The platform fee cancelled on Jan 21: February credits 11 of January's 31 days, a credit note.
    with transaction(engine) as s:
        cancel_subscription(s, "sub-cn", date(2026, 1, 21), immediate=True, now=datetime(2026, 1, 25, tzinfo=UTC))
    result = bill_customers(engine, FEB, seller_country="FR", default_tax_percent=D(20))
    assert (result.credit_notes_issued, result.failures) == (1, {})


@pytest.fixture
def issued(seller_services) -> dict[str, Issued]:
    """Every case billed and its documents generated: by customer id, and ``credit_note``."""
    from connector.documents.generate import generate_documents

    engine = seller_services.engine
    bill_every_case(engine)
    report = generate_documents(seller_services, now=datetime(2026, 2, 1, 6, tzinfo=UTC))
    assert report.failed == {}
    out: dict[str, Issued] = {}
    with Session(engine) as s:
        docs = {d.number: d for d in s.scalars(select(InvoiceDocument)).all()}
        for inv in s.scalars(select(Invoice).where(Invoice.bill_run_on == JAN)).all():
            taxes = list(s.scalars(select(InvoiceTax).where(InvoiceTax.invoice_id == inv.id)).all())
            out[inv.customer_id] = Issued("invoice", inv.number, inv, taxes, invoice_lines(s, inv.id),
                                          docs[inv.number])
        [note] = s.scalars(select(CreditNote)).all()
        out["credit_note"] = Issued("credit_note", note.number, note, [], [], docs[note.number])
    return out
