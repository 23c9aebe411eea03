#!/usr/bin/env python
"""Benchmark the invoice anomaly guard: precision and recall on a generated population.

    .venv/bin/python scripts/bench_anomalies.py [--customers 2000] [--months 18] [--errors 200]
        [--unusual 200] [--seed 7] [--z 4.5] [--min-factor 2] [--price-tolerance 1] [--min-history 3]
        [--backbill-days 92] [--without-signals] [--show 0]

Generates ``--customers`` customers with ``--months`` months of invoices (the last month is the
bill run being screened), in memory, as the use case hands them to the pure scorer
(``billing_engine.anomalies.score_invoice``: the invoices of the last 13 months, and the
amendments and renewals recorded on the subscriptions). Everything is ``Decimal``; the
randomness is integers from a seeded generator.

The population, month after month:
- seats (per unit, three price levels, 1 to 300 seats; a third of the customers with a 5 to
  25 % discount; 5 % billed yearly, so with one previous invoice), some with two subscriptions
  of the same product, some changed by past amendments (recorded) and renewed with an uplift
  (recorded);
- metered API calls for 55 % of the customers, in arrears, with noise of 8 to 35 % a month,
  a growth trend, a seasonal peak (× 2 to 4, the same month every year) for a fifth of them,
  and an unexplained natural spike (× 2 to 3) in 1.5 % of the months — left unexplained, as
  in life;
- a support plan (flat) for 30 %; an onboarding fee (one-time, added by a recorded
  amendment) on 3 % of the invoices; 7 % of customers started in the last months; 3 % bill
  a second subscription in another currency.

Injected into the screened month, each on its own customer: ``--errors`` errors of six kinds
(seat or usage quantity × 10, a dropped discount, a duplicated charge — a deal entered twice
— a seat period a year back billed, a wrong tax rate, a switch of currency), none carrying a
recorded change; and ``--unusual`` legitimate unusual invoices of three kinds, each with the
signal a real system has: an upgrade (quantity × 1.5 to 6, an amendment recorded on the
subscription), a seasonal peak (usage × 2.5 to 5 in the month that peaked last year too) and
a renewal uplift (price + 3 to 12 %, a renewal recorded).

Prints recall per error kind, how many unusual and ordinary invoices were held, precision
overall and per finding kind. Goals: recall ≥ 95 % on the errors, precision ≥ 80 %.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from billing_engine.anomalies import (  # noqa: E402
    GuardRules,
    InvoiceFacts,
    LineFacts,
    TermsChange,
    score_invoice,
)
from billing_engine.charges import ONE_TIME, RECURRING, USAGE  # noqa: E402
from billing_engine.periods import add_months  # noqa: E402

CENT = Decimal("0.01")
FIRST_MONTH = date(2025, 7, 1)
ERROR_KINDS = ("quantity_x10", "dropped_discount", "duplicated_charge", "back_billed_year", "wrong_tax_rate",
               "currency_switch")
UNUSUAL_KINDS = ("upgrade", "seasonal_peak", "renewal_uplift")
SEAT_LEVELS = (("SEATS-BASIC", "Basic seats", Decimal(12)), ("SEATS-PRO", "Pro seats", Decimal(35)),
               ("SEATS-ENT", "Enterprise seats", Decimal(90)))
TAX_RATES = (Decimal(20), Decimal(19), Decimal(21), Decimal("5.5"), Decimal(0))
CURRENCIES = ("EUR", "EUR", "EUR", "EUR", "EUR", "EUR", "EUR", "USD", "USD", "GBP")
API_PRICE = Decimal("0.0010")


def percent(part: int, whole: int) -> str:
    """``part`` of ``whole`` in percent, one decimal (exact arithmetic, as everything here)."""
    return f"{(Decimal(100 * part) / max(whole, 1)).quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)}"


def money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


class Dice:
    """Seeded randomness as integers and Decimals (no float anywhere)."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def chance(self, percent: Decimal | int) -> bool:
        return self.rng.randrange(10000) < int(Decimal(percent) * 100)

    def between(self, low: Decimal | int, high: Decimal | int, places: int = 3) -> Decimal:
        step = Decimal(10) ** -places
        lo, hi = int(Decimal(low) / step), int(Decimal(high) / step)
        return Decimal(self.rng.randint(lo, hi)) * step

    def normal(self) -> Decimal:
        """About a standard normal: the sum of twelve uniforms less six."""
        return sum((Decimal(self.rng.randint(0, 10000)) / 10000 for _ in range(12)), Decimal(0)) - 6

    def lognormal(self, sigma: Decimal) -> Decimal:
        return (sigma * self.normal()).exp()

    def pick(self, options):
        return options[self.rng.randrange(len(options))]


@dataclass
class Customer:
    customer_id: str
    currency: str
    tax: Decimal
    seat: tuple[str, str, Decimal]
    seats: Decimal
    discount: Decimal
    yearly: bool
    starts: int  # the month index of the first invoice
    twin_seats: Decimal | None  # a second subscription of the same seat product
    usage_base: Decimal | None
    usage_sigma: Decimal
    usage_growth: Decimal
    peak_month: int | None  # calendar month of the seasonal peak
    peak_factor: Decimal
    support: Decimal | None
    other_currency: str | None
    seat_changes: dict[int, Decimal] = field(default_factory=dict)  # month index → new seat count
    renewal_uplift: Decimal = Decimal(0)


def month_start(index: int) -> date:
    return add_months(FIRST_MONTH, index)


def line(code: str, name: str, kind: str, sub: str, index: int, quantity: Decimal, unit_price: Decimal,
         discount_percent: Decimal, tax: Decimal) -> LineFacts:
    gross = money(quantity * unit_price)
    discount = money(gross * discount_percent / 100)
    return LineFacts(code, name, kind, sub, month_start(index), month_start(index + 1), quantity, unit_price, gross,
                     discount, tax)


def new_customer(dice: Dice, n: int) -> Customer:
    seat = dice.pick(SEAT_LEVELS)
    yearly = dice.chance(5)
    return Customer(
        customer_id=f"C{n:05d}", currency=dice.pick(CURRENCIES), tax=dice.pick(TAX_RATES), seat=seat,
        seats=max(Decimal(1), dice.between(0, "5.7").exp().quantize(Decimal(1))),
        discount=dice.pick((Decimal(5), Decimal(10), Decimal(15), Decimal(20), Decimal(25))) if dice.chance(33)
        else Decimal(0),
        yearly=yearly, starts=5 if yearly else (dice.rng.randint(11, 15) if dice.chance(7) else 0),
        twin_seats=None, usage_base=(dice.between("6.9", "13.8")).exp() if dice.chance(55) and not yearly else None,
        usage_sigma=dice.pick((Decimal("0.08"), Decimal("0.15"), Decimal("0.25"), Decimal("0.35"))),
        usage_growth=dice.between(0, "0.03"), peak_month=None, peak_factor=dice.between(2, 4),
        support=money(dice.between(50, 500, 0)) if dice.chance(30) else None,
        other_currency=None)


@dataclass
class Case:
    customer: Customer
    history: list[InvoiceFacts]
    changes: list[TermsChange]
    invoice: InvoiceFacts
    label: str  # "" ordinary, an error kind, or an unusual kind


def seat_price(c: Customer, index: int) -> Decimal:
    """The seat price per unit at a month: the catalog price, uplifted at each renewal (12 months)."""
    price = c.seat[2]
    for _ in range((index - c.starts) // 12):
        price = money(price * (1 + c.renewal_uplift / 100))
    return price


def seats_at(c: Customer, index: int) -> Decimal:
    seats = c.seats
    for month in sorted(c.seat_changes):
        if month <= index:
            seats = c.seat_changes[month]
    return seats


def usage_at(dice: Dice, c: Customer, index: int) -> Decimal:
    assert c.usage_base is not None
    value = c.usage_base * (1 + c.usage_growth) ** index * dice.lognormal(c.usage_sigma)
    if c.peak_month is not None and month_start(index).month == c.peak_month:
        value *= c.peak_factor
    if dice.chance("1.5"):
        value *= dice.between(2, 3)
    return value.quantize(Decimal(1))


def invoice_for(dice: Dice, c: Customer, index: int, changes: list[TermsChange]) -> InvoiceFacts | None:
    """The customer's ordinary invoice of a month (None when nothing is due)."""
    lines: list[LineFacts] = []
    code, name, _price = c.seat
    if c.yearly:
        if (index - c.starts) % 12 != 0:
            return None
        ln = line(code, name, RECURRING, f"{c.customer_id}-S", index, seats_at(c, index), seat_price(c, index),
                  c.discount, c.tax)
        lines.append(ln._replace(ends_before=month_start(index + 12)))
    else:
        lines.append(line(code, name, RECURRING, f"{c.customer_id}-S", index, seats_at(c, index),
                          seat_price(c, index), c.discount, c.tax))
        if c.twin_seats is not None:
            lines.append(line(code, name, RECURRING, f"{c.customer_id}-T", index, c.twin_seats, seat_price(c, index),
                              c.discount, c.tax))
        if c.support is not None:
            lines.append(line("SUPPORT", "Support plan", RECURRING, f"{c.customer_id}-S", index, Decimal(1), c.support,
                              Decimal(0), c.tax))
        if c.usage_base is not None and index > c.starts:
            lines.append(line("API", "API calls", USAGE, f"{c.customer_id}-S", index - 1, usage_at(dice, c, index - 1),
                              API_PRICE, Decimal(0), c.tax))
        if index > c.starts and dice.chance(3):
            fee = money(dice.between(300, 3000, 0))
            lines.append(line("ONBOARD", "Onboarding", ONE_TIME, f"{c.customer_id}-S", index, Decimal(1), fee,
                              Decimal(0), c.tax))
            changes.append(TermsChange(f"{c.customer_id}-S", add_months(month_start(index), -1).replace(day=20),
                                       "add_item", "an amendment adding onboarding", frozenset({"ONBOARD"})))
    return InvoiceFacts(month_start(index), c.currency, sum((ln.gross - ln.discount for ln in lines), Decimal(0)),
                        tuple(lines))


def with_lines(inv: InvoiceFacts, lines: list[LineFacts] | tuple[LineFacts, ...], **changes) -> InvoiceFacts:
    lines = tuple(lines)
    return inv._replace(lines=lines, net=sum((ln.gross - ln.discount for ln in lines), Decimal(0)), **changes)


def reline(ln: LineFacts, **changes) -> LineFacts:
    ln = ln._replace(**changes)
    gross = money(ln.quantity * ln.unit_price)
    share = ln.discount / ln.gross if ln.gross else Decimal(0)
    return ln._replace(gross=gross, discount=money(gross * share))


def inject(dice: Dice, case: Case, kind: str, last: int, signals: bool = True) -> None:
    inv, c = case.invoice, case.customer
    seat = next(ln for ln in inv.lines if ln.product_code == c.seat[0])
    rest = [ln for ln in inv.lines if ln is not seat]
    if kind == "quantity_x10":
        usage = [ln for ln in inv.lines if ln.kind == USAGE]
        target = usage[0] if usage and dice.chance(50) else seat
        case.invoice = with_lines(inv, [reline(ln, quantity=ln.quantity * 10) if ln is target else ln
                                        for ln in inv.lines])
    elif kind == "dropped_discount":
        case.invoice = with_lines(inv, [seat._replace(discount=Decimal(0)), *rest])
    elif kind == "duplicated_charge":
        case.invoice = with_lines(inv, [*inv.lines, seat._replace(subscription_id=f"{c.customer_id}-DUP")])
    elif kind == "back_billed_year":
        back = seat._replace(starts_on=add_months(seat.starts_on, -12), ends_before=add_months(seat.ends_before, -12))
        case.invoice = with_lines(inv, [*inv.lines, back])
    elif kind == "wrong_tax_rate":
        wrong = dice.pick([r for r in (c.tax / 10, Decimal(0), Decimal(10), Decimal(20), Decimal(7)) if r != c.tax])
        case.invoice = with_lines(inv, [ln._replace(tax_percent=wrong) for ln in inv.lines])
    elif kind == "currency_switch":
        known = {h.currency for h in case.history}
        case.invoice = inv._replace(currency=dice.pick([x for x in ("EUR", "USD", "GBP", "CHF") if x not in known]))
    elif kind == "upgrade":
        more = (seat.quantity * dice.between("1.5", 6, 2)).quantize(Decimal(1))
        case.invoice = with_lines(inv, [reline(seat, quantity=more), *rest])
        effective = month_start(last) if dice.chance(50) else add_months(month_start(last), -1).replace(day=15)
        if signals:
            case.changes.append(TermsChange(seat.subscription_id, effective, "change_quantity",
                                            "an amendment of the seats", frozenset({seat.product_code}), more))
    elif kind == "seasonal_peak":
        pass  # generated as the customer's peak month (see build)
    elif kind == "renewal_uplift":
        uplift = dice.between(3, 12, 1)
        case.invoice = with_lines(inv, [reline(seat, unit_price=money(seat.unit_price * (1 + uplift / 100))), *rest])
        if signals:
            case.changes.append(TermsChange(seat.subscription_id, month_start(last), "renew", "the renewal"))


def build(args: argparse.Namespace) -> list[Case]:
    dice = Dice(args.seed)
    last = args.months - 1
    customers = [new_customer(dice, n) for n in range(args.customers)]
    # Traits that shape the history.
    for c in customers:
        if not c.yearly and dice.chance(5):
            c.twin_seats = c.seats if dice.chance(50) else max(Decimal(1), (c.seats / 2).quantize(Decimal(1)))
        if dice.chance(25):
            for _ in range(dice.rng.randint(1, 2)):
                month = dice.rng.randint(c.starts + 1, last - 1)
                c.seat_changes[month] = max(Decimal(1), (seats_at(c, month) * dice.between("0.7", "1.6", 2))
                                            .quantize(Decimal(1)))
        if dice.chance(30):
            c.renewal_uplift = dice.between(3, 8, 1)
        if c.usage_base is not None and dice.chance(20):
            c.peak_month = dice.rng.randint(1, 12)
        if not c.yearly and dice.chance(3):
            c.other_currency = dice.pick([x for x in ("EUR", "USD", "GBP") if x != c.currency])
    # Who gets what in the screened month (each customer one label at most).
    eligible = [c for c in customers if (last - c.starts) % 12 == 0 or not c.yearly]
    dice.rng.shuffle(eligible)
    labels: dict[str, str] = {}
    plan = [(k, args.errors // len(ERROR_KINDS) + (1 if i < args.errors % len(ERROR_KINDS) else 0))
            for i, k in enumerate(ERROR_KINDS)]
    plan += [(k, args.unusual // len(UNUSUAL_KINDS) + (1 if i < args.unusual % len(UNUSUAL_KINDS) else 0))
             for i, k in enumerate(UNUSUAL_KINDS)]
    for kind, count in plan:
        fits = [c for c in eligible if c.customer_id not in labels and last - c.starts >= 1
                and (kind != "dropped_discount" or c.discount > 0)
                and (kind != "seasonal_peak" or (c.usage_base is not None and last - c.starts >= 13))
                and (kind != "renewal_uplift" or not c.yearly)]
        for c in fits[:count]:
            labels[c.customer_id] = kind
            if kind == "seasonal_peak":
                c.peak_month = month_start(last).month
    cases = []
    for c in customers:
        changes: list[TermsChange] = [TermsChange(f"{c.customer_id}-S", month_start(m), "change_quantity",
                                                  "an amendment of the seats", frozenset({c.seat[0]}), quantity)
                                      for m, quantity in c.seat_changes.items()]
        # Every subscription renews at the end of its 12-month term (with or without an uplift).
        changes += [TermsChange(f"{c.customer_id}-S", month_start(m), "renew", "the renewal")
                    for m in range(c.starts + 12, last + 1, 12)]
        history = []
        for index in range(c.starts, last):
            inv = invoice_for(dice, c, index, changes)
            if inv is not None:
                history.append(inv)
            if c.other_currency and index >= c.starts:
                history.append(InvoiceFacts(month_start(index), c.other_currency, Decimal(100), (
                    line("SUPPORT", "Support plan", RECURRING, f"{c.customer_id}-X", index, Decimal(1), Decimal(100),
                         Decimal(0), c.tax),)))
        invoice = invoice_for(dice, c, last, changes)
        if invoice is None:
            continue
        case = Case(c, history, changes, invoice, labels.get(c.customer_id, ""))
        if case.label:
            inject(dice, case, case.label, last, signals=not args.without_signals)
        cases.append(case)
    return cases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--months", type=int, default=18)
    parser.add_argument("--errors", type=int, default=200)
    parser.add_argument("--unusual", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--z", default="4.5")
    parser.add_argument("--min-factor", default="2")
    parser.add_argument("--price-tolerance", default="1")
    parser.add_argument("--min-history", type=int, default=3)
    parser.add_argument("--backbill-days", type=int, default=92)
    parser.add_argument("--without-signals", action="store_true",
                        help="Leave out the amendment and renewal records of the upgrades and renewal uplifts "
                             "(what the guard would see if billsync did not know them).")
    parser.add_argument("--show", type=int, default=0, help="Print the reasons of this many held invoices per label.")
    args = parser.parse_args()
    if args.months < 14:
        parser.error("--months: at least 14 (the seasonal peaks need the same month last year)")
    rules = GuardRules(z_threshold=Decimal(args.z), min_factor=Decimal(args.min_factor),
                       price_tolerance_percent=Decimal(args.price_tolerance), min_history=args.min_history,
                       backbill_days=args.backbill_days)
    cases = build(args)
    started = time.perf_counter_ns()
    results = [(case, score_invoice(case.invoice, case.history, case.changes, rules)) for case in cases]
    elapsed_ms = (time.perf_counter_ns() - started) // 1_000_000
    held = Counter(case.label for case, findings in results if findings)
    total = Counter(case.label for case, _ in results)
    print(f"{len(cases)} invoices screened ({args.customers} customers, {args.months} months of history, seed "
          f"{args.seed}) in {elapsed_ms} ms ({len(cases) * 1000 // max(elapsed_ms, 1)} invoices/s); rules z={rules.z_threshold} min_factor={rules.min_factor} "
          f"price_tolerance={rules.price_tolerance_percent}% min_history={rules.min_history} "
          f"backbill_days={rules.backbill_days}")
    print("\nerrors injected      held / injected   recall")
    caught = injected = 0
    for kind in ERROR_KINDS:
        caught, injected = caught + held[kind], injected + total[kind]
        print(f"  {kind:<20} {held[kind]:>4} / {total[kind]:<4}      {percent(held[kind], total[kind]):>6} %")
    print(f"  {'all errors':<20} {caught:>4} / {injected:<4}      {percent(caught, injected):>6} %")
    print("\nlegitimate invoices  held / count")
    for kind in (*UNUSUAL_KINDS, ""):
        print(f"  {kind or 'ordinary':<20} {held[kind]:>4} / {total[kind]}")
    flagged = sum(held.values())
    print(f"\nprecision: {caught} errors among {flagged} held invoices = {percent(caught, flagged)} %")
    by_finding: dict[str, Counter[bool]] = defaultdict(Counter)
    for case, findings in results:
        for kind in {f.kind for f in findings}:
            by_finding[kind][case.label in ERROR_KINDS] += 1
    print("per finding kind     on errors / fired   precision")
    for kind, counts in sorted(by_finding.items()):
        fired = counts[True] + counts[False]
        print(f"  {kind:<20} {counts[True]:>4} / {fired:<4}       {percent(counts[True], fired):>6} %")
    if args.show:
        shown: Counter[str] = Counter()
        for case, findings in results:
            if findings and shown[case.label] < args.show:
                shown[case.label] += 1
                print(f"\n[{case.label or 'ordinary'}] {case.customer.customer_id}")
                for f in findings:
                    print(f"  {f.kind} {f.score}: {f.reason}")
        missed = [case for case, findings in results if case.label in ERROR_KINDS and not findings]
        for case in missed[:args.show * 3]:
            print(f"\nmissed [{case.label}] {case.customer.customer_id} history {len(case.history)}")
    recall_met = 100 * caught >= 95 * injected
    precision_met = 100 * caught >= 80 * flagged
    print(f"\ngoals: recall >= 95 % {'met' if recall_met else 'NOT met'}, precision >= 80 % "
          f"{'met' if precision_met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
