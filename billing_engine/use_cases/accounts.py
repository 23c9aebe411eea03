"""Customer accounts: the customer list, one customer's balances, credit and aging, and the
customer statement (a ledger with a running balance). Reads only.

Everything is per currency: the engine never converts (docs/billing-rules.md §1 Money and
rounding). Rules: balance, credit and aging as in docs/billing-rules.md §16 Payments and
refunds and §15 Credit notes and customer credit.

**The statement** lists, in date order, what moved what the customer owes: invoices issued
(+ their total; a voided invoice stays, with the credit note that reversed it), credit notes
(− their total), payments received (− their amount) and refunds (+ their amount). Its running
balance is what the customer owes net of its unused credit: the sum of its open balances
minus its credit, so a closing balance of −20.01 means 20.01 of credit and nothing due. Within
a day: invoices, then credit notes, payments and refunds, each in the order they were made.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from billing_engine.customers import Customer
from billing_engine.errors import InvalidInputError, NotFoundError
from billing_engine.money import Money, money_of
from billing_engine.payments import AGING_BUCKETS, aging, payment_name, shown_reference
from billing_engine.storage import catalog as catalog_store
from billing_engine.storage import collections as collection_store
from billing_engine.storage import invoices as invoice_store
from billing_engine.storage import payments as payment_store
from billing_engine.storage.database import Session

ZERO = Decimal(0)
#: Most customers one page may hold.
MAX_PAGE_SIZE = 1000
#: Longest customer id.
MAX_CUSTOMER_ID = 64
#: Longest text a customer search looks for.
MAX_SEARCH_LENGTH = 254


@dataclass(frozen=True)
class CurrencyBalance:
    """A customer's position in one currency."""

    currency: str
    balance_due: Money  # Σ balances of its open and uncollectible invoices
    credit: Money  # unused customer credit (applied to the next invoices)
    open_invoices: int  # open and uncollectible invoices with a balance
    overdue_invoices: int  # of those, past their due date
    aging: dict[str, Money]  # current, 0-30, 31-60, 61-90, 90+ days past due (every bucket present)

    @property
    def net(self) -> Money:
        """What the customer owes once its credit is counted (negative: more credit than due)."""
        return self.balance_due - self.credit


@dataclass(frozen=True)
class CustomerListItem:
    customer_id: str
    name: str
    currency: str
    salesforce_account_id: str | None
    balances: tuple[CurrencyBalance, ...]  # only the currencies with a balance or credit


@dataclass(frozen=True)
class CustomerPage:
    items: tuple[CustomerListItem, ...]
    next: str | None  # the id of the last customer when there is a next page


@dataclass(frozen=True)
class CustomerDetail:
    customer_id: str
    name: str
    currency: str
    timezone: str
    payment_terms_days: int
    tax_rate_percent: Decimal | None
    tax_exempt_reason: str | None
    vat_id: str | None
    salesforce_account_id: str | None
    as_of: date
    balances: tuple[CurrencyBalance, ...]  # every currency it was invoiced or credited in


def check_customer_id(customer_id: object, field: str = "customer") -> str:
    if not isinstance(customer_id, str) or not 1 <= len(customer_id) <= MAX_CUSTOMER_ID:
        raise InvalidInputError(field, f"must be a customer id of 1 to {MAX_CUSTOMER_ID} characters")
    return customer_id


def list_customers(session: Session, *, as_of: date, after: str | None = None, limit: int = 100) -> CustomerPage:
    """A page of customers by id, after the id ``after``, with their balances and credit per currency."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInputError("limit", f"{limit} is not between 1 and {MAX_PAGE_SIZE}")
    if after is not None:
        check_customer_id(after, "after")
    customers = catalog_store.customers_after(session, after, limit + 1)
    more = len(customers) > limit
    items = _list_items(session, customers[:limit], as_of)
    return CustomerPage(items, items[-1].customer_id if more and items else None)


def find_customers(session: Session, fragment: str, *, as_of: date, limit: int = 20) -> tuple[CustomerListItem, ...]:
    """The customers whose id, name, Salesforce Account Id or collection e-mail contains
    ``fragment`` (in any case), by id, at most ``limit``, each as in the customer list."""
    if not isinstance(fragment, str) or not 1 <= len(fragment.strip()) <= MAX_SEARCH_LENGTH:
        raise InvalidInputError("text", f"must be 1 to {MAX_SEARCH_LENGTH} characters")
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInputError("limit", f"{limit} is not between 1 and {MAX_PAGE_SIZE}")
    return _list_items(session, collection_store.customers_matching(session, fragment.strip(), limit), as_of)


def _list_items(session: Session, customers: list[Customer], as_of: date) -> tuple[CustomerListItem, ...]:
    ids = [c.customer_id for c in customers]
    payable = invoice_store.payable_invoices_of_customers(session, ids)
    credits = payment_store.credit_balances_of_customers(session, ids)
    items = []
    for customer in customers:
        cid = customer.customer_id
        invoices = payable.get(cid, [])
        mine = {cur: bal for (owner, cur), bal in credits.items() if owner == cid}
        balances = tuple(b for b in _balances(invoices, mine, as_of) if b.balance_due.amount or b.credit.amount)
        items.append(CustomerListItem(cid, customer.name, customer.currency, customer.salesforce_account_id, balances))
    return tuple(items)


def _balances(invoices: list[invoice_store.Invoice], credits: dict[str, Decimal],
              as_of: date) -> list[CurrencyBalance]:
    out = []
    for currency in sorted({inv.currency for inv in invoices} | set(credits)):
        mine = [inv for inv in invoices if inv.currency == currency]
        buckets = aging(((inv.due_on or as_of, inv.balance) for inv in mine), as_of)
        out.append(CurrencyBalance(
            currency, money_of(sum((inv.balance for inv in mine), ZERO), currency),
            money_of(credits.get(currency, ZERO), currency), sum(1 for inv in mine if inv.balance > 0),
            sum(1 for inv in mine if inv.balance > 0 and inv.due_on is not None and inv.due_on < as_of),
            {name: money_of(buckets[name], currency) for name in AGING_BUCKETS}))
    return out


def _customer(session: Session, customer_id: str) -> Customer:
    customer = catalog_store.find_customer(session, check_customer_id(customer_id))
    if customer is None:
        raise NotFoundError("customer", customer_id)
    return customer


def get_customer(session: Session, customer_id: str, *, as_of: date) -> CustomerDetail:
    """A customer with, per currency, its balance due, unused credit and receivables aging as of
    ``as_of``; raises ``NotFoundError``."""
    c = _customer(session, customer_id)
    balances = tuple(_balances(invoice_store.unlocked_payable_invoices(session, c.customer_id),
                               payment_store.credit_balances(session, c.customer_id), as_of))
    return CustomerDetail(c.customer_id, c.name, c.currency, c.timezone, c.payment_terms_days, c.tax_rate_percent,
                          c.tax_exempt_reason, c.vat_id, c.salesforce_account_id, as_of, balances)


# ================================================================ statement


#: Order of the entries of one day.
ENTRY_KINDS = ("invoice", "credit_note", "payment", "refund")


@dataclass(frozen=True)
class StatementEntry:
    on: date
    kind: str  # invoice, credit_note, payment, refund
    record_id: int  # the invoice's, credit note's, payment's or refund's id
    reference: str  # invoice or credit note number, payment reference
    description: str
    amount: Money  # + owed more (invoice, refund), − owed less (credit note, payment)
    balance: Money  # the running balance after this entry


@dataclass(frozen=True)
class CurrencyStatement:
    currency: str
    opening: Money  # the balance before the first day
    invoiced: Money
    credited: Money
    paid: Money
    refunded: Money
    closing: Money  # opening + invoiced − credited − paid + refunded
    entries: tuple[StatementEntry, ...]


@dataclass(frozen=True)
class Statement:
    customer_id: str
    customer_name: str
    starts_on: date
    through: date
    currencies: tuple[CurrencyStatement, ...]  # every currency with a balance or a movement


def customer_statement(session: Session, customer_id: str, *, starts_on: date, through: date) -> Statement:
    """The customer's ledger from ``starts_on`` through ``through`` (both included), per currency:
    the opening balance, each invoice, credit note, payment and refund with the running balance,
    and the closing balance. Raises ``NotFoundError`` for an unknown customer."""
    if through < starts_on:
        raise InvalidInputError("to", f"{through} is before the statement's first day {starts_on}")
    customer = _customer(session, customer_id)
    cid = customer.customer_id
    moves: list[tuple[date, int, int, str, str, str, str, Decimal]] = []
    for inv in invoice_store.finalized_invoices_of_customer(session, cid, through):
        due = f", due {inv.due_on.isoformat()}" if inv.due_on else ""
        text = f"Invoice{due}" + (" (void)" if inv.status == "void" else "")
        moves.append((inv.issued_on, 0, inv.id, "invoice", inv.currency, inv.number or str(inv.id), text, inv.total))
    numbers = {}
    notes = invoice_store.credit_notes_of_customer(session, cid, through)
    if notes:
        numbers = invoice_store.invoice_numbers(session, [n.invoice_id for n in notes if n.invoice_id is not None])
    for note in notes:
        on_invoice = f" on {numbers.get(note.invoice_id) or note.invoice_id}" if note.invoice_id else ""
        moves.append((note.issued_on, 1, note.id, "credit_note", note.currency, note.number,
                      f"Credit note{on_invoice}: {note.reason}", -note.total))
    for pay in payment_store.payments_of_customer(session, cid, through):
        extra = f", {pay.unapplied} to credit" if pay.unapplied else ""
        moves.append((pay.received_on, 2, pay.id, "payment", pay.currency, _payment_reference(pay),
                      f"Payment ({pay.method}){extra}", -pay.amount))
    for refund, pay in payment_store.refunds_of_customer(session, cid, through):
        why = f": {refund.reason}" if refund.reason else ""
        moves.append((refund.refunded_on, 3, refund.id, "refund", refund.currency, _payment_reference(pay),
                      f"Refund of payment {_payment_reference(pay)}{why}", refund.amount))
    moves.sort(key=lambda m: (m[0], m[1], m[2]))
    by_currency: dict[str, list[tuple[date, int, int, str, str, str, str, Decimal]]] = defaultdict(list)
    for move in moves:
        by_currency[move[4]].append(move)
    currencies = []
    for currency in sorted(by_currency):
        opening = sum((m[7] for m in by_currency[currency] if m[0] < starts_on), ZERO)
        balance = opening
        entries = []
        totals = dict.fromkeys(ENTRY_KINDS, ZERO)
        for on, _rank, record_id, kind, _cur, reference, text, amount in by_currency[currency]:
            if on < starts_on:
                continue
            balance += amount
            totals[kind] += amount
            entries.append(StatementEntry(on, kind, record_id, reference, text, money_of(amount, currency),
                                          money_of(balance, currency)))
        if not entries and not opening:
            continue
        currencies.append(CurrencyStatement(
            currency, money_of(opening, currency), money_of(totals["invoice"], currency),
            money_of(-totals["credit_note"], currency), money_of(-totals["payment"], currency),
            money_of(totals["refund"], currency), money_of(balance, currency), tuple(entries)))
    return Statement(cid, customer.name, starts_on, through, tuple(currencies))


def _payment_reference(pay: payment_store.Payment) -> str:
    """A payment as a statement names it: its reference, else (recorded without one) its readable id."""
    return shown_reference(pay.external_reference) or payment_name(pay.id or 0, pay.received_on, None)
