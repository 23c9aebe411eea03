"""A book of subscriptions whose next months are known, for the MRR forecast.

``seed_forecast(engine, made_in)`` (``made_in``: the forecast's first month, ``YYYY-MM``):

- ``cus-f1`` "Fenwick Ltd" (EUR), 100.00 a month on a 12-month term from the 15th, ten months
  before ``made_in``; its cancellation at the term's end is recorded: it runs until the 15th of
  ``made_in`` + 2, so the month ``made_in`` + 2 is the first month end without it;
- ``cus-f2`` "Garnier SARL" (EUR), 200.00 a month on a 12-month term renewing with a 5 % uplift
  from the 1st, nine months before ``made_in``: 210.00 from ``made_in`` + 3;
- ``cus-f3`` "Hudson Co" (USD), 300.00 a month without a term (evergreen), for a year;
- ``cus-f4`` "Ivory GmbH" (EUR), 50.00 a month, cancelled at once four months before ``made_in``:
  the history's one churn.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from billing_engine.forecast import months_after
from billing_engine.revenue import parse_month


def first_day(month: str, day: int = 1) -> date:
    year, mon = parse_month(month)
    return date(year, mon, day)


def seed_forecast(engine, made_in: str) -> None:
    from billing_engine.catalog import make_price, make_product
    from billing_engine.customers import Customer
    from billing_engine.subscriptions import SubscriptionItem, make_subscription
    from billing_engine.use_cases.catalog import upsert_price, upsert_product
    from billing_engine.use_cases.customers import upsert_customer
    from billing_engine.use_cases.subscriptions import cancel_subscription, start_subscription
    from connector.database import transaction

    plan = make_price("pr-f-plan", make_product("p-f-plan", "PLAN", "Platform"), currency="EUR", model="flat",
                      unit_price="100")
    plan_usd = make_price("pr-f-plan-usd", plan.product, currency="USD", model="flat", unit_price="300")
    with transaction(engine) as session:
        upsert_product(session, plan.product)
        upsert_price(session, plan)
        upsert_price(session, plan_usd)
        for cid, name, currency in (("cus-f1", "Fenwick Ltd", "EUR"), ("cus-f2", "Garnier SARL", "EUR"),
                                    ("cus-f3", "Hudson Co", "USD"), ("cus-f4", "Ivory GmbH", "EUR")):
            upsert_customer(session, Customer(cid, name, currency))
        start_subscription(session, make_subscription(
            "sub-f1", "cus-f1", "EUR", first_day(months_after(made_in, -10), 15), [SubscriptionItem("f1-plan", plan)]))
        start_subscription(session, make_subscription(
            "sub-f2", "cus-f2", "EUR", first_day(months_after(made_in, -9)),
            [SubscriptionItem("f2-plan", plan, contract_unit_price=Decimal("200"))], renewal_uplift_percent="5"))
        start_subscription(session, make_subscription(
            "sub-f3", "cus-f3", "USD", first_day(months_after(made_in, -12)), [SubscriptionItem("f3-plan", plan_usd)],
            term_months=None))
        start_subscription(session, make_subscription(
            "sub-f4", "cus-f4", "EUR", first_day(months_after(made_in, -12)),
            [SubscriptionItem("f4-plan", plan, contract_unit_price=Decimal("50"))]))
    with transaction(engine) as session:
        cancel_subscription(session, "sub-f1", first_day(months_after(made_in, -1), 20), reason="moving on",
                            now=datetime.now(UTC))
        cancel_subscription(session, "sub-f4", first_day(months_after(made_in, -4), 10), immediate=True,
                            reason="closed", now=datetime.now(UTC))


def set_usd_rate(engine, month: str, rate: str) -> None:
    from billing_engine.use_cases.exchange_rates import set_rate
    from connector.database import transaction

    with transaction(engine) as session:
        set_rate(session, first_day(month, 28), "USD", Decimal(rate), entered_by="test", now=datetime.now(UTC))
