"""A data set for the dashboard of the current month, on top of ``tests.support.api.seed_subscriptions``."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal


def month_start(day: date, back: int = 0) -> date:
    index = day.year * 12 + day.month - 1 - back
    return date(index // 12, index % 12 + 1, 1)


def seed_this_month(engine, today: date) -> None:
    """Two more customers paying from two months before ``today``'s month, and the month's USD rates:

    - ``cus-d`` "Dupont SA" (EUR) with 2 graduated seats (MRR 400.00), 12 seats from the 1st of
      this month (MRR 1,950.00): an **expansion** of 1,550.00 in this month;
    - ``cus-e`` "Eagle Inc" (USD) on the 300.00 Pro plan;
    - ``1 EUR = 1.0834 USD`` on the 1st of this month and of each of the twelve before.
    """
    from billing_engine.customers import Customer
    from billing_engine.subscriptions import Amendment, AmendmentAction, SubscriptionItem, make_subscription
    from billing_engine.use_cases.catalog import get_price
    from billing_engine.use_cases.customers import upsert_customer
    from billing_engine.use_cases.exchange_rates import set_rate
    from billing_engine.use_cases.subscriptions import amend_subscription, start_subscription
    from connector.database import transaction

    started = month_start(today, 2)
    with transaction(engine) as session:
        seats, pro = get_price(session, "pr-seats"), get_price(session, "pr-pro")
        upsert_customer(session, Customer("cus-d", "Dupont SA", "EUR"))
        upsert_customer(session, Customer("cus-e", "Eagle Inc", "USD"))
        start_subscription(session, make_subscription("sub-d", "cus-d", "EUR", started, [
            SubscriptionItem("d-seats", seats, quantity=Decimal(2))]))
        start_subscription(session, make_subscription("sub-e", "cus-e", "USD", started, [
            SubscriptionItem("e-pro", pro)]))
        for back in range(13):
            set_rate(session, month_start(today, back), "USD", Decimal("1.0834"), entered_by="test",
                     now=datetime.now(UTC))
    with transaction(engine) as session:
        amend_subscription(session, "sub-d", Amendment("d1", 0, AmendmentAction.CHANGE_QUANTITY, month_start(today),
                                                       item_id="d-seats", quantity=Decimal(12), reason="growth"))
