"""The customer portal in tests: two customers seeded through the engine's use cases, and links."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from connector.database import transaction

SEATS_TIERS = [{"up_to": 5, "unit_price": 200}, {"up_to": 10, "unit_price": 150}, {"up_to": None, "unit_price": 100}]


@dataclass(frozen=True)
class Seeded:
    today: date
    starts_on: date
    customer_a: str = "cus-portal-a"
    customer_b: str = "cus-portal-b"
    email_a: str = "billing@alpha.example"
    email_b: str = "ap@beta.example"


def portal_today() -> date:
    return datetime.now(UTC).date()


def seed_portal(engine, *, account_a: str | None = None, account_b: str | None = None,
                today: date | None = None, starts_on: date | None = None, billed: bool = True) -> Seeded:
    """Customer A: a monthly evergreen subscription to 12 seats of a graduated per-seat plan in EUR
    (1–5 at 200, 6–10 at 150, 11+ at 100: 1,950.00 a month before 20 % VAT), started 16 days ago and
    billed since; customer B: 3 seats of the same plan at a contract price of 120.00 a seat. Both are in
    France, with a billing contact. ``starts_on`` (16 days ago unless given) and ``billed`` (whether the
    bill run of that day ran) set when the subscriptions started."""
    from billing_engine.catalog import Product, make_price
    from billing_engine.customers import Address, Customer
    from billing_engine.subscriptions import SubscriptionItem, make_subscription
    from billing_engine.use_cases.billing import bill_customers
    from billing_engine.use_cases.catalog import upsert_price, upsert_product
    from billing_engine.use_cases.collections import set_collection_profile
    from billing_engine.use_cases.customers import upsert_customer
    from billing_engine.use_cases.subscriptions import start_subscription

    today = today or portal_today()
    starts_on = starts_on or today - timedelta(days=16)
    seeded = Seeded(today, starts_on)
    from billing_engine.tax import ProductTax, TaxCategory

    standard = ProductTax(TaxCategory.STANDARD)
    team = Product("p-team", "TEAM", "Team plan", tax=standard, self_service=True)
    seats = make_price("pr-team-seats", team, currency="EUR", model="graduated", tiers=SEATS_TIERS)
    # Other plans: offered on the self-service pages in EUR (Business), in USD only (Scale), not offered (Custom).
    others = [make_price("pr-business", Product("p-business", "BUSINESS", "Business plan", tax=standard,
                                                         self_service=True),
                         currency="EUR", model="per_unit", unit_price="175"),
              make_price("pr-scale-usd", Product("p-scale", "SCALE", "Scale plan", tax=standard, self_service=True), currency="USD",
                         model="per_unit", unit_price="150"),
              make_price("pr-custom", Product("p-custom", "CUSTOM", "Custom plan", tax=standard), currency="EUR",
                         model="per_unit", unit_price="90")]
    now = datetime.now(UTC)
    with transaction(engine) as session:
        for price in (seats, *others):
            upsert_product(session, price.product)
            upsert_price(session, price)
        for cid, name, account, email, quantity, city, contract_price in (
                (seeded.customer_a, "Alpha SAS", account_a, seeded.email_a, 12, "Lyon", None),
                (seeded.customer_b, "Beta SARL", account_b, seeded.email_b, 3, "Nantes", Decimal(120))):
            upsert_customer(session, Customer(cid, name, "EUR", salesforce_account_id=account,
                                              billing_address=Address("1 place Bellecour", "", city, "69002", "",
                                                                      "FR"), tax_rate_percent=Decimal(20)))
            set_collection_profile(session, cid, email=email, now=now)
            start_subscription(session, make_subscription(
                f"sub-{cid}", cid, "EUR", starts_on, [SubscriptionItem(f"{cid}-seats", seats, quantity=Decimal(quantity),
                                                                       contract_unit_price=contract_price)],
                term_months=None))
    if billed:
        bill_customers(engine, starts_on)
    return seeded


def new_link(engine, customer_id: str, *, minutes: int = 60, now: datetime | None = None) -> str:
    from connector.portal.links import issue_link

    with transaction(engine) as session:
        return issue_link(session, customer_id, made_by="test", now=now or datetime.now(UTC), minutes=minutes,
                          base_url="http://localhost").url.removeprefix("http://localhost")


@dataclass(frozen=True)
class Connected:
    seeded: Seeded
    rep: str  # the User owning customer A's Account
    account: str  # customer A's Account


def seed_connected(sf, engine) -> Connected:
    """``seed_portal`` with each customer on an Account of the sandbox (``sf``), customer A's owned by a rep."""
    rep = sf.User.create({"LastName": "Martin", "Username": "rep@alpha.example", "Email": "rep@alpha.example"})["id"]
    accounts = [sf.Account.create({"Name": name, "CurrencyIsoCode": "EUR", "BillingCountry": "France",
                                   "Tax_Rate__c": 20, **owner})["id"]
                for name, owner in (("Alpha SAS", {"OwnerId": rep}), ("Beta SARL", {}))]
    return Connected(seed_portal(engine, account_a=accounts[0], account_b=accounts[1]), rep, accounts[0])
