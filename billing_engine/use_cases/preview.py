"""Preview use case: what a deal would bill, before anyone commits to it.

``preview_subscription_change`` compares a customer's subscriptions before and after a
change (a new subscription, an amendment, a renewal or a cancellation, applied in a
transaction the caller rolls back) and returns the invoice the change would produce on
its date (the first invoice of a new subscription; for a change, only the charges and
credits it adds to what is billed already), the customer's MRR before and after, and the
MRR and ARR the change itself adds. Nothing is written. ``preview_new_subscription`` prices a
subscription and customer held in memory only (a checkout's order before it is placed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from typing import Any

from billing_engine.charges import ChargeLine, charges_due
from billing_engine.customers import Customer
from billing_engine.errors import NotFoundError
from billing_engine.invoicing import assemble_invoice
from billing_engine.money import round_money
from billing_engine.storage import invoices as invoice_store
from billing_engine.storage.database import Session
from billing_engine.storage.subscriptions import find_subscription
from billing_engine.subscriptions import Subscription
from billing_engine.tax import TaxRule
from billing_engine.use_cases.customers import get_customer
from billing_engine.use_cases.revenue import mrr_and_arr_snapshots, mrr_snapshots, subscription_mrr_versions
from billing_engine.use_cases.subscriptions import subscriptions_of_customer

ZERO = Decimal(0)


@dataclass(frozen=True)
class PreviewLine:
    kind: str
    product_code: str
    description: str
    explanation: str
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal  # net, before tax
    tax_percent: Decimal = ZERO  # the line's VAT rate


@dataclass(frozen=True)
class DealPreview:
    currency: str
    lines: tuple[PreviewLine, ...]
    subtotal: Decimal
    discount: Decimal
    tax: Decimal
    total: Decimal
    tax_percent: Decimal
    tax_reason: str
    credit_note_total: Decimal | None  # when the credits exceed the charges
    mrr_before: Decimal  # the customer's MRR before the change
    mrr_after: Decimal  # and after it
    deal_mrr: Decimal = ZERO  # the recurring revenue the change itself adds per month (negative: removes)
    deal_arr: Decimal = ZERO  # the same per year: from the unrounded monthly amount, rounded once
    attributes: tuple[tuple[str, str], ...] = ()  # the custom attributes its invoices would carry


def preview_subscription_change(session: Session, subscription_id: str, before: Sequence[Subscription], on: date,
                                *, first_invoice: bool, default_tax_percent: Decimal = ZERO,
                                seller_country: str | None = None) -> DealPreview | None:
    """The invoice a change to ``subscription_id`` would produce on ``on``, and the customer's MRR
    before and after it.

    ``before``: the customer's subscriptions before the change; the change is read from the
    session. ``first_invoice``: a new subscription's first invoice (even when it was started
    already), else only what the change adds to the charges already billed. None when the
    subscription does not exist (after the change). Lines are taxed as the bill run taxes them
    (``tax.TaxRule``: each product's category, the countries; ``seller_country``: ``SELLER_COUNTRY``).
    """
    changed = find_subscription(session, subscription_id)
    if changed is None:
        return None
    after = subscriptions_of_customer(session, changed.customer_id)
    new = next(s for s in after if s.subscription_id == subscription_id)
    old = next((s for s in before if s.subscription_id == subscription_id), None)
    if first_invoice:
        before = [s for s in before if s.subscription_id != subscription_id]
        old, billed = None, []
    else:
        billed = invoice_store.billed_lines_for_subscriptions(session, [subscription_id]).get(subscription_id, [])
    return _preview(new, old, billed, before, after, get_customer(session, new.customer_id), on,
                    default_tax_percent=default_tax_percent, seller_country=seller_country)


def preview_new_subscription(subscription: Subscription, customer: Customer, on: date, *,
                             default_tax_percent: Decimal = ZERO, seller_country: str | None = None) -> DealPreview:
    """The first invoice of a subscription not written anywhere, for a customer with no other
    subscription (neither written either), as ``preview_subscription_change`` would price it once
    both are stored."""
    return _preview(subscription, None, [], [], [subscription], customer, on,
                    default_tax_percent=default_tax_percent, seller_country=seller_country)


def _preview(new: Subscription, old: Subscription | None, billed: Sequence[Any], before: Sequence[Subscription],
             after: Sequence[Subscription], customer: Customer, on: date, *, default_tax_percent: Decimal,
             seller_country: str | None) -> DealPreview:
    known = {line.key for line in charges_due(old, on, billed)} if old is not None else set()
    charges = [line for line in charges_due(new, on, billed) if line.key not in known]
    draft, invoice_lines, credit_lines = _drafted(customer, new, charges, on, default_tax_percent, seller_country)
    lines = invoice_lines + credit_lines
    totals = draft.totals

    def mrr(subscriptions: Sequence[Subscription]) -> Decimal:
        [snapshot] = mrr_snapshots((v for s in subscriptions for v in subscription_mrr_versions(s, on)), [on])
        return snapshot.get((new.customer_id, new.currency), round_money(ZERO, new.currency))

    def mrr_and_arr(subscription: Subscription | None) -> tuple[Decimal, Decimal]:
        nothing = round_money(ZERO, new.currency)
        if subscription is None:
            return nothing, nothing
        [(monthly, yearly)] = mrr_and_arr_snapshots(subscription_mrr_versions(subscription, on), [on])
        key = (new.customer_id, new.currency)
        return monthly.get(key, nothing), yearly.get(key, nothing)

    (mrr_old, arr_old), (mrr_new, arr_new) = mrr_and_arr(old), mrr_and_arr(new)

    return DealPreview(
        currency=new.currency, lines=lines, subtotal=totals.subtotal, discount=totals.discount, tax=totals.tax,
        total=totals.total, tax_percent=draft.tax_percent, tax_reason=draft.tax_reason,
        credit_note_total=draft.credit_note.total if draft.credit_note is not None else None,
        mrr_before=mrr(before), mrr_after=mrr(after), deal_mrr=mrr_new - mrr_old, deal_arr=arr_new - arr_old,
        attributes=new.attributes)


def _drafted(customer: Customer, subscription: Subscription, charges: Sequence[Any], on: date,
             default_tax_percent: Decimal, seller_country: str | None,
             ) -> tuple[Any, tuple[PreviewLine, ...], tuple[PreviewLine, ...]]:
    """The invoice draft of ``charges`` for ``customer``, taxed as the bill run taxes them, its invoice's
    lines and its credit note's (credits that exceed the charges; amounts credited, positive)."""
    products = {item.price.product.code: item.price.product.tax for v in subscription.versions(on)
                for item in v.items.values()}
    rule = TaxRule(customer_country=customer.billing_address.country, customer_vat_id=customer.vat_id,
                   standard_percent=customer.tax_rate(default_tax_percent),
                   customer_exempt_reason=customer.tax_exempt_reason, seller_country=seller_country,
                   products=products)
    draft = assemble_invoice(charges, currency=subscription.currency, line_tax=lambda c: rule.line_tax(c.product_code))
    by_key = {c.key: c for c in charges}

    def previewed(lines: Sequence[Any]) -> tuple[PreviewLine, ...]:
        return tuple(PreviewLine(line.kind, line.product_code, line.description,
                                 by_key[line.charge_key].explanation, line.quantity, line.unit_price, line.net,
                                 line.tax_percent)
                     for line in lines)

    return draft, previewed(draft.lines), previewed(draft.credit_note.lines if draft.credit_note else ())


@dataclass(frozen=True)
class ChargesPreview:
    """The charges of one subscription a bill run on ``on`` would invoice (net amounts before tax)."""

    on: date
    currency: str
    lines: tuple[PreviewLine, ...]  # the invoice's
    subtotal: Decimal
    discount: Decimal
    tax: Decimal
    total: Decimal
    credit_lines: tuple[PreviewLine, ...]  # the credit note's, when credits exceed the charges
    credit_note_total: Decimal | None


def preview_change_invoices(session: Session, subscription_id: str, before: Subscription, today: date,
                            next_on: date, *, default_tax_percent: Decimal = ZERO,
                            seller_country: str | None = None) -> tuple[ChargesPreview, ChargesPreview]:
    """What a change to a subscription (recorded in the session, ``before`` it) bills: the charges
    it adds to what a bill run on ``today`` invoices, and the invoice a bill run on ``next_on`` (the
    next period's start) then draws for the subscription. Nothing is written."""
    new = find_subscription(session, subscription_id)
    if new is None:
        raise NotFoundError("subscription", subscription_id)
    billed = invoice_store.billed_lines_for_subscriptions(session, [subscription_id]).get(subscription_id, [])
    due_today = charges_due(new, today, billed)
    billed_today = {line.key for line in due_today}
    customer = get_customer(session, new.customer_id)
    previews = []
    for on, charges in ((today, _added_today(charges_due(before, today, billed), due_today)),
                        (next_on, [c for c in charges_due(new, next_on, billed) if c.key not in billed_today])):
        draft, lines, credit_lines = _drafted(customer, new, charges, on, default_tax_percent, seller_country)
        totals = draft.totals
        previews.append(ChargesPreview(on, new.currency, lines, totals.subtotal, totals.discount, totals.tax,
                                       totals.total, credit_lines,
                                       draft.credit_note.total if draft.credit_note else None))
    return previews[0], previews[1]


REPLACED_SUFFIX = "~replaced"


def _added_today(before: Sequence[ChargeLine], after: Sequence[ChargeLine]) -> list[ChargeLine]:
    """What a change adds to the subscription's invoice of the day: the lines owed after it that
    were not owed, identical, before it, and each line owed before it that is no longer owed as it
    was, reversed (a line whose amount changed shows as its old line reversed and its new line), so
    that the sum is what the day's bill run invoices after the change minus what it would have
    invoiced without it."""
    def owed(line: ChargeLine) -> tuple[Any, ...]:
        return line.key, line.amount, line.discount, line.quantity, line.unit_price, line.product_code

    unchanged = {owed(line) for line in before} & {owed(line) for line in after}
    added = [line for line in after if owed(line) not in unchanged]
    reversed_ = [replace(line, key=line.key + REPLACED_SUFFIX, quantity=-line.quantity, amount=-line.amount,
                         discount=-line.discount, description=f"Replaced: {line.description}")
                 for line in before if owed(line) not in unchanged]
    return reversed_ + added
