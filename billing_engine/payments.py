"""Payments: validation, allocation, refunds, derived payment status, aging (pure).

Rules (docs/billing-rules.md §16 Payments and refunds):
- a payment is allocated to open invoices: the amounts given per invoice, else the
  invoices named, else oldest first; partial payments are fine; what is left (an
  overpayment) becomes customer credit;
- a refund is its own record and can never exceed what is left of its payment;
- balance = total − payments − credits + refunds
  (Zuora: invoice 1,000, payment 800, refund 300 → balance 500);
- payment status is derived: unpaid, partially_paid, paid, overdue (open and
  past due), credited (settled by credit, no payment), partially_credited (credit
  lowered the balance, no payment).
- aging buckets by days past due: current (not yet due), 0–30, 31–60, 61–90, 90+;
- a payment is named by its reference, else by a readable id ``PAY-<year>-<id>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from billing_engine.errors import ConflictError, CurrencyMismatchError, InvalidInputError
from billing_engine.money import check_currency, round_money, to_decimal

ZERO = Decimal(0)
PAYABLE_STATUSES = frozenset({"open", "uncollectible"})
#: A payment recorded without a reference is stored under this prefix and a unique token, so the
#: (source, reference) pair stays unique and each such payment is a new one. It is nobody's
#: reference: it is never shown as one (``shown_reference``), and the payment is named by its id.
UNREFERENCED_PREFIX = "unreferenced:"
#: The longest name ``payment_name`` gives (what a Salesforce ``Name`` holds).
NAME_LENGTH = 80


def shown_reference(stored: str) -> str:
    """A payment's reference as people read it: empty for a payment recorded without one."""
    return "" if stored.startswith(UNREFERENCED_PREFIX) else stored


def payment_name(payment_id: int, received_on: date, reference: str | None) -> str:
    """What a payment is called: its reference as it was recorded (a bank transfer's reference, a
    processor's charge id), else — none, or longer than a name holds — a readable id
    ``PAY-<year received>-<id, six digits>``."""
    text = shown_reference(reference or "").strip()
    if text and len(text) <= NAME_LENGTH:
        return text
    return f"PAY-{received_on.year}-{payment_id:06d}"


def check_amount(value: object, currency: str, field_name: str = "amount") -> Decimal:
    """A positive amount already expressed in the currency's minor unit."""
    amount = to_decimal(value, field_name)
    if amount <= 0:
        raise InvalidInputError(field_name, f"must be positive, got {amount}")
    rounded = round_money(amount, currency)
    if amount != rounded:
        raise InvalidInputError(field_name, f"{amount} has more decimals than {currency} allows")
    return rounded  # the same value, written with the currency's decimals (50 EUR → 50.00)


def check_payment(amount: object, currency: str, customer_currencies: Iterable[str] | None = None) -> Decimal:
    """Validate a payment's amount and currency; ``customer_currencies`` are those it is billed in."""
    check_currency(currency)
    if customer_currencies is not None:
        allowed = sorted(set(customer_currencies))
        if allowed and currency not in allowed:
            raise CurrencyMismatchError("currency", "/".join(allowed), currency)
    return check_amount(amount, currency)


@dataclass(frozen=True, slots=True)
class OpenItem:
    """An invoice a payment may go to."""

    invoice_id: int
    currency: str
    status: str
    issued_on: date
    balance: Decimal
    number: str = ""


@dataclass(frozen=True, slots=True)
class Allocation:
    applied: tuple[tuple[int, Decimal], ...]  # (invoice id, amount)
    unapplied: Decimal  # becomes customer credit


def allocate_payment(
    amount: Decimal, currency: str, open_items: Sequence[OpenItem], named: Sequence[int] | None = None
) -> Allocation:
    """Allocate ``amount`` to the invoices named (in that order) or else oldest first.

    An invoice that is not payable (void, draft, paid) or in another currency is
    refused when named and skipped otherwise. Whatever is left is unapplied.
    """
    by_id = {item.invoice_id: item for item in open_items}
    if named:
        targets = []
        for invoice_id in named:
            item = by_id.get(invoice_id)
            if item is None:
                raise InvalidInputError("invoice_ids", f"invoice {invoice_id} is not this customer's")
            if item.status not in PAYABLE_STATUSES:
                raise ConflictError(f"invoice {item.number or invoice_id}",
                                    f"is {item.status}; a payment cannot be allocated to it")
            if item.currency != currency:
                raise CurrencyMismatchError(f"invoice {item.number or invoice_id}", item.currency, currency)
            targets.append(item)
    else:
        targets = sorted(
            (i for i in open_items if i.status in PAYABLE_STATUSES and i.currency == currency),
            key=lambda i: (i.issued_on, i.number, i.invoice_id),
        )
    left = amount
    applied = []
    for item in targets:
        if left <= 0:
            break
        take = min(left, item.balance)
        if take > 0:
            applied.append((item.invoice_id, take))
            left -= take
    return Allocation(applied=tuple(applied), unapplied=left)


def allocate_amounts(
    amount: Decimal, currency: str, open_items: Sequence[OpenItem], amounts: Sequence[tuple[int, object]]
) -> Allocation:
    """Allocate ``amount`` exactly as told: ``(invoice id, amount)`` pairs, in that order.

    Each invoice must be payable, in the payment's currency and named once; each amount
    positive, in the currency's minor unit and at most the invoice's balance; together at
    most the payment. What the pairs leave is unapplied (customer credit): the other
    invoices get nothing. Errors name ``allocations[i].invoice_id`` or ``allocations[i].amount``.
    """
    by_id = {item.invoice_id: item for item in open_items}
    seen: set[int] = set()
    applied = []
    for n, (invoice_id, raw) in enumerate(amounts):
        name = f"allocations[{n}]"
        item = by_id.get(invoice_id)
        if item is None:
            raise InvalidInputError(f"{name}.invoice_id", f"invoice {invoice_id} is not this customer's")
        label = item.number or str(invoice_id)
        if invoice_id in seen:
            raise InvalidInputError(f"{name}.invoice_id", f"invoice {label} is named twice")
        seen.add(invoice_id)
        if item.status not in PAYABLE_STATUSES:
            raise ConflictError(f"invoice {label}", f"is {item.status}; a payment cannot be allocated to it")
        if item.currency != currency:
            raise InvalidInputError(f"{name}.invoice_id", f"invoice {label} is in {item.currency}, the payment "
                                                          f"in {currency}")
        value = check_amount(raw, currency, f"{name}.amount")
        if value > item.balance:
            raise InvalidInputError(f"{name}.amount",
                                    f"{value} is more than the balance of invoice {label} ({item.balance})")
        applied.append((invoice_id, value))
    total = sum((a for _, a in applied), ZERO)
    if total > amount:
        raise InvalidInputError("allocations", f"they add up to {total}, more than the payment ({amount})")
    return Allocation(applied=tuple(applied), unapplied=amount - total)


@dataclass(frozen=True, slots=True)
class RefundPlan:
    from_credit: Decimal  # taken back from the customer's unapplied credit
    reopened: tuple[tuple[int, Decimal], ...] = field(default=())  # (invoice id, amount) back on balance


def plan_refund(
    amount: Decimal,
    *,
    payment_amount: Decimal,
    already_refunded: Decimal,
    unapplied_available: Decimal,
    allocations_newest_first: Sequence[tuple[int, Decimal]],
) -> RefundPlan:
    """Split a refund: first out of the payment's unapplied credit, then reopening
    the invoices it paid, newest allocation first.

    ``unapplied_available`` is the part of the payment's unapplied amount still
    in the customer's credit balance; ``allocations_newest_first`` are the
    payment's allocations net of earlier refunds.
    """
    refundable = payment_amount - already_refunded
    if amount > refundable:
        raise InvalidInputError(
            "amount", f"refund {amount} is larger than what is left of the payment ({refundable})"
        )
    from_credit = min(amount, max(unapplied_available, ZERO))
    left = amount - from_credit
    reopened = []
    for invoice_id, allocated in allocations_newest_first:
        if left <= 0:
            break
        take = min(left, allocated)
        if take > 0:
            reopened.append((invoice_id, take))
            left -= take
    if left > 0:
        raise ConflictError("refund", f"{left} of it was already used as credit on other invoices")
    return RefundPlan(from_credit=from_credit, reopened=tuple(reopened))


def invoice_balance(total: Decimal, paid: Decimal, credited: Decimal, refunded: Decimal) -> Decimal:
    """balance = total − payments − credits + refunds (Zuora 1,000 − 800 + 300 = 500)."""
    return total - paid - credited + refunded


def payment_status(
    *, status: str, total: Decimal, paid: Decimal, credited: Decimal, refunded: Decimal,
    due_on: date | None, as_of: date,
) -> str | None:
    """Derived payment status of an invoice; ``None`` for drafts and voided invoices.

    ``paid`` and ``refunded`` are payment money; ``credited`` is customer credit
    and credit notes applied to it.
    """
    if status in ("draft", "void"):
        return None
    balance = invoice_balance(total, paid, credited, refunded)
    if balance <= 0:
        return "credited" if credited > 0 and paid - refunded <= 0 else "paid"
    if due_on is not None and as_of > due_on:
        return "overdue"
    if balance < total:
        return "partially_paid" if paid - refunded > 0 else "partially_credited"
    return "unpaid"


AGING_BUCKETS = ("current", "0-30", "31-60", "61-90", "90+")


def aging_bucket(due_on: date, as_of: date) -> str:
    """Bucket by days past due: not yet due → current; 0–30; 31–60; 61–90; more → 90+."""
    days = (as_of - due_on).days
    if days < 0:
        return "current"
    if days <= 30:
        return "0-30"
    if days <= 60:
        return "31-60"
    if days <= 90:
        return "61-90"
    return "90+"


def aging(items: Iterable[tuple[date, Decimal]], as_of: date) -> dict[str, Decimal]:
    """Sum open balances ``(due_on, balance)`` into the aging buckets (all keys present)."""
    buckets = {name: ZERO for name in AGING_BUCKETS}
    for due, balance in items:
        if balance:
            buckets[aging_bucket(due, as_of)] += balance
    return buckets
