"""Helpers for the billing integration tests: a stand-in charge source and table snapshots."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import select
from sqlmodel import Session

from billing_engine.charges import ChargeLine
from billing_engine.errors import InvalidInputError
from billing_engine.storage import BILLING_MODELS
from billing_engine.storage.catalog import CustomerRow
from billing_engine.storage.invoices import billed_keys
from billing_engine.storage.subscriptions import SubscriptionRow
from billing_engine.tax import TaxRate
from billing_engine.use_cases.billing import BillingAccount


def Charge(key: str, amount: Decimal, currency: str = "EUR", *, kind: str = "recurring",
           discount: Decimal = Decimal(0), subscription_id: str = "sub-1", item_id: str = "item-1",
           starts_on: date = date(2026, 1, 1), ends_before: date = date(2026, 2, 1)) -> ChargeLine:
    """A charge line as ``billing_engine.charges.charges_due`` makes them."""
    return ChargeLine(key, subscription_id, item_id, "PLAN", "Plan", kind, starts_on, ends_before, Decimal(1),
                      Decimal(0), amount, discount, currency, "", "Plan")


class StaticSource:
    """Fixed charges per customer; already-billed keys come from the database (like charges_due)."""

    def __init__(self, accounts: list[BillingAccount], charges: dict[str, list[Charge]],
                 broken: set[str] = frozenset()):
        self.accounts = sorted(accounts, key=lambda a: a.customer_id)
        self.charges = charges
        self.broken = broken

    def customers_due(self, session, as_of, after, limit):
        return [a for a in self.accounts if after is None or a.customer_id > after][:limit]

    def charges_due(self, session, accounts, as_of):
        wanted = [c for a in accounts for c in self.charges.get(a.customer_id, []) if c.starts_on <= as_of]
        billed = billed_keys(session, [c.key for c in wanted])
        out = {}
        for a in accounts:
            if a.customer_id in self.broken:
                raise InvalidInputError("price", f"customer {a.customer_id}: price missing for item item-x")
            out[a.customer_id] = [c for c in self.charges.get(a.customer_id, [])
                                  if c.starts_on <= as_of and c.key not in billed]
        return out

    def customer_mrr_on(self, session, accounts, on):
        return None  # fixed charges: no MRR to announce


def account(customer_id: str, percent: str = "20", terms: int = 30) -> BillingAccount:
    return BillingAccount(customer_id, TaxRate(Decimal(percent)), terms)


def snapshot(engine) -> dict[str, list[tuple]]:
    """Every billing table's rows, ordered, for table-by-table comparison."""
    out = {}
    with Session(engine) as session:
        for model in BILLING_MODELS:
            table = model.__table__
            rows = session.execute(select(table).order_by(*table.primary_key.columns)).all()
            out[table.name] = [tuple(r) for r in rows]
    return out


def seed(engine, customers: dict[str, str], subscriptions: dict[str, str]) -> None:
    """Minimal customer and subscription rows the billing tables point to: customers (id → currency), subscriptions (id → customer)."""
    with Session(engine) as session, session.begin():
        for cid, currency in customers.items():
            session.add(CustomerRow(id=cid, name=cid, currency=currency))
        session.flush()
        for sid, cid in subscriptions.items():
            session.add(SubscriptionRow(id=sid, customer_id=cid, currency=customers[cid], starts_on=date(2026, 1, 1),
                                        interval="month", billing_anchor_on=date(2026, 1, 1)))


def seed_source(engine, source: StaticSource) -> None:
    customers = {a.customer_id: "EUR" for a in source.accounts}
    subs = {c.subscription_id: cid for cid, charges in source.charges.items() for c in charges}
    seed(engine, customers, subs)


def seed_monthly_subscriptions(engine, n: int, starts_on: date = date(2026, 1, 1)) -> None:
    """``n`` customers (``c00000000``…) with one monthly EUR subscription of 3 recurring items each
    (graduated seats, a flat platform fee, support at 10 % of seats), as bulk rows the way
    ``start_subscription`` stores them; quantities vary so totals differ from customer to customer."""
    from sqlalchemy import insert

    from billing_engine.catalog import make_price, make_product
    from billing_engine.storage.subscriptions import SubscriptionItemRow
    from billing_engine.use_cases.catalog import upsert_price, upsert_product

    seats = make_price("b-seats", make_product("p-seats", "SEATS", "Seats"), currency="EUR", model="graduated",
                       tiers=[{"up_to": 5, "unit_price": 200}, {"up_to": 10, "unit_price": 150},
                              {"up_to": None, "unit_price": 100}])
    platform = make_price("b-platform", make_product("p-platform", "PLATFORM", "Platform"), currency="EUR",
                          model="flat", unit_price="49")
    support = make_price("b-support", make_product("p-support", "SUPPORT", "Support"), currency="EUR",
                         model="percent_of", percent="10", covered_product_codes=["SEATS"])
    with Session(engine) as session, session.begin():
        for price in (seats, platform, support):
            upsert_product(session, price.product)
            upsert_price(session, price)
    with Session(engine) as session, session.begin():
        session.execute(insert(CustomerRow.__table__), [
            {"id": f"c{i:08d}", "name": f"c{i:08d}", "currency": "EUR", "timezone": "UTC", "address_line1": "",
             "address_line2": "", "city": "", "postal_code": "", "region": "", "country": "",
             "payment_terms_days": 30, "tax_rate_percent": Decimal(20)} for i in range(n)])
        session.execute(insert(SubscriptionRow.__table__), [
            {"id": f"s{i:08d}", "customer_id": f"c{i:08d}", "currency": "EUR", "starts_on": starts_on,
             "interval": "month", "billing_anchor_on": starts_on, "term_months": 12, "auto_renew": True,
             "renewal_uplift_percent": Decimal(0), "status": "active"} for i in range(n)])
        session.execute(insert(SubscriptionItemRow.__table__), [
            {"subscription_id": f"s{i:08d}", "item_id": f"s{i:08d}-{name}", "position": position,
             "price_id": price.price_id, "quantity": Decimal(1 + i % 15) if name == "seats" else Decimal(1)}
            for i in range(n)
            for position, (name, price) in enumerate((("seats", seats), ("platform", platform),
                                                      ("support", support)))])
