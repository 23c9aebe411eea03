"""Benchmark: charge lines for N subscriptions (mixed pricing models, 3 items each), in memory.

    .venv/bin/python scripts/bench_pricing.py [--subscriptions 100000] [--months 1] [--workers 1]

Builds the subscriptions first (not timed), then times ``charges_due`` for each one
through ``--months`` billing periods after its start, with nothing billed yet, and
prints lines per second of wall time (and per CPU-second, which a busy machine
does not distort). No database; ``--workers 2`` splits the work over two processes.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from datetime import date, timedelta
from decimal import Decimal

from billing_engine.catalog import make_price, make_product
from billing_engine.charges import charges_due
from billing_engine.periods import add_months
from billing_engine.subscriptions import SubscriptionItem, make_subscription

TIERS = [{"up_to": "5", "unit_price": "200"}, {"up_to": "10", "unit_price": "150"},
         {"up_to": None, "unit_price": "100", "flat_fee": "25"}]


def catalog():
    def product(code):
        return make_product(f"p-{code.lower()}", code, code.title())

    return [
        make_price("pr-flat", product("PLATFORM"), currency="EUR", model="flat", unit_price="499"),
        make_price("pr-seat", product("SEAT"), currency="EUR", model="per_unit", unit_price="12.345678"),
        make_price("pr-grad", product("LIC"), currency="EUR", model="graduated", tiers=TIERS),
        make_price("pr-vol", product("VOL"), currency="EUR", model="volume", tiers=TIERS),
        make_price("pr-pack", product("SMS"), currency="EUR", model="package", unit_price="20", package_size="1000"),
        make_price("pr-allow", product("DATA"), currency="EUR", model="allowance", unit_price="10",
                   included_units="40", overage_unit_price="0.5"),
        make_price("pr-care", product("CARE"), currency="EUR", model="percent_of", percent="15",
                   covered_product_codes=["SEAT", "LIC", "VOL"]),
    ]


def build(count: int):
    prices = catalog()
    first = date(2026, 1, 1)
    subscriptions = []
    for n in range(count):
        chosen = [prices[n % 6], prices[(n + 1) % 6], prices[(n + 2) % 6]]
        if n % 10 == 0:
            chosen[2] = prices[6]  # percent_of on every tenth subscription
        items = [SubscriptionItem(f"i{k}", price, Decimal(1 + (n * 7 + k * 3) % 25),
                                  discount_percent=Decimal(10) if (n + k) % 7 == 0 else None)
                 for k, price in enumerate(chosen)]
        starts_on = first + timedelta(days=n % 365)
        subscriptions.append(make_subscription(f"s{n}", f"c{n % 5000}", "EUR", starts_on, items,
                                               billing_anchor_day=1 + n % 31))
    return subscriptions


_SUBSCRIPTIONS: list = []


def _bill(bounds: tuple[int, int, int]) -> tuple[int, float]:
    """Charge lines for a slice of the subscriptions: (line count, CPU seconds)."""
    first, last, months = bounds
    cpu = time.process_time()
    lines = 0
    for subscription in _SUBSCRIPTIONS[first:last]:
        starts_on = subscription.starts_on
        through = add_months(starts_on, months - 1) if months > 1 else starts_on
        lines += len(charges_due(subscription, through))
    return lines, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=100_000)
    parser.add_argument("--months", type=int, default=1, help="billing periods to bill per subscription")
    parser.add_argument("--workers", type=int, default=1, help="processes (fork); 1 = this process only")
    args = parser.parse_args()
    _SUBSCRIPTIONS[:] = build(args.subscriptions)
    count, workers = args.subscriptions, max(1, args.workers)
    step = -(-count // workers)
    slices = [(i, min(i + step, count), args.months) for i in range(0, count, step)]
    if workers == 1:
        started = time.perf_counter()
        results = [_bill(slices[0])]
    else:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            pool.map(abs, range(workers))  # warm the workers up before timing
            started = time.perf_counter()
            results = pool.map(_bill, slices)
    elapsed = time.perf_counter() - started
    lines = sum(r[0] for r in results)
    cpu = sum(r[1] for r in results)
    print(f"{count} subscriptions × 3 items, {args.months} period(s), {workers} process(es): {lines} lines in "
          f"{elapsed:.2f} s wall = {lines / elapsed:,.0f} lines/s "
          f"({lines / cpu:,.0f} lines per CPU-second)")


if __name__ == "__main__":
    main()
