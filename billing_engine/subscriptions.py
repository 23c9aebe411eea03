"""Subscriptions, their amendments, and their history of versions.

A subscription is its initial items plus an append-only list of amendments, each
with an effective date. The state on any date D is the initial items with every
amendment effective on or before D applied in (date, recording order); several
changes on the same day collapse into the day's last state (Kill Bill). So "what
was this subscription on date D" always has exactly one answer, and an amendment
dated in the past simply lands in its place in the history.

Terms: ``term_months`` (None = evergreen). With ``auto_renew`` a new term starts
at each term end, applying ``renewal_uplift_percent`` and keeping contract prices;
without it the subscription ends at the term end unless renewed explicitly.
Amendments co-terminate with the term: an added item ends with the subscription.
Cancellation is at the end of the current term by default, or immediate.

Pure: plain values in, plain values out; the caller passes dates.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Any

from billing_engine.catalog import ChargeType, Price, check_id
from billing_engine.errors import ConflictError, CurrencyMismatchError, InvalidInputError
from billing_engine.money import check_currency, check_unit_price, round_unit_price, to_decimal
from billing_engine.periods import Interval, add_months, last_day_of_month, period_containing

ZERO = Decimal(0)
HUNDRED = Decimal(100)
START_VERSION_ID = "start"
MAX_ATTRIBUTES = 10  # custom attributes per subscription (docs/mappings.md, Custom attributes)
MAX_ATTRIBUTE_LENGTH = 255
ATTRIBUTE_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")

Attributes = tuple[tuple[str, str], ...]


def check_attributes(value: Mapping[str, Any] | Iterable[tuple[str, Any]] | None) -> Attributes:
    """An admin's custom attributes as ``((name, value), ...)`` sorted by name, empty values left out.

    Names are lower_case (at most 40 characters), values text of at most 255 printable characters,
    at most ten of them; anything else is an ``InvalidInputError`` naming the attribute."""
    pairs = list((value or {}).items()) if isinstance(value, Mapping) or value is None else list(value)
    out: dict[str, str] = {}
    for name, text in pairs:
        if not isinstance(name, str) or not ATTRIBUTE_NAME.fullmatch(name):
            raise InvalidInputError("attributes", f"{name!r} is not an attribute name (lower_case, at most 40 "
                                                  "characters)")
        if text is None or (isinstance(text, str) and not text.strip()):
            continue
        if not isinstance(text, str) or len(text) > MAX_ATTRIBUTE_LENGTH or any(ord(c) < 32 for c in text):
            raise InvalidInputError(f"attributes.{name}", f"{text!r} is not text of at most "
                                                          f"{MAX_ATTRIBUTE_LENGTH} printable characters")
        out[name] = text.strip()
    if len(out) > MAX_ATTRIBUTES:
        raise InvalidInputError("attributes", f"{len(out)} attributes; at most {MAX_ATTRIBUTES}")
    return tuple(sorted(out.items()))


class AmendmentAction(StrEnum):
    CHANGE_QUANTITY = "change_quantity"
    ADD_ITEM = "add_item"
    REMOVE_ITEM = "remove_item"
    CHANGE_PRICE = "change_price"
    CANCEL = "cancel"
    RENEW = "renew"

    @classmethod
    def parse(cls, value: Any, field_name: str = "action") -> AmendmentAction:
        try:
            return cls(value)
        except ValueError:
            raise InvalidInputError(
                field_name, f"unknown amendment {value!r}; use one of {', '.join(a.value for a in cls)}"
            ) from None


class SubscriptionStatus(StrEnum):
    PENDING = "pending"  # starts later
    ACTIVE = "active"
    CANCELLED = "cancelled"  # a cancellation is recorded and not yet effective
    ENDED = "ended"


def check_quantity(value: object, field_name: str = "quantity") -> Decimal:
    quantity = to_decimal(value, field_name)
    if quantity < 0:
        raise InvalidInputError(field_name, f"must not be negative, got {quantity}")
    return quantity


@dataclass(frozen=True, slots=True)
class SubscriptionItem:
    """One priced line of a subscription.

    ``contract_unit_price`` (negotiated on the quote line) overrides the catalog
    price for the whole term and renewals: the item is then charged quantity ×
    contract price (or the contract price itself for a flat price).
    ``discount_percent`` (0–100) or ``discount_amount`` (per full period, prorated
    with the line, never below zero) apply before tax.
    """

    item_id: str
    price: Price
    quantity: Decimal = Decimal(1)
    contract_unit_price: Decimal | None = None
    discount_percent: Decimal | None = None
    discount_amount: Decimal | None = None

    def __post_init__(self) -> None:
        check_id(self.item_id, "item_id")
        if not isinstance(self.price, Price):
            raise InvalidInputError("price", f"{self.price!r} is not a catalog price")
        object.__setattr__(self, "quantity", check_quantity(self.quantity))
        if self.contract_unit_price is not None:
            price = check_unit_price(self.contract_unit_price, "contract_unit_price")
            if price < 0:
                raise InvalidInputError("contract_unit_price", f"must not be negative, got {price}")
            if self.price.model == "percent_of":
                raise InvalidInputError("contract_unit_price", "a percent_of price has no unit price to override")
            object.__setattr__(self, "contract_unit_price", price)
        if self.discount_percent is not None and self.discount_amount is not None:
            raise InvalidInputError("discount_amount", "give a discount in percent or as an amount, not both")
        if self.discount_percent is not None:
            percent = to_decimal(self.discount_percent, "discount_percent")
            if not ZERO <= percent <= HUNDRED:
                raise InvalidInputError("discount_percent", f"must be between 0 and 100, got {percent}")
            object.__setattr__(self, "discount_percent", percent)
        if self.discount_amount is not None:
            amount = to_decimal(self.discount_amount, "discount_amount")
            if amount < 0:
                raise InvalidInputError("discount_amount", f"must not be negative, got {amount}")
            object.__setattr__(self, "discount_amount", amount)

    def uplifted(self, percent: Decimal) -> SubscriptionItem:
        """The item at renewal: contract prices kept and raised by the uplift.

        Items priced per unit or flat from the catalog get the uplifted catalog
        price as their contract price; tiered, package, allowance and percent_of
        items stay rated on the catalog.
        """
        if not percent:
            return self
        factor = 1 + percent / HUNDRED
        if self.contract_unit_price is not None:
            base = self.contract_unit_price
        elif self.price.model in ("per_unit", "flat"):
            base = self.price.terms.unit_price
        else:
            return self
        return replace(self, contract_unit_price=round_unit_price(base * factor))


@dataclass(frozen=True, slots=True)
class Amendment:
    """A change with an effective date. ``sequence`` is the recording order."""

    amendment_id: str
    sequence: int
    action: AmendmentAction
    effective_on: date
    item_id: str | None = None
    quantity: Decimal | None = None
    item: SubscriptionItem | None = None
    unit_price: Decimal | None = None
    immediate: bool = False
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Version:
    """The subscription's items from ``effective_on`` until the next version."""

    version_id: str
    effective_on: date
    items: Mapping[str, SubscriptionItem]


@dataclass(frozen=True, slots=True)
class Subscription:
    subscription_id: str
    customer_id: str
    currency: str
    starts_on: date
    items: tuple[SubscriptionItem, ...]
    interval: Interval = Interval.MONTH  # the billing interval: minimum commitment, evergreen cancellation
    billing_anchor_on: date | None = None  # any date whose day is the anchor day; default starts_on
    term_months: int | None = 12  # None: evergreen
    auto_renew: bool = True
    renewal_uplift_percent: Decimal = ZERO
    minimum_amount: Decimal | None = None  # minimum commitment per billing period, before tax
    external_key: str | None = None  # e.g. the Salesforce Opportunity id
    amendments: tuple[Amendment, ...] = field(default=())
    # The first day billsync may invoice (the day after what was billed before billsync; None:
    # from the start). It moves no date of the history: MRR and terms keep the true start.
    bills_from: date | None = None
    # The buyer's references printed on every invoice of the subscription (EN 16931 BT-13, BT-10).
    purchase_order: str = ""
    buyer_reference: str = ""
    # An admin's custom attributes from the deal (cost centre, …), printed on every invoice of it:
    # ((name, value), ...) sorted by name (``check_attributes``).
    attributes: Attributes = ()

    def __post_init__(self) -> None:
        check_id(self.subscription_id, "subscription_id")
        object.__setattr__(self, "attributes", check_attributes(self.attributes))
        for name in ("purchase_order", "buyer_reference"):
            value = getattr(self, name)
            if not isinstance(value, str) or len(value) > 80 or any(ord(c) < 32 for c in value):
                raise InvalidInputError(name, f"{value!r} is not a reference of at most 80 printable characters")
        check_id(self.customer_id, "customer_id")
        check_currency(self.currency)
        if not isinstance(self.starts_on, date):
            raise InvalidInputError("starts_on", f"{self.starts_on!r} is not a date")
        if self.billing_anchor_on is None:
            object.__setattr__(self, "billing_anchor_on", self.starts_on)
        if self.bills_from is not None and not isinstance(self.bills_from, date):
            raise InvalidInputError("bills_from", f"{self.bills_from!r} is not a date")
        if not isinstance(self.interval, Interval):
            object.__setattr__(self, "interval", Interval.parse(self.interval))
        if self.term_months is not None and (
            isinstance(self.term_months, bool) or not isinstance(self.term_months, int) or self.term_months < 1
        ):
            raise InvalidInputError("term_months", f"must be a whole number of months ≥ 1, got {self.term_months!r}")
        if self.term_months is None and not self.auto_renew:
            raise InvalidInputError("auto_renew", "an evergreen subscription (no term) always continues")
        uplift = to_decimal(self.renewal_uplift_percent, "renewal_uplift_percent")
        if uplift < 0:
            raise InvalidInputError("renewal_uplift_percent", f"must not be negative, got {uplift}")
        object.__setattr__(self, "renewal_uplift_percent", uplift)
        if self.minimum_amount is not None:
            minimum = to_decimal(self.minimum_amount, "minimum_amount")
            if minimum < 0:
                raise InvalidInputError("minimum_amount", f"must not be negative, got {minimum}")
            object.__setattr__(self, "minimum_amount", minimum)
        seen: set[str] = set()
        for index, item in enumerate(self.items):
            self._check_item(item, f"items[{index}]")
            if item.item_id in seen:
                raise InvalidInputError(f"items[{index}].item_id", f"{item.item_id!r} appears twice")
            seen.add(item.item_id)

    def _check_item(self, item: SubscriptionItem, field_name: str) -> None:
        if not isinstance(item, SubscriptionItem):
            raise InvalidInputError(field_name, f"{item!r} is not a subscription item")
        if item.price.currency != self.currency:
            raise CurrencyMismatchError(f"{field_name}.price", self.currency, item.price.currency)

    # ------------------------------------------------------------------ terms

    @property
    def history_tag(self) -> str:
        """Identifies the history as it stands: the last recorded amendment (or the start)."""
        if not self.amendments:
            return START_VERSION_ID
        return max(self.amendments, key=lambda a: a.sequence).amendment_id

    @property
    def cancellation(self) -> Amendment | None:
        for amendment in self.amendments:
            if amendment.action is AmendmentAction.CANCEL:
                return amendment
        return None

    def _explicit_renewals(self) -> int:
        return sum(1 for a in self.amendments if a.action is AmendmentAction.RENEW)

    def term_start(self, index: int) -> date:
        return add_months(self.starts_on, self.term_months * index)

    def term_end_after(self, day: date) -> date:
        """End of the term containing ``day`` (evergreen: of the billing period containing it)."""
        if self.term_months is None:
            return period_containing(self.billing_anchor_on, self.interval, day).ends_before
        index = max(0, ((day.year - self.starts_on.year) * 12 + day.month - self.starts_on.month) // self.term_months)
        while index > 0 and self.term_start(index) > day:
            index -= 1
        while self.term_start(index + 1) <= day:
            index += 1
        return self.term_start(index + 1)

    def _natural_end(self) -> date | None:
        if self.term_months is None or self.auto_renew:
            return None
        return self.term_start(1 + self._explicit_renewals())

    @property
    def ends_before(self) -> date | None:
        """The first day not covered, as known now (None: continues)."""
        natural = self._natural_end()
        cancel = self.cancellation
        if cancel is None:
            return natural
        end = cancel.effective_on if cancel.immediate else self.term_end_after(cancel.effective_on)
        return end if natural is None else min(end, natural)

    def status_on(self, day: date) -> SubscriptionStatus:
        if day < self.starts_on:
            return SubscriptionStatus.PENDING
        end = self.ends_before
        if end is not None and day >= end:
            return SubscriptionStatus.ENDED
        return SubscriptionStatus.CANCELLED if self.cancellation else SubscriptionStatus.ACTIVE

    # ---------------------------------------------------------------- history

    def _events(self, until: date) -> list[tuple[date, int, int, Amendment | None, int]]:
        """(effective_on, order, sequence, amendment, renewal number) sorted; implicit renewals first on their day."""
        events: list[tuple[date, int, int, Amendment | None, int]] = []
        end = self.ends_before
        if self.term_months is not None and self.auto_renew:
            index = 1
            while True:
                day = self.term_start(index)
                if day > until or (end is not None and day >= end):
                    break
                events.append((day, 0, index, None, index))
                index += 1
        for amendment in self.amendments:
            if amendment.action is AmendmentAction.CANCEL or amendment.effective_on > until:
                continue
            events.append((amendment.effective_on, 1, amendment.sequence, amendment, 0))
        events.sort(key=lambda e: (e[0], e[1], e[2]))
        return events

    def versions(self, until: date) -> list[Version]:
        """Every version effective on or before ``until``; same-day changes collapse to the day's last."""
        items = {item.item_id: item for item in self.items}
        result = [Version(START_VERSION_ID, self.starts_on, items)]
        if not self.amendments and (self.term_months is None or not self.auto_renew
                                    or self.term_start(1) > until):
            return result
        for day, _order, _seq, amendment, renewal in self._events(until):
            items = dict(items)
            if amendment is None:
                version_id = f"renewal-{renewal}"
                items = {key: item.uplifted(self.renewal_uplift_percent) for key, item in items.items()}
            else:
                version_id = amendment.amendment_id
                _apply(amendment, items, self.renewal_uplift_percent)
            version = Version(version_id, max(day, self.starts_on), items)
            if result[-1].effective_on == version.effective_on:
                result[-1] = version
            else:
                result.append(version)
        return result

    def version_on(self, day: date) -> Version | None:
        """What this subscription was on ``day``; None before the start or after the end."""
        if self.status_on(day) in (SubscriptionStatus.PENDING, SubscriptionStatus.ENDED):
            return None
        return self.versions(day)[-1]

    # ------------------------------------------------------------- amendments

    def amend(self, amendment: Amendment) -> Subscription:
        """A new subscription with ``amendment`` recorded; raises naming the field and the reason."""
        day = amendment.effective_on
        if not isinstance(day, date):
            raise InvalidInputError("effective_on", f"{day!r} is not a date")
        if day < self.starts_on:
            raise InvalidInputError(
                "effective_on", f"{day.isoformat()} is before the subscription starts on {self.starts_on.isoformat()}"
            )
        if any(a.amendment_id == amendment.amendment_id for a in self.amendments):
            raise ConflictError(f"amendment {amendment.amendment_id}", "is already recorded")
        check_id(amendment.amendment_id, "amendment_id")
        cancel = self.cancellation
        end = self.ends_before
        action = amendment.action
        if action is AmendmentAction.CANCEL and cancel is not None:
            raise ConflictError(
                f"subscription {self.subscription_id}",
                f"is already cancelled (cancellation recorded effective {cancel.effective_on.isoformat()})",
            )
        if action is AmendmentAction.RENEW:
            if self.term_months is None or self.auto_renew:
                raise ConflictError(f"subscription {self.subscription_id}", "renews automatically; nothing to renew")
            if cancel is not None:
                raise ConflictError(f"subscription {self.subscription_id}", "is cancelled; it cannot be renewed")
            if day != end:
                raise InvalidInputError("effective_on", f"a renewal starts when the term ends, on {end.isoformat()}")
        elif end is not None and day >= end:
            raise ConflictError(f"subscription {self.subscription_id}", f"ends before {end.isoformat()}; nothing "
                                f"can change on {day.isoformat()}")
        if action is AmendmentAction.ADD_ITEM:
            if amendment.item is None:
                raise InvalidInputError("item", "add_item needs the item to add")
            self._check_item(amendment.item, "item")
        if action in (AmendmentAction.CHANGE_QUANTITY,):
            if amendment.quantity is None:
                raise InvalidInputError("quantity", "change_quantity needs the new quantity")
            amendment = replace(amendment, quantity=check_quantity(amendment.quantity))
        if action is AmendmentAction.CHANGE_PRICE:
            if amendment.unit_price is None:
                raise InvalidInputError("unit_price", "change_price needs the new unit price (prices change only explicitly)")
            price = check_unit_price(amendment.unit_price, "unit_price")
            if price < 0:
                raise InvalidInputError("unit_price", f"must not be negative, got {price}")
            amendment = replace(amendment, unit_price=price)
        sequence = max((a.sequence for a in self.amendments), default=0) + 1
        amended = replace(self, amendments=(*self.amendments, replace(amendment, sequence=sequence)))
        # Re-apply the whole history: a past-dated change must not contradict a later one.
        horizon = max([a.effective_on for a in amended.amendments] + [day])
        amended.versions(horizon)
        return amended

    def next_amendment_id(self) -> str:
        return f"a{max((a.sequence for a in self.amendments), default=0) + 1}"


def _apply(amendment: Amendment, items: dict[str, SubscriptionItem], uplift: Decimal) -> None:
    action = amendment.action
    item_id = amendment.item_id
    when = amendment.effective_on.isoformat()
    if action is AmendmentAction.RENEW:
        for key, item in list(items.items()):
            items[key] = item.uplifted(uplift)
        return
    if action is AmendmentAction.ADD_ITEM:
        new = amendment.item
        if new.item_id in items:
            raise ConflictError(f"item {new.item_id}", f"is already on the subscription on {when}")
        items[new.item_id] = new
        return
    if item_id not in items:
        raise InvalidInputError("item_id", f"no item {item_id!r} on the subscription on {when} "
                                           f"(amendment {amendment.amendment_id})")
    if action is AmendmentAction.REMOVE_ITEM:
        del items[item_id]
    elif action is AmendmentAction.CHANGE_QUANTITY:
        items[item_id] = replace(items[item_id], quantity=amendment.quantity)
    elif action is AmendmentAction.CHANGE_PRICE:
        if items[item_id].price.model == "percent_of":
            raise InvalidInputError("unit_price", "a percent_of item has no unit price to change")
        items[item_id] = replace(items[item_id], contract_unit_price=amendment.unit_price)


def anchor_for_day(starts_on: date, day: int) -> date:
    """A billing anchor date with ``day`` as its day, on or before ``starts_on``'s month.

    Anchor 31 for a start on Feb 14 is Jan 31, so periods start Jan 31, Feb 28, Mar 31…
    """
    if not isinstance(day, int) or isinstance(day, bool) or not 1 <= day <= 31:
        raise InvalidInputError("billing_anchor_day", f"must be a day of the month 1–31, got {day!r}")
    year, month = starts_on.year, starts_on.month
    # the latest month, at or before the start month, that has this day
    while last_day_of_month(year, month) < day:
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return date(year, month, day)


def make_subscription(
    subscription_id: str,
    customer_id: str,
    currency: str,
    starts_on: date,
    items: Iterable[SubscriptionItem],
    *,
    interval: str | Interval | None = None,
    billing_anchor_day: int | None = None,
    billing_anchor_on: date | None = None,
    term_months: int | None = 12,
    auto_renew: bool = True,
    renewal_uplift_percent: object = 0,
    minimum_amount: object = None,
    external_key: str | None = None,
    bills_from: date | None = None,
    purchase_order: str = "",
    buyer_reference: str = "",
    attributes: Mapping[str, Any] | None = None,
) -> Subscription:
    """A validated subscription; the interval defaults to the first periodic item's.

    ``bills_from``: the first day that may be invoiced (docs/billing-rules.md §19 Cut-over)."""
    items = tuple(items)
    if interval is None:
        interval = next((i.price.interval for i in items if i.price.charge_type is not ChargeType.ONE_TIME),
                        Interval.MONTH)
    if billing_anchor_day is not None and billing_anchor_on is not None:
        raise InvalidInputError("billing_anchor_day", "give an anchor day or an anchor date, not both")
    if billing_anchor_day is not None:
        billing_anchor_on = anchor_for_day(starts_on, billing_anchor_day)
    return Subscription(
        subscription_id=subscription_id,
        customer_id=customer_id,
        currency=currency,
        starts_on=starts_on,
        items=items,
        interval=Interval.parse(interval) if not isinstance(interval, Interval) else interval,
        billing_anchor_on=billing_anchor_on,
        term_months=term_months,
        auto_renew=auto_renew,
        renewal_uplift_percent=to_decimal(renewal_uplift_percent, "renewal_uplift_percent"),
        minimum_amount=None if minimum_amount is None else to_decimal(minimum_amount, "minimum_amount"),
        external_key=external_key,
        bills_from=bills_from,
        purchase_order=purchase_order,
        buyer_reference=buyer_reference,
        attributes=check_attributes(attributes),
    )
