"""Invoice assembly, states, numbering and due dates (pure; standard library only).

``assemble_invoice`` turns the charge lines due for one customer in one currency
(``billing_engine.charges.ChargeLine``) into a draft: lines with their net
amounts and tax rate, the per-rate tax breakdown and the totals

    subtotal  = Σ line amounts before any discount
    discount  = Σ line discounts + the invoice-level discount
    net       = subtotal − discount
    tax       = Σ per-rate tax (docs/billing-rules.md §14 Tax)
    total     = net + tax                      (never negative)
    credit_applied = min(customer credit balance, total − settled_by_credit_note)
    amount_due     = total − settled_by_credit_note − credit_applied

Rules it follows (docs/billing-rules.md §13 Invoices, §7 Discounts, §15 Credit notes
and customer credit):
- an invoice-level fixed discount is spread over the positive lines in proportion
  to their net amounts; each share is rounded, the remainder goes to the largest
  line, no line goes below zero, and tax is computed on the discounted amounts;
- a total never goes negative. When the credits on an invoice (proration
  credits) exceed its charges, the credit lines move to a **credit note** whose
  tax is recomputed on the rounded credited amount; that credit note settles the
  invoice and its excess becomes customer credit;
- states: draft → open → paid | void | uncollectible; a draft has no number;
  numbers are assigned at finalization (``format_number``);
- due date = issue date + payment terms (net 30 by default).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal
from enum import StrEnum

from billing_engine.charges import RECURRING, ChargeLine
from billing_engine.errors import ConflictError, CurrencyMismatchError, InvalidInputError
from billing_engine.money import check_currency, round_money
from billing_engine.tax import LineTax, TaxGroup, TaxRate, credit_note_tax, vat_breakdown

ZERO = Decimal(0)
DEFAULT_INVOICE_SEQUENCE = "INV-{year}-{seq:06d}"
DEFAULT_CREDIT_NOTE_SEQUENCE = "CN-{year}-{seq:06d}"
DEFAULT_PAYMENT_TERMS_DAYS = 30


class InvoiceStatus(StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    PAID = "paid"
    VOID = "void"
    UNCOLLECTIBLE = "uncollectible"


_TRANSITIONS: dict[InvoiceStatus, frozenset[InvoiceStatus]] = {
    InvoiceStatus.DRAFT: frozenset({InvoiceStatus.OPEN, InvoiceStatus.VOID}),  # a held draft can be discarded
    InvoiceStatus.OPEN: frozenset({InvoiceStatus.PAID, InvoiceStatus.VOID, InvoiceStatus.UNCOLLECTIBLE}),
    # Written off, then paid after all, or voided (no payment applied).
    InvoiceStatus.UNCOLLECTIBLE: frozenset({InvoiceStatus.PAID, InvoiceStatus.VOID}),
    # A refund can reopen a paid invoice's balance.
    InvoiceStatus.PAID: frozenset({InvoiceStatus.OPEN}),
    InvoiceStatus.VOID: frozenset(),
}


def check_transition(current: str, new: str, subject: str = "invoice") -> InvoiceStatus:
    """Raise ``ConflictError`` unless ``current → new`` is allowed; return the new status."""
    cur, nxt = InvoiceStatus(current), InvoiceStatus(new)
    if nxt not in _TRANSITIONS[cur]:
        raise ConflictError(subject, f"cannot go from {cur.value} to {nxt.value}")
    return nxt


def recurring_periods(charges: Sequence[ChargeLine]) -> int:
    """The most recurring periods one subscription's charges cover (0 without a recurring charge).

    A normal bill run invoices one period per subscription (two at most around a change of
    anchor); more means back-billing — a deal entered late, a bill run that did not run, a
    date typed far ahead — which a person should look at before the invoice is final."""
    periods: dict[str, set[date]] = {}
    for charge in charges:
        if charge.kind == RECURRING:
            periods.setdefault(charge.subscription_id, set()).add(charge.starts_on)
    return max((len(starts) for starts in periods.values()), default=0)


def format_number(template: str, year: int, seq: int) -> str:
    """``format_number("INV-{year}-{seq:06d}", 2026, 1) == "INV-2026-000001"``."""
    if seq < 1:
        raise InvalidInputError("seq", "sequence numbers start at 1")
    return template.format(year=year, seq=seq)


def due_on(invoice_issued_on: date, payment_terms_days: int = DEFAULT_PAYMENT_TERMS_DAYS) -> date:
    """The due date: the issue date plus the payment terms (calendar days)."""
    if payment_terms_days < 0:
        raise InvalidInputError("payment_terms_days", "payment terms cannot be negative")
    return invoice_issued_on + timedelta(days=payment_terms_days)


# What invoicing reads: the charge lines of ``billing_engine.charges`` (kept as a public name).
ChargeLike = ChargeLine


@dataclass(frozen=True, slots=True)
class DraftLine:
    charge_key: str
    subscription_id: str
    item_id: str
    product_code: str
    product_name: str
    kind: str
    description: str
    starts_on: date
    ends_before: date
    quantity: Decimal
    unit_price: Decimal
    gross: Decimal  # amount before any discount
    line_discount: Decimal  # from the charge, with the line's sign (a credit gives its discount back)
    invoice_discount: Decimal  # this line's share of the invoice-level discount
    net: Decimal  # gross − line_discount − invoice_discount
    tax_percent: Decimal
    explanation: str = ""  # how the amount was computed; travels to Salesforce's Explanation__c
    tax_category: str = ""  # EN 16931 VAT category code (S, Z, E, AE, G, O); '' derived from the rate
    tax_reason: str = ""  # why a 0 % line is not taxed (exemption, reverse charge, export)

    @property
    def tax(self) -> LineTax:
        return LineTax.of(self.tax_percent, self.tax_reason, self.tax_category)


@dataclass(frozen=True, slots=True)
class Totals:
    subtotal: Decimal
    discount: Decimal
    net: Decimal
    tax: Decimal
    total: Decimal


@dataclass(frozen=True, slots=True)
class CreditNoteDraft:
    reason: str
    currency: str
    lines: tuple[DraftLine, ...]  # amounts are positive credited nets
    tax_groups: tuple[TaxGroup, ...]
    net: Decimal
    tax: Decimal
    total: Decimal


@dataclass(frozen=True, slots=True)
class InvoiceDraft:
    currency: str
    tax_percent: Decimal
    tax_reason: str
    lines: tuple[DraftLine, ...]
    tax_groups: tuple[TaxGroup, ...]
    totals: Totals
    credit_note: CreditNoteDraft | None  # credits that exceeded the charges
    settled_by_credit_note: Decimal  # part of the credit note applied to this invoice
    credit_applied: Decimal  # customer credit balance applied at finalization
    credit_created: Decimal  # credit-note excess that becomes customer credit
    amount_due: Decimal

    @property
    def is_empty(self) -> bool:
        return not self.lines and self.credit_note is None


def spread_discount(nets: Sequence[Decimal], discount: Decimal, currency: str) -> tuple[Decimal, ...]:
    """Shares of a fixed invoice discount over line nets (docs/billing-rules.md §7 Discounts).

    Only positive lines take a share, in proportion to their net; each share is
    rounded half up; the rounding remainder goes to the largest line; the
    discount is capped at the sum of positive nets so no line goes below zero.
    Example: 10.00 over 30.00 / 30.00 / 40.00 → 3.00 / 3.00 / 4.00;
    10.00 over 3 × 10.00 → 3.34 / 3.33 / 3.33 (on a tie the first largest line takes the cent).
    """
    if discount < 0:
        raise InvalidInputError("invoice_discount", "a discount cannot be negative")
    positive = [n if n > 0 else ZERO for n in nets]
    base = sum(positive, ZERO)
    if base == 0 or discount == 0:
        return tuple(ZERO for _ in nets)
    discount = min(round_money(discount, currency), base)
    shares = [round_money(discount * n / base, currency) if n > 0 else ZERO for n in positive]
    remainder = discount - sum(shares, ZERO)
    if remainder:
        largest = max(range(len(nets)), key=lambda i: (positive[i], -i))
        shares[largest] += remainder
        if shares[largest] > positive[largest]:  # pragma: no cover - impossible while discount <= base
            raise InvalidInputError("invoice_discount", "discount share exceeds the largest line")
    return tuple(shares)


def assemble_invoice(
    charges: Sequence[ChargeLine],
    *,
    currency: str,
    tax_rate: TaxRate | None = None,
    line_tax: Callable[[ChargeLine], LineTax] | None = None,
    invoice_discount: Decimal = ZERO,
    available_credit: Decimal = ZERO,
    per_line_tax: bool = False,
) -> InvoiceDraft:
    """Build the draft invoice for one customer and one currency from its due charges.

    Each line is taxed by ``line_tax(charge)`` (``tax.TaxRule``: category and rate per line), or,
    without it, every line at ``tax_rate`` (one rate for the customer). Tax is computed per VAT group
    (category, rate). An invoice cannot mix out-of-scope lines with others (EN 16931 BR-O-11)."""
    check_currency(currency)
    if (tax_rate is None) == (line_tax is None):
        raise InvalidInputError("tax_rate", "give either one tax rate or a tax per line")
    if available_credit < 0:
        raise InvalidInputError("available_credit", "credit balance cannot be negative")
    keys = set()
    for charge in charges:
        if charge.currency != currency:
            raise CurrencyMismatchError(f"charge {charge.key}", currency, charge.currency)
        if charge.key in keys:
            raise InvalidInputError("charges", f"charge {charge.key} appears twice")
        keys.add(charge.key)
        if (charge.discount > 0 and charge.amount < 0) or (charge.discount < 0 and charge.amount > 0):
            raise InvalidInputError(f"charge {charge.key}", "discount must have the sign of its line "
                                    "(≥ 0 on a charge, ≤ 0 on a credit)")
        if charge.amount != round_money(charge.amount, currency):
            raise InvalidInputError(f"charge {charge.key}", f"amount {charge.amount} is not rounded to {currency}")
    if tax_rate is not None:
        single = LineTax.of(tax_rate.percent, tax_rate.reason)
        taxes = [single] * len(charges)
    else:
        taxes = [line_tax(c) for c in charges]  # type: ignore[misc]
    codes = {t.code for t in taxes}
    if "O" in codes and len(codes) > 1:
        raise InvalidInputError("charges", "an invoice cannot mix lines not subject to VAT with taxed or exempt "
                                           "ones (EN 16931 BR-O-11); invoice them apart")
    nets = [c.amount for c in charges]
    shares = spread_discount(nets, invoice_discount, currency)
    lines = [
        DraftLine(
            charge_key=c.key, subscription_id=c.subscription_id, item_id=c.item_id,
            product_code=c.product_code, product_name=c.product_name, kind=c.kind,
            description=c.description, starts_on=c.starts_on, ends_before=c.ends_before,
            quantity=c.quantity, unit_price=c.unit_price, gross=c.amount + c.discount,
            line_discount=c.discount, invoice_discount=share, net=c.amount - share, tax_percent=t.percent,
            explanation=c.explanation, tax_category=t.code, tax_reason=t.reason,
        )
        for c, share, t in zip(charges, shares, taxes, strict=True)
    ]
    groups = vat_breakdown(((ln.net, ln.tax) for ln in lines), currency, per_line=per_line_tax)
    totals = _totals(lines, groups)
    credit_note = None
    settled = ZERO
    created = ZERO
    if totals.total < 0:
        # Credits exceed charges: the credit lines go to a credit note (own tax,
        # recomputed on the rounded credited amount); the invoice keeps the charges.
        credits = [ln for ln in lines if ln.net < 0]
        lines = [ln for ln in lines if ln.net >= 0]
        groups = vat_breakdown(((ln.net, ln.tax) for ln in lines), currency, per_line=per_line_tax)
        totals = _totals(lines, groups)
        credit_note = build_credit_note(
            "proration credits exceed the invoice", currency,
            [(ln, -ln.net) for ln in credits], per_line_tax=per_line_tax,
        )
        settled = min(credit_note.total, totals.total)
        created = credit_note.total - settled
    remaining = totals.total - settled
    credit_applied = min(available_credit, remaining)
    percent, reason = _invoice_rate(tax_rate, groups)
    return InvoiceDraft(
        currency=currency, tax_percent=percent, tax_reason=reason, lines=tuple(lines),
        tax_groups=groups, totals=totals, credit_note=credit_note, settled_by_credit_note=settled,
        credit_applied=credit_applied, credit_created=created, amount_due=remaining - credit_applied,
    )


def _invoice_rate(tax_rate: TaxRate | None, groups: Sequence[TaxGroup]) -> tuple[Decimal, str]:
    """The invoice's own rate and tax note: the customer's single rate, or the highest rate of its
    groups with every group's reason (printed on the invoice, pushed as its tax note)."""
    if tax_rate is not None:
        return tax_rate.percent, tax_rate.reason
    percent = max((g.percent for g in groups), default=ZERO)
    reasons: list[str] = []
    for g in groups:
        for reason in g.reason.split("; ") if g.reason else ():
            if reason not in reasons:
                reasons.append(reason)
    return percent, "; ".join(reasons)


def _totals(lines: Sequence[DraftLine], groups: Sequence[TaxGroup]) -> Totals:
    subtotal = sum((ln.gross for ln in lines), ZERO)
    discount = sum((ln.line_discount + ln.invoice_discount for ln in lines), ZERO)
    net = subtotal - discount
    tax = sum((g.tax for g in groups), ZERO)
    return Totals(subtotal=subtotal, discount=discount, net=net, tax=tax, total=net + tax)


def build_credit_note(
    reason: str, currency: str, credited: Sequence[tuple[DraftLine, Decimal]], *, per_line_tax: bool = False
) -> CreditNoteDraft:
    """A credit note for ``(line, credited net amount > 0)`` pairs.

    Each credited amount is rounded to the currency first, then tax is computed
    per VAT group on the rounded amounts (docs/billing-rules.md §15 Credit notes and
    customer credit, §14 Tax: credit notes recompute tax on the rounded credited amount);
    each credit note line keeps the VAT category and exemption reason of the line it credits.
    """
    check_currency(currency)
    out = []
    for line, amount in credited:
        rounded, _ = credit_note_tax(amount, line.tax_percent, currency)
        if rounded <= 0:
            raise InvalidInputError("credit", f"credited amount must be positive, got {amount}")
        out.append(DraftLine(
            charge_key=line.charge_key, subscription_id=line.subscription_id, item_id=line.item_id,
            product_code=line.product_code, product_name=line.product_name, kind=line.kind,
            description=line.description, starts_on=line.starts_on, ends_before=line.ends_before,
            quantity=line.quantity, unit_price=line.unit_price, gross=rounded, line_discount=ZERO,
            invoice_discount=ZERO, net=rounded, tax_percent=line.tax_percent, explanation=line.explanation,
            tax_category=line.tax.code, tax_reason=line.tax_reason,
        ))
    groups = vat_breakdown(((ln.net, ln.tax) for ln in out), currency, per_line=per_line_tax)
    net = sum((ln.net for ln in out), ZERO)
    tax = sum((g.tax for g in groups), ZERO)
    return CreditNoteDraft(reason=reason, currency=currency, lines=tuple(out), tax_groups=groups,
                           net=net, tax=tax, total=net + tax)


def take_remaining_tax(note: CreditNoteDraft, invoiced: Sequence[TaxGroup],
                       credited: Sequence[TaxGroup]) -> CreditNoteDraft:
    """``note`` with the tax left on its invoice in each VAT group whose last net it credits.

    ``invoiced`` is the invoice's tax breakdown, ``credited`` what its earlier credit notes took
    (net and tax, one entry per note and VAT group). The invoice's tax is rounded once per VAT
    group (category, rate) on the sum of its lines (docs/billing-rules.md §14 Tax), each credit
    note's on its own credited amounts (§15 Credit notes and customer credit), so credits that
    together take a group's whole net can add up to a cent more or less than the invoice's tax
    there. The credit that brings the net credited in a group to the invoice's net there takes
    the tax still uncredited in that group instead: an invoice credited in parts is credited its
    total exactly. A group without a category (stored before categories) matches by rate alone.
    """
    def key(group: TaxGroup) -> tuple[str, Decimal]:
        return group.category, group.percent.normalize()

    invoiced_by_group = {key(g): g for g in invoiced}
    by_rate_only = not any(g.category for g in invoiced)
    before: dict[tuple[str, Decimal], tuple[Decimal, Decimal]] = {}
    for g in credited:
        k = ("", g.percent.normalize()) if by_rate_only else key(g)
        net, tax = before.get(k, (ZERO, ZERO))
        before[k] = (net + g.net, tax + g.tax)
    groups = []
    for group in note.tax_groups:
        k = ("", group.percent.normalize()) if by_rate_only else key(group)
        on_invoice = invoiced_by_group.get(k)
        net_before, tax_before = before.get(k, (ZERO, ZERO))
        if on_invoice is not None and net_before + group.net == on_invoice.net:
            group = replace(group, tax=max(on_invoice.tax - tax_before, ZERO))
        groups.append(group)
    tax = sum((g.tax for g in groups), ZERO)
    return CreditNoteDraft(reason=note.reason, currency=note.currency, lines=note.lines, tax_groups=tuple(groups),
                           net=note.net, tax=tax, total=note.net + tax)
