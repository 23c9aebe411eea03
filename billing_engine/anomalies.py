"""The invoice anomaly guard's scoring (pure; standard library only).

An invoice about to be finalized is compared with the customer's own history (the invoices
finalized before it, within a look-back window) and with the changes recorded on its
subscriptions (amendments, renewals). Each check returns a ``Finding``: its kind, a score
and the reason in plain words (docs/intelligence.md, The anomaly guard).

| kind | fires when |
|---|---|
| ``currency`` | the invoice's currency is none of the customer's previous invoices' |
| ``tax_rate`` | a product is taxed at another rate than on the customer's previous invoice with it |
| ``duplicate`` | the same charge (product, period, quantity, price) appears more often than the customer's invoices ever had it |
| ``back_billed`` | a line's period starts further before the bill date than the customer's invoices usually go back (at least ``backbill_days``) |
| ``quantity`` / ``usage`` | a product's quantity (recurring) or usage is far from the customer's recent invoices |
| ``total`` | the invoice's net total is far from the customer's recent invoices |
| ``price`` | a product's price per unit after discount moved (a discount dropped, a price below the contract) with no amendment or renewal behind it |

"Far" is robust statistics on the logarithm of the values (a ratio scale): the median of the
baseline and its median absolute deviation (MAD, × 1.4826 to be comparable with a standard
deviation). The robust z-score is ``|ln x − median| / max(1.4826 × MAD, ln(min_factor) / z)``:
the floor means a customer whose invoices never vary still needs a change of ``min_factor``
times before anything fires. The baseline is the invoices since the latest recorded change of
the subscriptions concerned (an upgrade resets what is normal); with fewer than
``min_history`` of them, nothing statistical is said. Usage and totals that match the same
month a year before (within ``min_factor``) are seasonal and not reported.

Scores: the robust z-score for ``quantity``, ``usage`` and ``total``; the change of the price
per unit in percent for ``price``; days back over the days allowed for ``back_billed``; the
number of times the charge appears for ``duplicate``; the difference in points for
``tax_rate``; 1 for ``currency``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Context, Decimal
from functools import lru_cache
from statistics import median
from typing import NamedTuple

from billing_engine.charges import ONE_TIME, RECURRING, USAGE
from billing_engine.errors import InvalidInputError
from billing_engine.periods import add_months

ZERO = Decimal(0)
ONE = Decimal(1)
HUNDRED = Decimal(100)
#: MAD × this estimates a standard deviation for normally distributed values.
MAD_TO_SIGMA = Decimal("1.4826")
SCORE_CAP = Decimal("9999.99")
CENT = Decimal("0.01")

CURRENCY = "currency"
TAX_RATE = "tax_rate"
DUPLICATE = "duplicate"
BACK_BILLED = "back_billed"
QUANTITY = "quantity"
USAGE_SPIKE = "usage"
TOTAL = "total"
PRICE = "price"
KINDS = (CURRENCY, TAX_RATE, DUPLICATE, BACK_BILLED, QUANTITY, USAGE_SPIKE, TOTAL, PRICE)

#: Line kinds whose quantity, price and repetition are compared.
_COMPARED = (RECURRING, USAGE)


@dataclass(frozen=True, slots=True)
class GuardRules:
    """The thresholds (ANOMALY_* settings)."""

    z_threshold: Decimal = Decimal("4.5")  # robust z-score from which a value is far
    min_factor: Decimal = Decimal(2)  # … and at least this many times (or this fraction of) the median
    price_tolerance_percent: Decimal = Decimal(1)  # a price per unit moving by more, unexplained, is reported
    min_history: int = 3  # invoices needed in the baseline before anything statistical is said
    history_months: int = 13  # how far back the history goes (13: the same month last year is in it)
    backbill_days: int = 92  # a period starting further back than this (or the customer's usual) is reported

    def __post_init__(self) -> None:
        if self.z_threshold <= 0:
            raise InvalidInputError("z_threshold", f"must be positive, got {self.z_threshold}")
        if self.min_factor <= 1:
            raise InvalidInputError("min_factor", f"must be more than 1, got {self.min_factor}")
        if self.price_tolerance_percent < 0:
            raise InvalidInputError("price_tolerance_percent", f"must not be negative, got {self.price_tolerance_percent}")
        if self.min_history < 1:
            raise InvalidInputError("min_history", f"must be 1 or more, got {self.min_history}")
        if self.history_months < 1:
            raise InvalidInputError("history_months", f"must be 1 or more, got {self.history_months}")
        if self.backbill_days < 1:
            raise InvalidInputError("backbill_days", f"must be 1 or more, got {self.backbill_days}")


class LineFacts(NamedTuple):
    """One invoice line as the guard sees it (a named tuple: histories hold many of them)."""

    product_code: str
    product_name: str
    kind: str
    subscription_id: str
    starts_on: date
    ends_before: date
    quantity: Decimal
    unit_price: Decimal
    gross: Decimal  # before any discount
    discount: Decimal  # the line's own discount
    tax_percent: Decimal

    @property
    def discount_percent(self) -> Decimal:
        return self.discount / self.gross * HUNDRED if self.gross else ZERO

    @property
    def charged_unit_price(self) -> Decimal:
        """The price per unit after the line's discount."""
        return self.unit_price * (ONE - self.discount_percent / HUNDRED)


class InvoiceFacts(NamedTuple):
    """An invoice: the one being scored (``billed_on``: the bill-run date) or one of the customer's
    previous ones (``billed_on``: its issue date). ``net``: the total before tax."""

    billed_on: date
    currency: str
    net: Decimal
    lines: tuple[LineFacts, ...]


@dataclass(frozen=True, slots=True)
class TermsChange:
    """A change recorded on a subscription: an amendment or a renewal, effective on a day.
    ``action``: an amendment's action (``change_quantity``, ``change_price``, ``add_item``,
    ``remove_item``) or ``renew``; ``product_codes``: the products it touches (empty: all of the
    subscription's, as a renewal)."""

    subscription_id: str
    effective_on: date
    action: str
    description: str  # "amendment A-2 (change_quantity)", "renewal 2"
    product_codes: frozenset[str] = frozenset()
    quantity: Decimal | None = None  # the quantity a change_quantity amendment set

    def touches(self, subscription_ids: set[str], product_code: str | None = None) -> bool:
        return self.subscription_id in subscription_ids and (
            product_code is None or not self.product_codes or product_code in self.product_codes)


#: The actions that may change a price per unit (a quantity change does too for tiered prices,
#: when the quantity moved).
PRICE_ACTIONS = frozenset({"change_price", "add_item", "renew"})
#: The actions that change a quantity (a renewal or a new price keeps it).
QUANTITY_ACTIONS = frozenset({"change_quantity", "add_item", "remove_item"})


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    score: Decimal
    reason: str


def score_invoice(invoice: InvoiceFacts, history: Iterable[InvoiceFacts], changes: Iterable[TermsChange] = (),
                  rules: GuardRules = GuardRules()) -> list[Finding]:
    """Every finding on ``invoice`` against the customer's ``history`` (invoices billed before it;
    older than ``rules.history_months`` are ignored) and the ``changes`` of its subscriptions."""
    since = _months_before(invoice.billed_on, rules.history_months)
    past = sorted((h for h in history if since <= h.billed_on < invoice.billed_on), key=lambda h: h.billed_on)
    if not past:
        return []
    changes = [c for c in changes if since < c.effective_on]
    same_currency = [h for h in past if h.currency == invoice.currency]
    findings = _currency(invoice, past)
    findings += _tax_rates(invoice, past)
    findings += _duplicates(invoice, same_currency)
    findings += _back_billed(invoice, past, rules)
    findings += _quantities(invoice, same_currency, changes, rules)
    findings += _total(invoice, same_currency, changes, rules)
    findings += _prices(invoice, same_currency, changes, rules)
    return findings


def within_factor(value: Decimal, baseline: Sequence[Decimal], rules: GuardRules) -> bool:
    """Whether ``value`` is less than ``min_factor`` times away from the middle of ``baseline``: then
    its robust z-score cannot reach the threshold (the scale's floor), and no logarithm is needed."""
    ordered = sorted(baseline)
    low, high = ordered[(len(ordered) - 1) // 2], ordered[len(ordered) // 2]
    return high < value * rules.min_factor and value < low * rules.min_factor


def robust_z(value: Decimal, baseline: Sequence[Decimal], rules: GuardRules) -> Decimal:
    """How far ``value`` is from ``baseline`` (positive values), signed, on a log scale: see the
    module's docstring."""
    logs = [_ln(v) for v in baseline]
    middle = median(logs)
    mad = median([abs(x - middle) for x in logs])
    scale = max(MAD_TO_SIGMA * mad, _ln(rules.min_factor) / rules.z_threshold)
    return (_ln(value) - middle) / scale


_STATISTICS = Context(prec=12)


@lru_cache(maxsize=65536)
def _ln(value: Decimal) -> Decimal:
    """The natural logarithm to 12 significant digits (scores are shown to 2 decimals): quicker than
    the 28 digits of the default context, and the same values recur (a seat count month after month)."""
    return value.ln(_STATISTICS)


# ---------------------------------------------------------------- the checks


def _currency(invoice: InvoiceFacts, past: Sequence[InvoiceFacts]) -> list[Finding]:
    known = sorted({h.currency for h in past})
    if invoice.currency in known:
        return []
    previous = "previous invoice was" if len(past) == 1 else f"previous {len(past)} invoices were"
    return [Finding(CURRENCY, _score(ONE), f"billed in {invoice.currency}; this customer's {previous} in "
                                           f"{' and '.join(known)}")]


def _tax_rates(invoice: InvoiceFacts, past: Sequence[InvoiceFacts]) -> list[Finding]:
    last: dict[str, tuple[Decimal, date]] = {}
    for h in past:  # oldest first: the latest wins
        for ln in h.lines:
            if ln.gross:
                last[ln.product_code] = (ln.tax_percent, h.billed_on)
    out = []
    seen: set[str] = set()
    for ln in invoice.lines:
        if not ln.gross or ln.product_code in seen or ln.product_code not in last:
            continue
        seen.add(ln.product_code)
        before, on = last[ln.product_code]
        if ln.tax_percent != before:
            out.append(Finding(TAX_RATE, _score(abs(ln.tax_percent - before)),
                               f"{ln.product_name} taxed at {_pct(ln.tax_percent)} %; the customer's previous invoice "
                               f"with it ({on}) had {_pct(before)} %"))
    return out


def _charge(ln: LineFacts) -> tuple[object, ...]:
    return (ln.product_code, ln.kind, ln.starts_on, ln.ends_before, ln.quantity, ln.unit_price, ln.gross)


def _duplicates(invoice: InvoiceFacts, past: Sequence[InvoiceFacts]) -> list[Finding]:
    compared = _COMPARED + (ONE_TIME,)
    counts = Counter(_charge(ln) for ln in invoice.lines if ln.kind in compared and ln.gross > 0)
    wanted = {(charge[0], charge[2]) for charge in counts if charge[1] == RECURRING}
    billed = {_charge(ln) for h in past for ln in h.lines
              if (ln.product_code, ln.starts_on) in wanted and ln.kind == RECURRING and ln.gross > 0}
    times = {charge: n + (1 if charge in billed else 0) for charge, n in counts.items()}
    suspects = {charge: t for charge, t in times.items() if t > 1}
    if not suspects:
        return []
    names = {ln.product_code: ln.product_name for ln in invoice.lines}
    out = []
    for charge, t in suspects.items():
        code, starts_on, ends_before, n = str(charge[0]), charge[2], charge[3], counts[charge]
        # How many identical charges of the product the latest invoice with it had (1 when none).
        latest = next((h for h in reversed(past) if any(ln.product_code == code for ln in h.lines)), None)
        usual = max(Counter(_charge(ln) for ln in latest.lines if ln.product_code == code).values()) if latest else 1
        if t <= usual:
            continue
        where = "on this invoice" if n > 1 else "already on a previous invoice"
        out.append(Finding(DUPLICATE, _score(Decimal(t)),
                           f"{names[code]} for {starts_on} to {ends_before} is charged {t} times ({where}) with the "
                           f"same quantity and price; this customer's latest invoice with it had it "
                           f"{_plural(usual, 'time')}"))
    return out


def _back_billed(invoice: InvoiceFacts, past: Sequence[InvoiceFacts], rules: GuardRules) -> list[Finding]:
    def lag(inv: InvoiceFacts) -> int:
        return max(((inv.billed_on - ln.starts_on).days for ln in inv.lines if ln.gross > 0), default=0)

    usual = int(median([lag(h) for h in past]))
    allowed = max(rules.backbill_days, usual + 31)
    worst = max((ln for ln in invoice.lines if ln.gross > 0), key=lambda ln: (invoice.billed_on - ln.starts_on).days,
                default=None)
    if worst is None:
        return []
    days = (invoice.billed_on - worst.starts_on).days
    if days <= allowed:
        return []
    return [Finding(BACK_BILLED, _score(Decimal(days) / Decimal(allowed)),
                    f"{worst.product_name} is billed for {worst.starts_on} to {worst.ends_before}, {days} days before "
                    f"the bill date; this customer's invoices usually go back {usual} days (limit {allowed})")]


def _baseline(past: Sequence[InvoiceFacts], subscriptions: set[str], product_code: str | None,
              changes: Sequence[TermsChange], until: date, actions: frozenset[str] | None = None) -> tuple[list[InvoiceFacts] | None, TermsChange | None]:
    """The previous invoices since the latest change of ``subscriptions`` (of ``product_code``; any
    product when None) effective before ``until``, and that change. ``None`` as the invoices when the
    change takes effect on this invoice (no previous invoice since): it is explained."""
    relevant = [c for c in changes if c.touches(subscriptions, product_code) and c.effective_on < until
                and (actions is None or c.action in actions)]
    if not relevant:
        return list(past), None
    latest = max(relevant, key=lambda c: c.effective_on)
    since = [h for h in past if h.billed_on >= latest.effective_on]
    return (since or None), latest


def _seasonal(invoice: InvoiceFacts, past: Sequence[InvoiceFacts], value: Decimal, measure, rules: GuardRules) -> bool:
    """Whether the same month a year before had a value within ``min_factor`` of ``value``."""
    year_ago = _months_before(invoice.billed_on, 12)
    for h in past:
        if abs((h.billed_on - year_ago).days) <= 16:
            before = measure(h)
            if before is not None and before > 0 and abs(_ln(value) - _ln(before)) < _ln(rules.min_factor):
                return True
    return False


def _quantities(invoice: InvoiceFacts, past: Sequence[InvoiceFacts], changes: Sequence[TermsChange],
                rules: GuardRules) -> list[Finding]:
    out = []
    keys = sorted({(ln.product_code, ln.kind) for ln in invoice.lines if ln.kind in _COMPARED})
    for code, kind in keys:
        def measure(inv: InvoiceFacts, code: str = code, kind: str = kind) -> Decimal | None:
            # The most of the product one period had (a catch-up of two periods is not twice the quantity).
            per_period: dict[date, Decimal] = defaultdict(Decimal)
            for ln in inv.lines:
                if ln.product_code == code and ln.kind == kind and ln.quantity > 0:
                    per_period[ln.starts_on] += ln.quantity
            return max(per_period.values()) if per_period else None

        value = measure(invoice)
        mine = [ln for ln in invoice.lines if ln.product_code == code and ln.kind == kind]
        if value is None:
            continue
        baseline, change = _baseline(past, {ln.subscription_id for ln in mine}, code, changes,
                                     max(ln.ends_before for ln in mine), QUANTITY_ACTIONS)
        if baseline is None:
            # The change takes effect on this invoice: it explains the new quantity if it set it.
            assert change is not None
            found = _against_amendment(mine, change, rules) if kind == RECURRING else None
            if found is not None:
                out.append(found)
            continue
        values = [v for v in (measure(h) for h in baseline) if v is not None]
        # A recurring quantity moves only by a recorded change: one previous value is a baseline.
        # Usage varies by nature: it needs ``min_history`` of them.
        if not values or (kind == USAGE and change is None and len(values) < rules.min_history):
            continue
        if within_factor(value, values, rules):
            continue
        z = robust_z(value, values, rules)
        if abs(z) < rules.z_threshold:
            continue
        if kind == USAGE and (z < 0 or _seasonal(invoice, past, value, measure, rules)):
            continue
        what = "usage" if kind == USAGE else "quantity"
        since = f" since {change.description} on {change.effective_on}" if change else ""
        out.append(Finding(USAGE_SPIKE if kind == USAGE else QUANTITY, _score(abs(z)),
                           f"{mine[0].product_name} {what} {_num(value)} where the customer's "
                           f"{_plural(len(values), 'invoice')}{since} had a median of {_num(median(values))} "
                           f"({_times(value, median(values))}; robust z-score {_num(_score(abs(z)))})"
                           + ("" if kind != USAGE else "; no such peak in the same month last year")
                           + ("" if change or kind == USAGE else "; no amendment or renewal changed it")))
    return out


def _against_amendment(lines: Sequence[LineFacts], change: TermsChange, rules: GuardRules) -> Finding | None:
    """A quantity billed ``min_factor`` times away from the one the amendment set (a quantity typed
    ten times on the line, not on the deal), or None."""
    if change.quantity is None or change.quantity <= 0:
        return None
    billed = [ln.quantity for ln in lines if ln.subscription_id == change.subscription_id and ln.quantity > 0]
    if not billed:
        return None
    value = max(billed)
    if change.quantity * rules.min_factor > value > change.quantity / rules.min_factor:
        return None
    return Finding(QUANTITY, _score(abs(_ln(value) - _ln(change.quantity)) / _ln(rules.min_factor) * rules.z_threshold),
                   f"{lines[0].product_name} quantity {_num(value)} where {change.description} on "
                   f"{change.effective_on} set {_num(change.quantity)} "
                   f"({_times(value, change.quantity).replace('the median', 'that')})")


def _total(invoice: InvoiceFacts, past: Sequence[InvoiceFacts], changes: Sequence[TermsChange],
           rules: GuardRules) -> list[Finding]:
    if invoice.net <= 0 or not invoice.lines:
        return []
    subscriptions = {ln.subscription_id for ln in invoice.lines}
    baseline, change = _baseline(past, subscriptions, None, changes, max(ln.ends_before for ln in invoice.lines))
    if baseline is None:
        return []
    values = [h.net for h in baseline if h.net > 0]
    if len(values) < (1 if change else rules.min_history):
        return []
    if within_factor(invoice.net, values, rules):
        return []
    z = robust_z(invoice.net, values, rules)
    if abs(z) < rules.z_threshold or _seasonal(invoice, past, invoice.net, lambda h: h.net, rules):
        return []
    since = f" since {change.description} on {change.effective_on}" if change else ""
    return [Finding(TOTAL, _score(abs(z)),
                    f"net total {_num(invoice.net)} {invoice.currency} where the customer's "
                    f"{_plural(len(values), 'invoice')}{since} had a median of {_num(median(values))} "
                    f"({_times(invoice.net, median(values))}; robust z-score {_num(_score(abs(z)))}); "
                    f"not seen in the same month last year")]


def _prices(invoice: InvoiceFacts, past: Sequence[InvoiceFacts], changes: Sequence[TermsChange],
            rules: GuardRules) -> list[Finding]:
    last: dict[str, tuple[InvoiceFacts, list[LineFacts]]] = {}
    for h in past:  # oldest first: the latest wins
        by_code: dict[str, list[LineFacts]] = defaultdict(list)
        for ln in h.lines:
            if ln.kind == RECURRING and ln.gross > 0 and ln.quantity > 0:
                by_code[ln.product_code].append(ln)
        for code, lines in by_code.items():
            last[code] = (h, lines)
    out = []
    seen: set[str] = set()
    tolerance = rules.price_tolerance_percent
    for ln in invoice.lines:
        if ln.kind != RECURRING or ln.gross <= 0 or ln.quantity <= 0 or ln.product_code in seen:
            continue
        if ln.product_code not in last:
            continue
        previous, lines = last[ln.product_code]
        quantity_moved = all(p.quantity != ln.quantity for p in lines)
        since = [c for c in changes if c.touches({ln.subscription_id}, ln.product_code)
                 and previous.billed_on <= c.effective_on < ln.ends_before]
        # A new price per unit comes with a new price, a renewal, a new item (or, tiered, a new quantity);
        # a new discount only with a new item.
        price_explained = any(c.action in PRICE_ACTIONS or quantity_moved for c in since)
        discount_explained = any(c.action == "add_item" for c in since)
        charged = ln.charged_unit_price
        # Compared with the previous line of the same quantity when there is one (tiered prices vary with it).
        same = [p for p in lines if p.quantity == ln.quantity and p.charged_unit_price > 0] or \
            [p for p in lines if p.charged_unit_price > 0]
        if not same:
            continue
        p = min(same, key=lambda p: abs(charged - p.charged_unit_price))
        price_moved = abs(ln.unit_price - p.unit_price) / p.unit_price * HUNDRED > tolerance and not price_explained
        discount_moved = abs(ln.discount_percent - p.discount_percent) > tolerance and not discount_explained
        move = (charged - p.charged_unit_price) / p.charged_unit_price * HUNDRED
        if not (price_moved or discount_moved) or abs(move) <= tolerance:
            continue
        seen.add(ln.product_code)
        if discount_moved:
            why = "a discount no longer applied" if ln.discount_percent < p.discount_percent else \
                "a discount not in the contract"
        else:
            why = "a price raised without a new price or a renewal" if move > 0 else "a price below the contract"
        out.append(Finding(PRICE, _score(abs(move)),
                           f"{ln.product_name} charged {_num(_score(charged))} per unit ({_describe(ln)}); the "
                           f"customer's invoice of {previous.billed_on} charged {_num(_score(p.charged_unit_price))} "
                           f"({_describe(p)}), {_num(_score(abs(move)))} % {'more' if move > 0 else 'less'} with no "
                           f"recorded change behind it: {why}?"))
    return out


# ---------------------------------------------------------------- wording


def _describe(ln: LineFacts) -> str:
    percent = ln.discount_percent
    return f"{_num(ln.unit_price)} less {_num(_score(percent))} %" if percent else f"{_num(ln.unit_price)}, no discount"


def _score(value: Decimal) -> Decimal:
    return min(value.quantize(CENT, rounding=ROUND_HALF_UP), SCORE_CAP)


def _num(value: Decimal) -> str:
    """A value as people write it: no exponent, no trailing zeros after the point."""
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _pct(value: Decimal) -> str:
    return _num(value)


def _times(value: Decimal, middle: Decimal) -> str:
    if middle <= 0:
        return "no median to compare with"
    ratio = value / middle
    if ratio >= 1:
        return f"{_num(_score(ratio))} times the median"
    return f"{_num(_score(ratio * HUNDRED))} % of the median"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _months_before(day: date, months: int) -> date:
    return add_months(day, -months)
