"""Charge calculation: what a subscription owes up to a date, line by line, explained.

``charges_due(subscription, through, billed, usage)`` is pure and safe to repeat.
From the subscription's history it derives, deterministically, every line that
should exist up to ``through`` (docs/billing-rules.md §2 Periods, anchors and dates,
§3 Proration, §4 Charge types and when a line is due, §5 Pricing models; late usage
§12, minimum true-up §8):

- ``recurring``: one line per item per billing period, in advance, on the period's
  first day; a stub (start off the anchor, or the term's end) is prorated over the
  days of the full anchored period that contains it;
- ``proration_credit`` / ``proration_charge``: each mid-period change on day D
  credits the unused part ``[D, period end)`` of the previous terms and charges the
  same days at the new terms: two lines, never one net line;
- ``usage``: in arrears, once the usage window has ended, from the quantities the
  caller passes (``usage[(item_id, window start)]``); usage that arrives after its
  window was billed adds one ``usage`` line on the next billing, dated to the window,
  for the re-rated total minus what was billed (key ``…:usage#late-<digest>``);
- ``one_time``: on the day the item starts;
- percent_of lines follow the covered lines emitted in the same call (so they
  follow proration), and ``minimum_true_up`` lifts an ended period to the minimum.

Nothing before the cut-over (``bills_from``: the run's, or the subscription's own when
later; ``billing_floor``) is charged: a period that straddles it bills its days from the
cut-over, prorated like a stub (§19 Cut-over).

Every line has a deterministic ``key``; lines whose key was already billed are not
returned again. When history changed after billing (an amendment dated in the past),
a billed line that no longer matches is corrected with a credit of what was actually
billed and a charge at the new terms (or one line for the difference when only its
end moved, e.g. an immediate cancellation; a line none of whose days remain, e.g. after an
immediate cancellation on the subscription's first day, is reversed in full): those appear
in the next billing (docs/billing-rules.md §10 Cancellations).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from billing_engine.catalog import ChargeType
from billing_engine.errors import InvalidInputError
from billing_engine.money import minor_units
from billing_engine.periods import Period, format_range, period_containing, period_index, period_start
from billing_engine.pricing import PRICING_MODELS, Rating, fmt
from billing_engine.subscriptions import Subscription, SubscriptionItem

ZERO = Decimal(0)
ONE = Decimal(1)
HUNDRED = Decimal(100)

RECURRING = "recurring"
PRORATION_CREDIT = "proration_credit"
PRORATION_CHARGE = "proration_charge"
USAGE = "usage"
ONE_TIME = "one_time"
MINIMUM_TRUE_UP = "minimum_true_up"
KINDS = (RECURRING, PRORATION_CREDIT, PRORATION_CHARGE, USAGE, ONE_TIME, MINIMUM_TRUE_UP)
_KIND_RANK = {kind: rank for rank, kind in enumerate(KINDS)}

MINIMUM_ITEM_ID = "_minimum"
_QUANTUM: dict[str, Decimal] = {}

_PRICED: dict[int, tuple[object, dict]] = {}  # see _priced


@dataclass(frozen=True, slots=True)
class ChargeLine:
    """One line owed by a subscription. ``amount`` is the net, rounded to the currency and signed
    (credits negative); ``discount`` is already subtracted from it and carries the line's sign
    (a credit gives its discount back: −16.46 on a −164.52 credit). ``gross`` (price × quantity ×
    days, rounded) = ``amount + discount`` (docs/billing-rules.md §3 Proration, §13 Invoices)."""

    key: str
    subscription_id: str
    item_id: str
    product_code: str
    product_name: str
    kind: str
    starts_on: date
    ends_before: date
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal
    discount: Decimal
    currency: str
    explanation: str
    description: str
    # additions to the contract
    period_starts_on: date | None = None  # the full billing period the line belongs to
    period_ends_before: date | None = None
    price_id: str = ""
    version_id: str = ""  # the version (amendment, renewal or "start") whose terms the line charges

    @property
    def gross(self) -> Decimal:
        """The amount before the discount: gross − discount = amount (the net)."""
        return self.amount + self.discount


_FIELDS = ("key", "subscription_id", "item_id", "product_code", "product_name", "kind", "starts_on", "ends_before",
           "quantity", "unit_price", "amount", "discount", "currency", "explanation", "description",
           "period_starts_on", "period_ends_before", "price_id", "version_id")
(_s0, _s1, _s2, _s3, _s4, _s5, _s6, _s7, _s8, _s9, _s10, _s11, _s12, _s13, _s14, _s15, _s16, _s17,
 _s18) = (getattr(ChargeLine, name).__set__ for name in _FIELDS)
_new = object.__new__


def _line(a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18) -> ChargeLine:
    """``ChargeLine(...)`` by position, about 3× faster than the frozen dataclass ``__init__``
    (the bill run builds hundreds of thousands of them)."""
    line = _new(ChargeLine)
    _s0(line, a0), _s1(line, a1), _s2(line, a2), _s3(line, a3), _s4(line, a4), _s5(line, a5), _s6(line, a6)
    _s7(line, a7), _s8(line, a8), _s9(line, a9), _s10(line, a10), _s11(line, a11), _s12(line, a12)
    _s13(line, a13), _s14(line, a14), _s15(line, a15), _s16(line, a16), _s17(line, a17), _s18(line, a18)
    return line


@dataclass(frozen=True, slots=True)
class BilledCharge:
    """What was billed for a key (``amount``: the net; ``discount``: the line discount, with the
    line's sign). A ``ChargeLine`` works wherever this is expected."""

    key: str
    amount: Decimal
    quantity: Decimal = ZERO
    unit_price: Decimal = ZERO
    starts_on: date | None = None
    ends_before: date | None = None
    discount: Decimal = ZERO


class _Draft:
    """A line before its texts are formatted (most expected lines are already billed)."""

    __slots__ = ("key", "kind", "item", "rating", "starts_on", "ends_before", "period", "num", "den",
                 "version_id", "amount", "discount", "due_on", "quantity", "index", "text")

    def __init__(self, key, kind, item, rating, starts_on, ends_before, period, num, den, version_id,
                 amount, discount, due_on, quantity, index, text=None):
        self.key = key
        self.kind = kind
        self.item = item
        self.rating = rating
        self.starts_on = starts_on
        self.ends_before = ends_before
        self.period = period
        self.num = num
        self.den = den
        self.version_id = version_id
        self.amount = amount
        self.discount = discount
        self.due_on = due_on
        self.quantity = quantity
        self.index = index
        self.text = text  # (explanation, description) for corrections and derived lines


def _digest(*parts: object) -> str:
    return hashlib.sha1("|".join(str(p) for p in parts).encode()).hexdigest()[:12]


def rate_item(item: SubscriptionItem, quantity: Decimal | None = None) -> Rating:
    """The full-period amount of an item: its contract price if negotiated, else its catalog model."""
    q = item.quantity if quantity is None else quantity
    price = item.contract_unit_price
    if price is not None:
        if item.price.terms.model == "flat":
            return Rating(price, f"flat {fmt(price)} (contract price)", price)
        return Rating(q * price, f"{fmt(q)} × {fmt(price)} (contract price)", price)
    if q < 0:
        raise InvalidInputError("quantity", f"must not be negative, got {q}")
    terms = item.price.terms
    return PRICING_MODELS[terms.model].rate(terms, q)


def _quantum(currency: str) -> Decimal:
    quantum = _QUANTUM.get(currency)
    if quantum is None:
        quantum = _QUANTUM[currency] = Decimal(1).scaleb(-minor_units(currency))
    return quantum


def _priced(item: SubscriptionItem) -> tuple[Rating, Decimal, Decimal, str]:
    """(rating, full-period amount, full-period discount, "Name detail − discount") for an item.

    Pure in (price, quantity, contract price, discount), so shared across calls and
    subscriptions: keyed by the price object (kept alive by the entry, so its id is not
    reused), then by the item's terms.
    """
    price = item.price
    entry = _PRICED.get(id(price))
    if entry is None or entry[0] is not price:
        if len(_PRICED) > 10_000:
            _PRICED.clear()
        entry = _PRICED[id(price)] = (price, {})
    per_terms = entry[1]
    key = (item.quantity, item.contract_unit_price, item.discount_percent, item.discount_amount)
    priced = per_terms.get(key)
    if priced is None:
        if len(per_terms) > 10_000:
            per_terms.clear()
        rating = rate_item(item)
        amount, discount = _line_amount(rating.amount, item, 1, 1, _quantum(price.currency))
        text = f"{price.product.name} {rating.detail}"
        if item.discount_percent or item.discount_amount:
            text += _discount_text(item)
        priced = per_terms[key] = (rating, amount, discount, text)
    return priced


def _line_amount(full: Decimal, item: SubscriptionItem, num: int, den: int, quantum: Decimal) -> tuple[Decimal, Decimal]:
    """(rounded amount, rounded discount) for ``num/den`` of a full-period amount, after the item's discount."""
    gross = full if num == den else full * num / den
    cut = ZERO
    if item.discount_percent:
        cut = gross * item.discount_percent / HUNDRED
    elif item.discount_amount:
        fixed = item.discount_amount if num == den else item.discount_amount * num / den
        cut = fixed if fixed < gross else (gross if gross > 0 else ZERO)
    amount = (gross - cut).quantize(quantum, ROUND_HALF_UP)
    if not cut:
        return amount, ZERO
    return amount, gross.quantize(quantum, ROUND_HALF_UP) - amount


def _discount_text(item: SubscriptionItem) -> str:
    if item.discount_percent:
        return f" − {fmt(item.discount_percent)} % discount"
    if item.discount_amount:
        return f" − {fmt(item.discount_amount)} discount"
    return ""


def _item_timeline(versions, item_id: str) -> list[tuple[date, str, SubscriptionItem | None]]:
    timeline: list[tuple[date, str, SubscriptionItem | None]] = []
    for version in versions:
        item = version.items.get(item_id)
        if timeline and timeline[-1][2] is item:
            continue
        timeline.append((version.effective_on, version.version_id, item))
    return timeline


def _state_at(timeline, day: date):
    found = timeline[0]
    for entry in timeline:
        if entry[0] > day:
            break
        found = entry
    return found


def charges_due(
    subscription: Subscription,
    through: date,
    billed: Iterable[BilledCharge | ChargeLine] | Mapping[str, BilledCharge | ChargeLine] = (),
    usage: Mapping[tuple[str, date], Decimal] | None = None,
    *,
    bills_from: date | None = None,
) -> list[ChargeLine]:
    """The charge lines of ``subscription`` due up to ``through`` (inclusive) and not yet billed.

    ``billed``: what was already billed for this subscription (lines or ``BilledCharge``,
    keyed by ``key``). ``usage``: aggregated usage per ``(item_id, usage window start)``;
    see ``usage_windows``. ``bills_from``: the run's cut-over, the first day anything may be
    invoiced; the later of it and the subscription's own ``bills_from`` applies (see
    ``billing_floor``).
    """
    return _charges_due(subscription, through, billed, usage, None, billing_floor(subscription, bills_from))


def billing_floor(subscription: Subscription, bills_from: date | None = None) -> date | None:
    """The first day that may be invoiced for ``subscription``: the later of the run's cut-over
    and the subscription's own ``bills_from`` (None: no floor). Days before it are never charged:
    periods that end by it are skipped, a period that straddles it bills the days from it
    (prorated over the full period), a one-time charge dated before it is not billed, usage
    windows that end by it are not billed, and what was already billed before it is left as it
    is (never reversed or corrected). docs/billing-rules.md §19 Cut-over."""
    floors = [day for day in (subscription.bills_from, bills_from) if day is not None]
    if not floors:
        return None
    floor = max(floors)
    if not isinstance(floor, date):
        raise InvalidInputError("bills_from", f"{floor!r} is not a date")
    return floor if floor > subscription.starts_on else None


def _charges_due(subscription, through, billed, usage, windows: list | None,
                 floor: date | None = None) -> list[ChargeLine]:
    if not isinstance(through, date):
        raise InvalidInputError("through", f"{through!r} is not a date")
    if usage is None:
        usage = {}
    sub = subscription
    sid = sub.subscription_id
    currency = sub.currency
    quantum = _quantum(currency)
    prefix = sid + ":"

    billed_lines = billed if isinstance(billed, (list, tuple)) else \
        billed.values() if isinstance(billed, Mapping) else billed
    by_base: dict[str, list] = {}
    all_billed: list = []
    horizon = through
    for line in billed_lines:
        key = line.key
        if not key.startswith(prefix):
            continue
        all_billed.append(line)
        by_base.setdefault(key.split("#", 1)[0], []).append(line)
        starts_on = getattr(line, "starts_on", None)
        if starts_on is not None and starts_on > horizon:
            horizon = starts_on

    start = sub.starts_on
    end = sub.ends_before
    if end is not None and end <= start and not by_base:
        return []  # ended on its first day with nothing billed: nothing is due
    anchor = sub.billing_anchor_on
    versions = sub.versions(horizon)
    item_ids: list[str] = []
    for version in versions:
        for item_id in version.items:
            if item_id not in item_ids:
                item_ids.append(item_id)

    drafts: list[_Draft] = []
    percent_items: list[tuple[int, str, list]] = []

    for index, item_id in enumerate(item_ids):
        timeline = _item_timeline(versions, item_id)
        for entry in timeline:
            if entry[2] is not None:
                price = entry[2].price
                first_active = entry[0]
                break
        if price.terms.model == "percent_of":
            percent_items.append((index, item_id, timeline))
            continue
        kind = price.charge_type
        if kind is ChargeType.ONE_TIME:
            _one_time(drafts, sid, item_id, index, timeline, end, quantum, floor)
            continue
        interval = price.interval
        # Before the cut-over nothing is charged: start at the period that contains it.
        idx = period_index(anchor, interval, floor if floor is not None and floor > first_active else first_active)
        pos = 0
        count = len(timeline)
        p_start = period_start(anchor, interval, idx)
        while p_start <= horizon and (end is None or p_start < end):
            p_end = period_start(anchor, interval, idx + 1)
            idx += 1
            w_start = start if start > p_start else p_start
            w_end = end if end is not None and end < p_end else p_end
            base = f"{prefix}{item_id}:{p_start.isoformat()}:"
            if floor is not None and w_start < floor and not _billed_before(by_base.get(base + RECURRING), floor):
                w_start = floor  # the period straddles the cut-over: only its days from the cut-over
            if w_end <= w_start:
                p_start = p_end
                continue
            while pos + 1 < count and timeline[pos + 1][0] <= w_start:
                pos += 1
            den = (p_end - p_start).days
            period = (p_start, p_end)
            if kind is ChargeType.RECURRING:
                _, version_id, item = timeline[pos]
                if item is not None:
                    num = (w_end - w_start).days
                    rating, amount, discount, _ = _priced(item)
                    if num != den:
                        amount, discount = _line_amount(rating.amount, item, num, den, quantum)
                    drafts.append(_Draft(base + RECURRING, RECURRING, item, rating, w_start, w_end, period, num, den,
                                         version_id, amount, discount, w_start, None, index))
                k = pos + 1
                while k < count and timeline[k][0] < w_end:
                    day, version_id, new = timeline[k]
                    old = timeline[k - 1][2]
                    num = (w_end - day).days
                    if old is not None:
                        rating = _priced(old)[0]
                        amount, discount = _line_amount(rating.amount, old, num, den, quantum)
                        drafts.append(_Draft(f"{base}{PRORATION_CREDIT}:{version_id}", PRORATION_CREDIT, old, rating,
                                             day, w_end, period, num, den, version_id, -amount, -discount, day,
                                             None, index))
                    if new is not None:
                        rating = _priced(new)[0]
                        amount, discount = _line_amount(rating.amount, new, num, den, quantum)
                        drafts.append(_Draft(f"{base}{PRORATION_CHARGE}:{version_id}", PRORATION_CHARGE, new, rating,
                                             day, w_end, period, num, den, version_id, amount, discount, day,
                                             None, index))
                    k += 1
            else:
                _usage_window_draft(drafts, base, item_id, index, timeline, pos, w_start, w_end, period, usage,
                                    by_base, quantum)
            if pos == count - 1 and timeline[pos][2] is None:
                break
            p_start = p_end

    if windows is not None:
        windows.extend((d.item.item_id, Period(d.starts_on, d.ends_before)) for d in drafts
                       if d.kind == USAGE and d.starts_on <= through)
        return []
    if by_base:
        known_items = {item_id: item for version in versions for item_id, item in version.items.items()}
        new_drafts = _reconcile(sub, drafts, by_base, through, known_items, floor)
    else:
        new_drafts = [draft for draft in drafts if draft.due_on <= through and draft.amount]
    for index, item_id, timeline in percent_items:
        new_drafts.extend(_percent_of(sub, index, item_id, timeline, new_drafts, by_base, quantum))
    if sub.minimum_amount is not None:
        new_drafts.extend(_minimum_true_up(sub, through, all_billed, new_drafts, by_base, quantum, floor))

    if len(new_drafts) > 1:
        last = len(item_ids)
        new_drafts.sort(key=lambda d: (d.starts_on, _KIND_RANK[d.kind],
                                       d.index if d.index.__class__ is int else last, d.key))
    return [_build(sub, draft) for draft in new_drafts]


def _billed_before(billed: list | None, floor: date) -> bool:
    """Whether a period was billed from a day before the cut-over (the cut-over moved later since):
    it then stays as billed, whole."""
    return billed is not None and any((getattr(line, "starts_on", None) or floor) < floor for line in billed)


def _one_time(drafts, sid, item_id, index, timeline, end, quantum, floor=None) -> None:
    for day, version_id, item in timeline:
        if item is None:
            continue
        if (end is not None and day >= end) or (floor is not None and day < floor):
            return  # ended, or charged before the cut-over (outside billsync)
        rating, amount, discount, _ = _priced(item)
        nxt = day + timedelta(days=1)
        drafts.append(_Draft(f"{sid}:{item_id}:{day.isoformat()}:{ONE_TIME}", ONE_TIME, item, rating, day, nxt,
                             (day, nxt), 1, 1, version_id, amount, discount, day, None, index))
        return


def _usage_window_draft(drafts, base, item_id, index, timeline, pos, w_start, w_end, period, usage, by_base,
                        quantum) -> None:
    """One usage line per period: the days of the window when the item was on the subscription."""
    first = last = None
    version_id = item = None
    k = pos
    while k < len(timeline) and timeline[k][0] < w_end:
        day, vid, state = timeline[k]
        seg_start = w_start if day < w_start else day
        seg_end = timeline[k + 1][0] if k + 1 < len(timeline) and timeline[k + 1][0] < w_end else w_end
        if state is not None and seg_end > seg_start:
            if first is None:
                first, item, version_id = seg_start, state, vid
            last = seg_end
        k += 1
    if first is None:
        return
    key = base + USAGE
    quantity = usage.get((item_id, first))
    if quantity is None:
        if key in by_base:
            return  # billed already and no new figure: leave it as billed
        quantity = ZERO
    elif isinstance(quantity, float) or quantity < 0:
        raise InvalidInputError(f"usage[{item_id}, {first.isoformat()}]", f"{quantity!r} must be a decimal ≥ 0")
    rating = rate_item(item, quantity)
    amount, discount = _line_amount(rating.amount, item, 1, 1, quantum)
    drafts.append(_Draft(key, USAGE, item, rating, first, last, period, (last - first).days,
                         (period[1] - period[0]).days, version_id, amount, discount, last, quantity, index))


def usage_windows(subscription: Subscription, through: date, *,
                  bills_from: date | None = None) -> list[tuple[str, Period]]:
    """The usage windows ``(item_id, [starts_on, ends_before))`` that have started by ``through``,
    whether or not they would bill anything (the last one may still be open).

    A window is the part of an anchored billing period when the item was on the
    subscription (and on or after the cut-over, ``bills_from`` as for ``charges_due``). The
    invoicing side aggregates usage over these windows and passes the totals to
    ``charges_due`` as ``usage[(item_id, window.starts_on)]``; a window is billed once it has
    ended (in arrears).
    """
    windows: list[tuple[str, Period]] = []
    _charges_due(subscription, through, (), _ANY_USAGE, windows, billing_floor(subscription, bills_from))
    return windows


class _AnyUsage(dict):
    """Usage of 0 for every window: lets ``usage_windows`` see windows that would bill nothing."""

    def get(self, key, default=None):
        return ZERO


_ANY_USAGE = _AnyUsage()


# ----------------------------------------------------------------- reconcile


def _reconcile(sub: Subscription, drafts: list[_Draft], by_base, through: date, known_items,
               floor: date | None = None) -> list[_Draft]:
    """New drafts not billed yet, plus corrections where what was billed no longer matches the history.

    A billed line of a period (or day) before the cut-over ``floor`` that is no longer drawn is
    left as billed: days before the cut-over are outside billsync's reach."""
    result = []
    seen = set()
    for draft in drafts:
        billed = by_base.get(draft.key)
        if billed is None:
            if draft.due_on <= through and draft.amount:
                result.append(draft)
            continue
        seen.add(draft.key)
        net = sum((line.amount for line in billed), ZERO)
        if net == draft.amount:
            continue
        late = _late_usage(draft, billed, net) if draft.kind == USAGE else None
        if late is not None:
            result.append(late)
            continue
        result.extend(_correction(sub, draft.key, billed, net, draft))
    for base, billed in by_base.items():
        if base in seen:
            continue
        parts = base.split(":")
        if len(parts) < 4 or parts[3] not in (RECURRING, PRORATION_CREDIT, PRORATION_CHARGE, ONE_TIME, USAGE):
            continue  # derived lines (percent_of, minimum true-up) follow their own rules
        if parts[3] == USAGE:
            continue  # usage no longer expected: leave it to the usage records
        if floor is not None and parts[2] < floor.isoformat():
            continue  # billed before the cut-over moved past it: left as billed
        net = sum((line.amount for line in billed), ZERO)
        if net:
            result.extend(_correction(sub, base, billed, net, None, known_items.get(parts[1])))
    return result


def _late_usage(draft: _Draft, billed: list, net: Decimal) -> _Draft | None:
    """Usage that arrived after its window was billed: one ``usage`` line for what it adds.

    The window is re-rated on its whole quantity (so tiers apply to the total) and the
    line charges the difference with what was billed for the window, dated to the
    window. Its key is the window's usage key + ``#late-`` + a digest of the new total,
    so each new figure is billed once. ``None`` when the quantity did not grow (the
    terms changed instead: that is a correction).
    """
    before = sum((getattr(line, "quantity", None) or ZERO for line in billed), ZERO)
    total = draft.quantity
    added = total - before
    if added <= 0:
        return None
    diff = draft.amount - net
    # Gross and discount are the differences of what the window costs now and what was billed.
    discount = _matching_discount(diff, draft.discount - _billed_discount(billed))
    gross = diff + discount
    item = draft.item
    unit = gross / added
    clean = unit == unit.quantize(Decimal("0.000001")) and unit * added == gross
    name = item.price.product.name
    label = format_range(draft.starts_on, draft.ends_before)
    rate = f" × {fmt(unit)}" if clean else f" = {'+' if gross >= 0 else '−'}{fmt(abs(gross))}"
    explanation = (f"Late usage for {label}: {fmt(total)} total, {fmt(before)} billed before: +{fmt(added)}{rate} "
                   f"({name} {draft.rating.detail}{_discount_text(item)}, {fmt(net)} billed before)")
    description = f"{name} late usage ({label})"
    rating = Rating(gross, draft.rating.detail, unit.quantize(Decimal("0.000001"), ROUND_HALF_UP))
    key = f"{draft.key}#late-{_digest(total, draft.amount)}"
    return _Draft(key, USAGE, item, rating, draft.starts_on, draft.ends_before, draft.period, draft.num, draft.den,
                  draft.version_id, diff, discount, draft.due_on, added, draft.index, (explanation, description))


def _billed_discount(billed: list) -> Decimal:
    """Σ line discounts of what was billed for a key (signed like the lines)."""
    return sum((getattr(line, "discount", None) or ZERO for line in billed), ZERO)


def _matching_discount(amount: Decimal, discount: Decimal) -> Decimal:
    """``discount`` when it has the sign of its line's net ``amount`` (so gross − discount = amount
    with gross, discount and amount of one sign), else zero: the whole amount is then gross."""
    if not discount or (discount > 0 and amount >= 0) or (discount < 0 and amount <= 0):
        return discount
    return ZERO


def _correction(sub: Subscription, base: str, billed: list, net: Decimal, draft: _Draft | None,
                item: SubscriptionItem | None = None) -> list[_Draft]:
    current = next((line for line in billed if line.amount == net), None) or \
        next((line for line in billed if line.key == base), billed[0])
    target = draft.amount if draft is not None else ZERO
    history = [a.amendment_id for a in sorted(sub.amendments, key=lambda a: a.sequence)]
    tag = _digest(*history, target, draft.quantity if draft else "", draft.ends_before if draft else "")
    parts = base.split(":")
    item_id = parts[1]
    when = f"after amendment {sub.history_tag}" if sub.amendments else "after a change"
    c_start = getattr(current, "starts_on", None)
    c_end = getattr(current, "ends_before", None)
    if draft is None:
        start = c_start or date.fromisoformat(parts[2])
        stop = c_end or start
        kind = PRORATION_CREDIT if net > 0 else PRORATION_CHARGE
        text = (f"Reversal of {fmt(net)} billed for {format_range(start, stop)}, no longer due {when}",
                f"Reversal ({format_range(start, stop)})")
        billed_rating = Rating(ZERO, "", getattr(current, "unit_price", ZERO))
        return [_Draft(f"{base}#{tag}", kind, item, billed_rating, start, stop, None, 0, 0, sub.history_tag, -net,
                       _matching_discount(-net, -_billed_discount(billed)), start, getattr(current, "quantity", ZERO),
                       item_id, text)]
    same_terms = (c_start == draft.starts_on and c_end is not None and c_end != draft.ends_before
                  and draft.kind != USAGE
                  and getattr(current, "quantity", None) == _line_quantity(draft)
                  and getattr(current, "unit_price", None) == _line_unit_price(draft))
    if same_terms:
        lo, hi = sorted((c_end, draft.ends_before))
        days = (hi - lo).days
        diff = draft.amount - net
        kind = PRORATION_CREDIT if diff < 0 else PRORATION_CHARGE
        label = "Unused time" if draft.ends_before < c_end else "Added time"
        if draft.amount < 0:  # a credit line that shrank or grew
            label = "Credit adjustment"
        text = (f"{label} {days}/{draft.den} days ({format_range(lo, hi)}) of {_product(draft.item)[1]}: "
                f"billed {fmt(net)}, now {fmt(draft.amount)} {when}",
                f"{label} {days}/{draft.den} days")
        discount = _matching_discount(diff, draft.discount - _billed_discount(billed))
        return [_Draft(f"{base}#{tag}", kind, draft.item, None, lo, hi, draft.period, days, draft.den,
                       draft.version_id, diff, discount, lo, _line_quantity(draft), draft.index, text)]
    start = c_start or draft.starts_on
    stop = c_end or draft.ends_before
    lines = []
    credit_text = (f"Credit of {fmt(net)} billed for {format_range(start, stop)} ({base.split(':', 3)[3]}), "
                   f"replaced {when}", f"Credit as billed ({format_range(start, stop)})")
    billed_rating = Rating(ZERO, "", getattr(current, "unit_price", _line_unit_price(draft)))
    if net:
        lines.append(_Draft(f"{base}#{tag}:credit", PRORATION_CREDIT if net > 0 else PRORATION_CHARGE, draft.item,
                            billed_rating, start, stop, draft.period, draft.num, draft.den, draft.version_id, -net,
                            _matching_discount(-net, -_billed_discount(billed)), start,
                            getattr(current, "quantity", _line_quantity(draft)), draft.index, credit_text))
    if draft.amount:
        explanation, description = _texts(draft, _product(draft.item)[1])
        lines.append(_Draft(f"{base}#{tag}:charge", PRORATION_CHARGE if draft.amount > 0 else PRORATION_CREDIT,
                            draft.item, draft.rating, draft.starts_on, draft.ends_before, draft.period, draft.num,
                            draft.den, draft.version_id, draft.amount, draft.discount, draft.starts_on,
                            draft.quantity, draft.index, (f"{explanation}, replacing what was billed {when}",
                                                          description)))
    return lines


# ------------------------------------------------------ percent_of, minimum


def _percent_of(sub: Subscription, index: int, item_id: str, timeline, emitted: list[_Draft], by_base,
                quantum) -> list[_Draft]:
    price = next(entry[2].price for entry in timeline if entry[2] is not None)
    covered = set(price.terms.covered_product_codes)
    groups: dict[date, list[_Draft]] = {}
    periods: dict[date, tuple[date, date]] = {}
    for draft in emitted:
        if draft.item is None or draft.item.price.product.code not in covered:
            continue
        state = _state_at(timeline, draft.starts_on)
        if state[2] is None or draft.starts_on < timeline[0][0]:
            continue
        full = period_containing(sub.billing_anchor_on, price.interval, draft.starts_on)
        groups.setdefault(full.starts_on, []).append(draft)
        periods[full.starts_on] = (full.starts_on, full.ends_before)
    result = []
    model = PRICING_MODELS["percent_of"]
    for p_start, members in sorted(groups.items()):
        base_amount = sum((d.amount for d in members), ZERO)
        if not base_amount:
            continue
        key = f"{sub.subscription_id}:{item_id}:{p_start.isoformat()}:percent_of:" \
              f"{_digest(*sorted(d.key for d in members))}"
        if key in by_base:
            continue
        first = min(members, key=lambda d: d.starts_on)
        state = _state_at(timeline, first.starts_on)
        item = state[2]
        rating = model.rate(item.price.terms, base_amount)
        if rating.amount < 0:  # a credit carries its discount with its sign, like a proration credit
            amount, discount = _line_amount(-rating.amount, item, 1, 1, quantum)
            amount, discount = -amount, -discount
        else:
            amount, discount = _line_amount(rating.amount, item, 1, 1, quantum)
        kinds = {d.kind for d in members}
        kind = kinds.pop() if len(kinds) == 1 else (PRORATION_CREDIT if amount < 0 else PRORATION_CHARGE)
        if kind in (PRORATION_CREDIT, PRORATION_CHARGE):
            kind = PRORATION_CREDIT if amount < 0 else PRORATION_CHARGE
        names = ", ".join(sorted({d.item.price.product.name for d in members}))
        stop = max(d.ends_before for d in members)
        name = item.price.product.name
        text = (f"{name} {rating.detail} ({names}){_discount_text(item)}",
                f"{name} ({format_range(first.starts_on, stop)})")
        result.append(_Draft(key, kind, item, rating, first.starts_on, stop, periods[p_start], 1, 1, state[1],
                             amount, discount, first.starts_on, base_amount, index, text))
    return result


def _minimum_true_up(sub: Subscription, through: date, all_billed: list, emitted: list[_Draft], by_base,
                     quantum, floor: date | None = None) -> list[_Draft]:
    """Lift each ended billing period to the minimum commitment (Lago: 800 billed, minimum 1,000 → 200).

    From the cut-over ``floor`` on: a period that straddles it is held to the minimum prorated
    over its days from the cut-over."""
    result = []
    start, end = sub.starts_on, sub.ends_before
    anchor, interval = sub.billing_anchor_on, sub.interval
    idx = period_index(anchor, interval, start if floor is None else max(start, floor))
    while True:
        p_start, p_end = period_start(anchor, interval, idx), period_start(anchor, interval, idx + 1)
        idx += 1
        w_start = max(p_start, start)
        w_end = p_end if end is None else min(p_end, end)
        if w_start >= w_end or w_end > through + timedelta(days=1) or (end is not None and p_start >= end):
            break
        if w_end > through:
            break
        key = f"{sub.subscription_id}:{MINIMUM_ITEM_ID}:{p_start.isoformat()}:{MINIMUM_TRUE_UP}"
        if key in by_base:
            continue
        total = sum((line.amount for line in all_billed
                     if line.starts_on is not None and w_start <= line.starts_on < w_end), ZERO)
        total += sum((d.amount for d in emitted if w_start <= d.starts_on < w_end), ZERO)
        if floor is not None and w_start < floor:
            w_start = floor  # the minimum covers the days from the cut-over
        num, den = (w_end - w_start).days, (p_end - p_start).days
        minimum = sub.minimum_amount if num == den else sub.minimum_amount * num / den
        minimum = minimum.quantize(quantum, ROUND_HALF_UP)
        if total >= minimum:
            continue
        due = minimum - total
        days = f" × {num}/{den} days" if num != den else ""
        text = (f"Minimum commitment {fmt(sub.minimum_amount)}{days} = {fmt(minimum)}, billed {fmt(total)}: "
                f"true-up {fmt(due)}", f"Minimum commitment true-up ({format_range(w_start, w_end)})")
        result.append(_Draft(key, MINIMUM_TRUE_UP, None, None, w_start, w_end, (p_start, p_end), num, den,
                             sub.history_tag, due, ZERO, w_end, ONE, MINIMUM_ITEM_ID, text))
    return result


# ------------------------------------------------------------------- texts


def _product(item: SubscriptionItem | None) -> tuple[str, str]:
    if item is None:
        return "minimum_commitment", "Minimum commitment"
    product = item.price.product
    return product.code, product.name


def _line_quantity(draft: _Draft) -> Decimal:
    if draft.quantity is not None:
        return draft.quantity
    item = draft.item
    if item.price.terms.model == "flat":
        return ONE
    return item.quantity


def _line_unit_price(draft: _Draft) -> Decimal:
    if draft.rating is not None:
        return draft.rating.unit_price
    return rate_item(draft.item).unit_price


def _texts(draft: _Draft, name: str) -> tuple[str, str]:
    item = draft.item
    rating = draft.rating
    priced = _priced(item)
    if rating is None or rating is priced[0]:
        detail = priced[3]
    else:
        detail = f"{name} {rating.detail}{_discount_text(item)}"
    kind = draft.kind
    if kind == RECURRING:
        label = format_range(draft.starts_on, draft.ends_before)
        if draft.num != draft.den:
            return f"{detail} × {draft.num}/{draft.den} days", f"{name} ({label})"
        return detail, f"{name} ({label})"
    if kind == PRORATION_CREDIT:
        fraction = f"{draft.num}/{draft.den} days"
        label = format_range(draft.starts_on, draft.ends_before)
        return f"Unused time {fraction}: {detail} ({label})", f"Unused time {fraction}"
    if kind == PRORATION_CHARGE:
        fraction = f"{draft.num}/{draft.den} days"
        label = format_range(draft.starts_on, draft.ends_before)
        return f"Remaining time {fraction}: {detail} ({label})", f"Remaining time {fraction}"
    if kind == USAGE:
        return detail, f"{name} usage ({format_range(draft.starts_on, draft.ends_before)})"
    return detail, name


def _build(sub: Subscription, draft: _Draft) -> ChargeLine:
    item = draft.item
    period = draft.period or (draft.starts_on, draft.ends_before)
    if item is None:  # minimum true-up
        explanation, description = draft.text
        return _line(draft.key, sub.subscription_id, draft.index, "minimum_commitment", "Minimum commitment",
                          draft.kind, draft.starts_on, draft.ends_before, draft.quantity, draft.amount,
                          draft.amount, draft.discount, sub.currency, explanation, description, period[0],
                          period[1], "", draft.version_id)
    price = item.price
    product = price.product
    name = product.name
    explanation, description = draft.text or _texts(draft, name)
    quantity = draft.quantity
    if quantity is None:
        quantity = ONE if price.terms.model == "flat" else item.quantity
    rating = draft.rating
    unit_price = rating.unit_price if rating is not None else rate_item(item).unit_price
    item_id = item.item_id if draft.index.__class__ is int else draft.index
    return _line(draft.key, sub.subscription_id, item_id, product.code, name, draft.kind, draft.starts_on,
                      draft.ends_before, quantity, unit_price, draft.amount, draft.discount, sub.currency,
                      explanation, description, period[0], period[1], price.price_id, draft.version_id)
