"""A simulated customer population whose churn depends on known drivers, with noise, over time.

Each month every paying customer may turn unhappy (and later recover); an unhappy customer
lowers seats or removes items more often, uses less, pays late and sees direct debits returned
more often. Whether it leaves that month is drawn from a hazard that is a function of the
drivers a billing system sees (MRR trend, contractions, days overdue, returns, usage decline,
tenure) plus noise, measured by the same signals as the scoring
(``billing_engine.churn.measure``). New customers arrive every month. Deterministic per seed.

Used by ``scripts/bench_churn.py`` (large) and the tests (small).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from billing_engine.churn import AllowancePeriod, CustomerFacts, InvoiceFacts, measure, month_end, shift_month

#: The drivers' weights in the hazard's log-odds (per unit of each signal's value).
HAZARD = {"contraction": 0.9, "mrr_trend": -4.0, "overdue_days": 0.04, "payment_return": 1.0,
          "usage_decline": 4.0, "young": 1.2}
HAZARD_BASE = -6.8


@dataclass
class _Customer:
    cid: str
    started: date
    seats: int
    price: float
    allowance: float
    usage_level: float
    unhappy: bool = False
    churned: str | None = None
    mrr: dict[str, Decimal] = field(default_factory=dict)
    invoices: list[InvoiceFacts] = field(default_factory=list)
    contractions: list[date] = field(default_factory=list)
    returns: list[date] = field(default_factory=list)
    usage: dict[str, Decimal] = field(default_factory=dict)

    def facts(self) -> CustomerFacts:
        return CustomerFacts(self.cid, self.started, dict(self.mrr), tuple(self.invoices),
                             {"contraction": tuple(self.contractions), "payment_return": tuple(self.returns)},
                             dict(self.usage),
                             (AllowancePeriod(self.started, None, Decimal(str(self.allowance))),) if self.allowance else ())


@dataclass(frozen=True)
class Population:
    facts: list[CustomerFacts]
    first_month: str
    last_month: str
    drivers: dict[str, list[str]]  # customer → the drivers that were present when it churned


def simulate(customers: int = 300, months: int = 30, *, seed: int = 7, start: str = "2024-01",
             arrivals: float = 0.03) -> Population:
    rng = random.Random(seed)
    people: list[_Customer] = []
    drivers: dict[str, list[str]] = {}

    def new_customer(month: str) -> _Customer:
        day = date(int(month[:4]), int(month[5:7]), 1)
        seats = rng.randint(2, 40)
        allowance = float(rng.choice([0, 0, 1000, 5000]))
        c = _Customer(f"sim-{len(people) + 1:05d}", day, seats, rng.choice([20.0, 35.0, 50.0]), allowance,
                      (allowance or 2000.0) * rng.uniform(0.6, 1.2))
        people.append(c)
        return c

    for _ in range(customers):
        c = new_customer(shift_month(start, -rng.randint(0, 36)))
    month = start
    for _ in range(months):
        for _ in range(int(round(customers * arrivals))):
            new_customer(month)
        on = month_end(month)
        first_day = date(int(month[:4]), int(month[5:7]), 1)
        for c in people:
            if c.churned is not None or c.started > on:
                continue
            if c.unhappy:
                c.unhappy = rng.random() > 0.12
            else:
                c.unhappy = rng.random() < 0.05
            if rng.random() < (0.22 if c.unhappy else 0.02):
                if c.seats > 1:
                    c.seats = max(1, c.seats - rng.randint(1, max(1, c.seats // 3)))
                else:
                    c.price *= 0.8
                c.contractions.append(first_day + timedelta(days=rng.randint(0, 27)))
            elif rng.random() < 0.03:
                c.seats += rng.randint(1, 5)
            c.mrr[month] = Decimal(str(round(c.seats * c.price, 2)))
            c.usage_level *= rng.uniform(0.75, 0.95) if c.unhappy else rng.uniform(0.95, 1.08)
            c.usage[month] = Decimal(str(max(0.0, c.usage_level * rng.uniform(0.85, 1.15))))
            due = first_day + timedelta(days=30)
            late = rng.random() < (0.35 if c.unhappy else 0.06)
            delay = rng.randint(10, 75) if late else -rng.randint(0, 10)
            c.invoices.append(InvoiceFacts(due, due + timedelta(days=delay)))
            if rng.random() < (0.08 if c.unhappy else 0.008):
                c.returns.append(first_day + timedelta(days=rng.randint(3, 25)))
            values = measure(c.facts(), on)
            present = _present(values)
            logit = HAZARD_BASE + rng.gauss(0.0, 0.5) + sum(
                HAZARD[name] * (values[name] if name != "young" else 0.0) for name in HAZARD if name != "young")
            logit += HAZARD["young"] * (1.0 if values["tenure_months"] < 6 else 0.0)
            if rng.random() < 1.0 / (1.0 + math.exp(-logit)):
                c.churned = shift_month(month, 1)
                c.mrr[c.churned] = Decimal(0)
                drivers[c.cid] = present
        month = shift_month(month, 1)
    last = shift_month(month, -1)
    return Population([c.facts() for c in people], start, last, drivers)


def _present(values: dict[str, float]) -> list[str]:
    """The drivers a churned customer showed, in the scoring's signal names."""
    out = []
    if values["mrr_trend"] < -0.1:
        out.append("mrr_trend")
    if values["contraction"] >= 1:
        out.append("contraction")
    if values["overdue_days"] > 20:
        out.append("overdue_days")
    if values["payment_return"] >= 1:
        out.append("payment_return")
    if values["usage_decline"] > 0.2:
        out.append("usage_decline")
    if values["tenure_months"] < 6:
        out.append("tenure_months")
    return out



# ---------------------------------------------------------------- a small history in a database

HISTORY_TODAY = date(2026, 12, 6)
HISTORY_START = date(2025, 1, 1)


def _month(first: date, months: int) -> date:
    total = first.year * 12 + first.month - 1 + months
    return date(total // 12, total % 12 + 1, 1)


def decliner(n: int) -> bool:
    """Every third customer lowers its seats twice, then leaves."""
    return n % 3 == 0


def surprise_leaver(n: int) -> bool:
    """A few leave with no warning sign (so nothing predicts every departure)."""
    return n % 11 == 5


def write_histories(engine, count: int = 36, *, account_ids: list[str] | None = None) -> list[str]:
    """``count`` EUR customers (``ch-000``…) with 10 seats from early 2025, written through the
    engine's use cases: decliners (``decliner(n)``) lower their seats to 6, then to 3 a month later,
    and cancel two months after that; surprise leavers cancel with no sign first; the others stay
    (some grow). ``account_ids``: the customers' Salesforce Accounts, in order."""
    from decimal import Decimal as D

    from billing_engine.catalog import make_price, make_product
    from billing_engine.customers import Customer
    from billing_engine.subscriptions import Amendment, AmendmentAction, SubscriptionItem, make_subscription
    from billing_engine.use_cases.catalog import upsert_price, upsert_product
    from billing_engine.use_cases.customers import upsert_customer
    from billing_engine.use_cases.subscriptions import (
        amend_subscription,
        cancel_subscription,
        start_subscription,
    )
    from connector.database import transaction

    price = make_price("pr-churn-seat", make_product("p-churn-seat", "SEAT", "Seats"), currency="EUR",
                       model="per_unit", unit_price="30")
    stamp = datetime(2025, 1, 1, tzinfo=UTC)
    with transaction(engine) as s:
        upsert_product(s, price.product)
        upsert_price(s, price)
    ids = []
    for n in range(count):
        cid = f"ch-{n:03d}"
        ids.append(cid)
        starts = _month(HISTORY_START, n % 6)
        sid = f"sub-{cid}"
        with transaction(engine) as s:
            upsert_customer(s, Customer(cid, f"Customer {n}", "EUR",
                                        salesforce_account_id=account_ids[n] if account_ids else None))
            start_subscription(s, make_subscription(sid, cid, "EUR", starts,
                                                    [SubscriptionItem("seats", price, quantity=D(10))]), now=stamp)

        def change(on: date, quantity: int, sid: str = sid) -> None:
            with transaction(engine) as s:
                amend_subscription(s, sid, Amendment("", 0, AmendmentAction.CHANGE_QUANTITY, on, item_id="seats",
                                                     quantity=D(quantity)), now=stamp)

        if decliner(n):
            first = _month(HISTORY_START, 6 + (n * 7) % 17)
            change(first + timedelta(days=9), 6)
            change(_month(first, 1) + timedelta(days=9), 3)
            with transaction(engine) as s:
                cancel_subscription(s, sid, _month(first, 3), immediate=True, now=stamp)
        elif surprise_leaver(n):
            with transaction(engine) as s:
                cancel_subscription(s, sid, _month(HISTORY_START, 8 + n % 9), immediate=True, now=stamp)
        elif n % 4 == 1:
            change(_month(HISTORY_START, 10 + n % 5) + timedelta(days=3), 14)
    return ids
