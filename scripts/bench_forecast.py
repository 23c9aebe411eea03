#!/usr/bin/env python
"""Benchmark the MRR forecast (docs/intelligence.md, MRR forecast): its error once the months have passed.

    .venv/bin/python scripts/bench_forecast.py [--customers 400] [--months 36] [--start 2023-01]
        [--new-per-month 4] [--seed 11] [--database-url sqlite:///…] [--keep]

Plays ``--months`` months of a subscription business through the engine's use cases, on a
migrated database of its own (a temporary SQLite file unless ``--database-url``), and stores the
forecast on the 1st of each month, before that month's events are recorded, as the clock does
(``use_cases.forecast.store_forecast``). What is recorded is only what is known at the time: a
cancellation is recorded when the customer gives notice, a renewal of a term that does not renew
by itself when it is signed.

The business (integers from a seeded generator, money as ``Decimal``):
- ``--customers`` customers started over the year before ``--start``, on any day of the month,
  80 % in EUR and 20 % in USD, on seats at a negotiated price per seat (8.00 to 25.00, 5 to 200
  seats), 12-month terms;
- 90 % of the terms renew by themselves with an uplift of 0, 3, 5 or 7 %; 12 % of those are
  cancelled at the term's end, with notice given 1 to 4 months before it (so a forecast three
  months ahead knows some of them and not the others);
- the other 10 % end with their term unless renewed: 75 % are, the renewal signed 1 to 3 months
  before the term ends;
- each month, per running subscription: 3 % add 10 to 60 % seats, 1 % remove 10 to 40 %, 0.4 %
  leave at once; and ``--new-per-month`` new customers start.

Prints, for each currency and for every currency added up in EUR (at 1 EUR = 1.08 USD), the mean
absolute percentage error (MAPE) of the forecasts 1, 3 and 6 months ahead on the contracted MRR
and on the expected one, and how often the actual MRR fell within the band. Goal: 3-month-ahead
MAPE of the contracted MRR ≤ 5 %.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from billing_engine.catalog import make_price, make_product  # noqa: E402
from billing_engine.customers import Customer  # noqa: E402
from billing_engine.forecast import absolute_percentage_error, mape, months_after  # noqa: E402
from billing_engine.periods import add_months  # noqa: E402
from billing_engine.revenue import parse_month  # noqa: E402
from billing_engine.storage import forecasts as forecast_store  # noqa: E402
from billing_engine.subscriptions import Amendment, AmendmentAction, SubscriptionItem, make_subscription  # noqa: E402
from billing_engine.use_cases import forecast as fc  # noqa: E402
from billing_engine.use_cases.catalog import upsert_price, upsert_product  # noqa: E402
from billing_engine.use_cases.customers import upsert_customer  # noqa: E402
from billing_engine.use_cases.revenue import mrr_bridge_months  # noqa: E402
from billing_engine.use_cases.subscriptions import (  # noqa: E402
    amend_subscription,
    cancel_subscription,
    start_subscription,
)
from connector.database import make_engine, transaction, upgrade  # noqa: E402

USD_PER_EUR = Decimal("1.08")
HORIZONS = (1, 3, 6)


@dataclass
class Sub:
    sid: str
    currency: str
    starts_on: date
    auto_renew: bool
    quantity: int
    amendments: int = 0
    renewals: int = 0  # renewals signed (terms that do not renew by themselves)
    cancelled: bool = False
    ended_before: date | None = None  # known end (a lapse or a cancellation)
    decided: dict[date, tuple[bool, int]] = field(default_factory=dict)  # term end → (leaves/renews, notice)
    acted: set[date] = field(default_factory=set)  # term ends whose notice or renewal is recorded

    def term_end_after(self, day: date) -> date:
        k = 1
        while add_months(self.starts_on, 12 * k) <= day:
            k += 1
        return add_months(self.starts_on, 12 * k)


def first(month: str, day: int = 1) -> date:
    y, m = parse_month(month)
    return date(y, m, day)


def month_index(day: date) -> int:
    return day.year * 12 + day.month


class Business:
    def __init__(self, engine, rng: random.Random):
        self.engine, self.rng = engine, rng
        self.subs: list[Sub] = []
        self.count = 0
        product = make_product("p-seats", "SEATS", "Seats")
        self.prices = {cur: make_price(f"pr-seats-{cur.lower()}", product, currency=cur, model="per_unit",
                                       unit_price="10") for cur in ("EUR", "USD")}
        with transaction(engine) as session:
            upsert_product(session, product)
            for price in self.prices.values():
                upsert_price(session, price)
        self.now = datetime(2020, 1, 1, tzinfo=UTC)

    def start(self, session, on: date) -> None:
        rng = self.rng
        self.count += 1
        cid, sid = f"cus-{self.count:05d}", f"sub-{self.count:05d}"
        currency = "USD" if rng.random() < 0.2 else "EUR"
        upsert_customer(session, Customer(cid, f"Customer {self.count}", currency))
        auto = rng.random() < 0.9
        quantity = rng.randint(5, 200)
        price = Decimal(rng.randint(16, 50)) / 2
        uplift = rng.choice((0, 3, 5, 7)) if auto else 0
        start_subscription(session, make_subscription(
            sid, cid, currency, on, [SubscriptionItem("seats", self.prices[currency], quantity=Decimal(quantity),
                                                      contract_unit_price=price)],
            auto_renew=auto, renewal_uplift_percent=uplift), now=self.now)
        self.subs.append(Sub(sid, currency, on, auto, quantity))

    def play_month(self, month: str, new_customers: int) -> None:
        """Everything recorded during ``month``."""
        rng = self.rng
        day1 = first(month)
        with transaction(self.engine) as session:
            for sub in list(self.subs):
                if sub.ended_before is not None and sub.ended_before <= day1 or sub.starts_on > day1:
                    continue
                if sub.auto_renew:
                    end = sub.term_end_after(day1)
                else:
                    end = add_months(sub.starts_on, 12 * (1 + sub.renewals))
                    if end <= day1:  # not renewed: it ended with its term
                        sub.ended_before = end
                        continue
                if end not in sub.decided:
                    if sub.auto_renew:
                        sub.decided[end] = (rng.random() < 0.12, rng.randint(1, 4))
                    else:
                        sub.decided[end] = (rng.random() < 0.75, rng.randint(1, 3))
                leaves_or_renews, notice = sub.decided[end]
                due = month_index(end) - notice <= month_index(day1) <= month_index(end) and end not in sub.acted
                if due and sub.auto_renew and leaves_or_renews and not sub.cancelled and first(month, 10) < end:
                    cancel_subscription(session, sub.sid, first(month, 10), reason="notice", now=self.now)
                    sub.cancelled, sub.ended_before = True, end
                    sub.acted.add(end)
                    continue
                if due and not sub.auto_renew and not sub.cancelled:
                    sub.acted.add(end)
                    if leaves_or_renews:
                        sub.amendments += 1
                        sub.renewals += 1
                        amend_subscription(session, sub.sid, Amendment(
                            f"r{sub.amendments}", 0, AmendmentAction.RENEW, end, reason="signed"), now=self.now)
                    else:
                        sub.ended_before = end
                if sub.cancelled:
                    continue
                draw = rng.random()
                if draw < 0.004:
                    cancel_subscription(session, sub.sid, first(month, 15), immediate=True, reason="left",
                                        now=self.now)
                    sub.cancelled, sub.ended_before = True, first(month, 15)
                elif draw < 0.054:
                    up = draw < 0.044
                    change = rng.randint(10, 60) if up else -rng.randint(10, 40)
                    quantity = max(1, sub.quantity + sub.quantity * change // 100)
                    if quantity != sub.quantity:
                        sub.amendments += 1
                        amend_subscription(session, sub.sid, Amendment(
                            f"q{sub.amendments}", 0, AmendmentAction.CHANGE_QUANTITY, first(month, 5),
                            item_id="seats", quantity=Decimal(quantity), reason="seats"), now=self.now)
                        sub.quantity = quantity
            for _ in range(new_customers):
                self.start(session, first(month, rng.randint(1, 28)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=400)
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--start", default="2023-01")
    parser.add_argument("--new-per-month", type=int, default=4)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--keep", action="store_true", help="Keep the temporary SQLite file.")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    tmp = tempfile.mkdtemp(prefix="bench_forecast_")
    url = args.database_url or f"sqlite:///{tmp}/forecast.db"
    engine = make_engine(url)
    upgrade(engine)
    began = time.perf_counter()
    business = Business(engine, rng)
    with transaction(engine) as session:
        for _ in range(args.customers):
            month = months_after(args.start, -rng.randint(1, 12))
            business.start(session, first(month, rng.randint(1, 28)))
    months = [months_after(args.start, k) for k in range(args.months)]
    stored = 0
    for month in months:
        with transaction(engine) as session:  # the 1st of the month, before the month's events
            stored += fc.store_forecast(session, month).rows
        business.play_month(month, args.new_per_month)
    played = time.perf_counter() - began
    after_last = first(months_after(months[-1], 1))
    with transaction(engine) as session:
        accuracy = fc.forecast_accuracy(session, after_last)
        snapshots = forecast_store.snapshots_through(session, months[-1])
        actual = {(r.period, r.currency): r.closing for r in mrr_bridge_months(session, months[0], months[-1])}
    print(f"{args.customers} customers at the start, {business.count} at the end, {args.months} months from "
          f"{args.start}; {len({s[0] for s in snapshots})} monthly forecasts stored ({stored} rows) in {played:.1f} s")
    print(f"{'currency':<10}{'ahead':>6}{'months':>8}{'contracted MAPE':>17}{'expected MAPE':>15}{'within band':>13}")
    for a in accuracy:
        if a.horizon in HORIZONS:
            print(f"{a.currency:<10}{a.horizon:>6}{a.months:>8}{str(a.contracted_mape) + ' %':>17}"
                  f"{str(a.expected_mape) + ' %':>15}{f'{a.within_band}/{a.months}':>13}")
    totals: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [Decimal(0)] * 4)
    for made_in, currency, m in snapshots:
        factor = 1 / USD_PER_EUR if currency == "USD" else Decimal(1)
        entry = totals[(made_in, m.month)]
        for i, value in enumerate((m.contracted, m.expected, m.low, m.high)):
            entry[i] += value * factor
    errors: dict[int, tuple[list[Decimal], list[Decimal], list[int]]] = defaultdict(lambda: ([], [], []))
    for (made_in, month), (contracted, expected, low, high) in sorted(totals.items()):
        real = sum((actual.get((month, c), Decimal(0)) * (1 / USD_PER_EUR if c == "USD" else 1)
                    for c in ("EUR", "USD")), Decimal(0))
        horizon = month_index(first(month)) - month_index(first(made_in)) + 1
        c_err, e_err = absolute_percentage_error(contracted, real), absolute_percentage_error(expected, real)
        if c_err is None or e_err is None:
            continue
        c_list, e_list, band = errors[horizon]
        c_list.append(c_err)
        e_list.append(e_err)
        band.append(1 if low <= real <= high else 0)
    for horizon in HORIZONS:
        c_list, e_list, band = errors[horizon]
        print(f"{'all (EUR)':<10}{horizon:>6}{len(c_list):>8}{str(mape(c_list)) + ' %':>17}"
              f"{str(mape(e_list)) + ' %':>15}{f'{sum(band)}/{len(band)}':>13}")
    c3 = mape(errors[3][0])
    goal = Decimal(5)
    verdict = "met" if c3 is not None and c3 <= goal else "NOT met"
    print(f"3 months ahead, all currencies: contracted MAPE {c3} %, expected MAPE {mape(errors[3][1])} % "
          f"(goal: contracted ≤ {goal.quantize(Decimal('1'), ROUND_HALF_UP)} %: {verdict})")
    engine.dispose()
    if args.database_url is None:
        if args.keep:
            print(f"database kept: {url}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
