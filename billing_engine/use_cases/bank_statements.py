"""Bank statements: each incoming credit recorded as a payment, matched to its invoices; direct-debit
returns reopen their invoices; what cannot be matched is left for finance with its candidates
(docs/payments.md, "Matching rules").

Matching a credit, the first rule that applies:

1. **a direct debit we sent**: its end-to-end id (or its batch id, for a batch credited in one
   amount) names debits of an export: they are booked, once (the collections job may have booked
   them already on the collection date);
2. **invoice numbers** in the remittance information (``INV-2026-000123``, ``inv 2026 123``, in
   any case, inside longer text): the payment goes to those of the customer's invoices still
   open, in that order; less than their balance is a partial payment, more becomes credit;
3. **amount and account**: the payer's IBAN is a customer's (a mandate, or an earlier payment
   matched from it) and one of that customer's open invoices has exactly the amount as balance
   (the oldest such);
4. else the credit is left **unmatched**, with candidate invoices, until finance matches it
   (``match_bank_entry``) or sets it aside (``ignore_bank_entry``).

A debit that returns a direct debit (a reason code and the debit's end-to-end id) refunds its
payment and reopens the invoice. Other debits (fees, suppliers) are not billsync's business and
are not recorded. Every entry recorded has its bank key UNIQUE: importing a statement twice
records nothing new.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from billing_engine.collections import BankTransaction, find_invoice_numbers
from billing_engine.errors import BillingError, ConflictError, InvalidInputError, NotFoundError
from billing_engine.storage import catalog as catalog_store
from billing_engine.storage import collections as store
from billing_engine.storage import invoices as invoice_store
from billing_engine.storage.database import Session
from billing_engine.use_cases.direct_debits import collect_debit, return_direct_debit
from billing_engine.use_cases.payments import record_payment

#: Where payments matched from a bank statement come from (their reference: the entry's bank key).
BANK_SOURCE = "bank"
BANK_METHOD = "bank_transfer"
PAYABLE = ("open", "uncollectible")
MAX_CANDIDATES = 10


@dataclass(frozen=True)
class Candidate:
    invoice_id: int
    number: str | None
    customer_id: str
    balance: Decimal
    currency: str
    due_on: date | None
    why: str  # "named in the remittance", "same amount", "the payer's open invoice"


@dataclass(frozen=True)
class EntryOutcome:
    entry_key: str
    status: str  # matched | unmatched | returned | recorded (stored); duplicate | skipped (not stored)
    rule: str = ""
    note: str = ""
    customer_id: str | None = None
    payment_id: int | None = None
    invoices: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImportResult:
    outcomes: tuple[EntryOutcome, ...] = ()

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def recorded(self) -> int:
        """Entries written by this import (neither imported before nor skipped)."""
        return sum(1 for o in self.outcomes if o.status not in ("duplicate", "skipped"))


def import_bank_transactions(session: Session, transactions: Sequence[BankTransaction], *,
                             now: datetime) -> ImportResult:
    """Record each transaction of a statement (in order) by the matching rules above; one already
    imported (same bank key) is skipped. A billing error on one entry (a refund the customer's
    credit can no longer cover...) leaves that entry unmatched with the reason; the others go on."""
    keys = [t.entry_key for t in transactions]
    if len(set(keys)) != len(keys):
        duplicated = sorted({k for k in keys if keys.count(k) > 1})
        raise InvalidInputError("entries", f"the same bank reference appears twice in the statement: {duplicated[0]}")
    seen = store.existing_entry_keys(session, keys)
    outcomes = []
    for transaction in transactions:
        if transaction.entry_key in seen:
            outcomes.append(EntryOutcome(transaction.entry_key, "duplicate", note="imported before"))
            continue
        if transaction.direction == "debit" and not transaction.return_reason:
            outcomes.append(EntryOutcome(transaction.entry_key, "skipped", note="a debit that is not a direct-debit "
                                                                                "return"))
            continue
        try:
            with session.begin_nested():
                outcome = _debit_return(session, transaction, now) if transaction.direction == "debit" \
                    else _credit(session, transaction, now)
        except BillingError as exc:
            outcome = EntryOutcome(transaction.entry_key, "unmatched", note=f"could not be recorded: {exc}")
        _store(session, transaction, outcome, now)
        outcomes.append(outcome)
    session.flush()
    return ImportResult(tuple(outcomes))


def _store(session: Session, t: BankTransaction, outcome: EntryOutcome, now: datetime) -> None:
    session.add(store.BankEntry(
        entry_key=t.entry_key, statement_id=t.statement_id[:80], account_iban=t.account_iban, booked_on=t.booked_on,
        direction=t.direction, amount=t.amount, currency=t.currency, counterparty_name=t.counterparty_name[:140],
        counterparty_iban=t.counterparty_iban, remittance=t.remittance, end_to_end_id=t.end_to_end_id[:35],
        return_reason=t.return_reason, status=outcome.status, rule=outcome.rule, customer_id=outcome.customer_id,
        payment_id=outcome.payment_id, note=outcome.note[:500], created_at=now,
        resolved_at=now if outcome.status != "unmatched" else None))


# ---------------------------------------------------------------- debits: direct-debit returns


def _debit_return(session: Session, t: BankTransaction, now: datetime) -> EntryOutcome:
    debit = store.debits_by_end_to_end(session, [t.end_to_end_id]).get(t.end_to_end_id) if t.end_to_end_id else None
    if debit is None:
        return EntryOutcome(t.entry_key, "unmatched", note=f"a direct-debit return ({t.return_reason}) of no debit "
                                                           f"billsync sent (end-to-end id {t.end_to_end_id or 'none'})")
    if debit.status == "returned":
        return EntryOutcome(t.entry_key, "recorded", "direct_debit_return", f"already returned: {debit.return_reason}",
                            debit.customer_id, invoices=(debit.end_to_end_id,))
    result = return_direct_debit(session, debit.end_to_end_id, reason=t.return_reason, returned_on=t.booked_on,
                                 now=now)
    note = f"{result.reason}: invoice {debit.end_to_end_id} reopened"
    if t.amount != debit.amount:
        note += f" (the bank returned {t.amount} {t.currency} for a debit of {debit.amount})"
    if result.mandate_revoked:
        note += "; mandate revoked"
    return EntryOutcome(t.entry_key, "returned", "direct_debit_return", note, debit.customer_id,
                        invoices=(debit.end_to_end_id,))


# ---------------------------------------------------------------- credits


def _credit(session: Session, t: BankTransaction, now: datetime) -> EntryOutcome:
    for rule in (_direct_debit_credit, _by_invoice_number, _by_amount_and_account):
        outcome = rule(session, t, now)
        if outcome is not None:
            return outcome
    return EntryOutcome(t.entry_key, "unmatched", note="no invoice number in the remittance and no known payer "
                                                       "account with an open invoice of this amount")


def _direct_debit_credit(session: Session, t: BankTransaction, now: datetime) -> EntryOutcome | None:
    debits = []
    if t.end_to_end_id:
        debit = store.debits_by_end_to_end(session, [t.end_to_end_id]).get(t.end_to_end_id)
        debits = [debit] if debit is not None else []
    if not debits and t.batch_id:
        debits = store.debits_of_batches(session, [t.batch_id]).get(t.batch_id, [])
    if not debits:
        return None
    total = sum((d.amount for d in debits), Decimal(0))
    numbers = tuple(d.end_to_end_id for d in debits)
    if total != t.amount:
        return EntryOutcome(t.entry_key, "unmatched", note=f"credits {t.amount} {t.currency} for direct debits of "
                                                           f"{total} EUR ({len(debits)} debits)", invoices=numbers)
    booked = [collect_debit(session, d.id, now=now) for d in debits if d.status == "pending"]
    customer = debits[0].customer_id if len({d.customer_id for d in debits}) == 1 else None
    payment = debits[0].payment_id if len(debits) == 1 else None
    if not booked:
        return EntryOutcome(t.entry_key, "recorded", "direct_debit", "the direct debits were booked on their "
                                                                     "collection date", customer, payment, numbers)
    return EntryOutcome(t.entry_key, "matched", "direct_debit", f"{len(booked)} direct debits booked", customer,
                        payment, numbers)


def _by_invoice_number(session: Session, t: BankTransaction, now: datetime) -> EntryOutcome | None:
    numbers = find_invoice_numbers(f"{t.remittance} {t.end_to_end_id}")
    if not numbers:
        return None
    found = store.invoices_by_numbers(session, numbers)
    named = [found[n] for n in numbers if n in found]
    if not named:
        return None
    customers = {inv.customer_id for inv in named}
    if len(customers) > 1:
        return EntryOutcome(t.entry_key, "unmatched", note=f"names invoices of several customers: "
                                                           f"{', '.join(inv.number for inv in named)}",
                            invoices=tuple(inv.number for inv in named))
    [customer_id] = customers
    payable = [inv for inv in named if inv.status in PAYABLE and inv.currency == t.currency and inv.balance > 0]
    if not payable:
        states = ", ".join(f"{inv.number} is {inv.status if inv.currency == t.currency else inv.currency}"
                           for inv in named)
        return EntryOutcome(t.entry_key, "unmatched", note=f"names no open invoice in {t.currency}: {states}",
                            customer_id=customer_id, invoices=tuple(inv.number for inv in named))
    balance = sum((inv.balance for inv in payable), Decimal(0))
    payment = _pay(session, t, customer_id, [inv.id for inv in payable], now)
    kind = "partial payment" if t.amount < balance else "overpayment: the rest is credit" if t.amount > balance \
        else "paid in full"
    return EntryOutcome(t.entry_key, "matched", "invoice_number", kind, customer_id, payment,
                        tuple(inv.number for inv in payable))


def _by_amount_and_account(session: Session, t: BankTransaction, now: datetime) -> EntryOutcome | None:
    if not t.counterparty_iban:
        return None
    customers = store.customers_of_ibans(session, [t.counterparty_iban]).get(t.counterparty_iban, set())
    if len(customers) != 1:
        return None
    [customer_id] = customers
    invoices = store.invoices_with_balance_of(session, [customer_id]).get(customer_id, [])
    exact = [inv for inv in invoices if inv.currency == t.currency and inv.balance == t.amount]
    if not exact:
        return None
    invoice = exact[0]  # oldest first
    payment = _pay(session, t, customer_id, [invoice.id], now)
    return EntryOutcome(t.entry_key, "matched", "amount_and_account", f"the payer's account and the amount of "
                                                                      f"{invoice.number}", customer_id, payment,
                        (invoice.number,))


def _pay(session: Session, t: BankTransaction, customer_id: str, invoice_ids: list[int], now: datetime) -> int:
    result = record_payment(session, customer_id=customer_id, amount=t.amount, currency=t.currency,
                            received_on=t.booked_on, method=BANK_METHOD, source=BANK_SOURCE,
                            external_reference=t.entry_key, invoice_ids=invoice_ids, now=now)
    store.remember_bank_account(session, customer_id, t.counterparty_iban, "payment", now)
    return result.payment_id


# ---------------------------------------------------------------- candidates, and finance's hand


def candidates_for(session: Session, t: BankTransaction | store.BankEntry,
                   open_invoices: dict[str, list[invoice_store.Invoice]] | None = None) -> list[Candidate]:
    """Invoices an unmatched credit may be for: those its remittance names (whatever their state),
    the open invoices of the payer's known account, and open invoices of exactly its amount.
    ``open_invoices`` caches the open invoices per currency across calls."""
    out: dict[int, Candidate] = {}
    cache = open_invoices if open_invoices is not None else {}

    def add(inv: invoice_store.Invoice, why: str) -> None:
        if inv.id not in out and len(out) < MAX_CANDIDATES:
            out[inv.id] = Candidate(inv.id, inv.number, inv.customer_id, inv.balance, inv.currency, inv.due_on, why)

    numbers = find_invoice_numbers(f"{t.remittance} {t.end_to_end_id}")
    for _, inv in sorted(store.invoices_by_numbers(session, numbers).items()):
        add(inv, f"named in the remittance ({inv.status})")
    if t.counterparty_iban:
        payers = store.customers_of_ibans(session, [t.counterparty_iban]).get(t.counterparty_iban, set())
        for invoices in store.invoices_with_balance_of(session, payers).values():
            for inv in invoices:
                if inv.currency == t.currency and inv.balance > 0:
                    add(inv, "an open invoice of the payer's account")
    if t.currency not in cache:
        cache[t.currency] = store.open_invoices_in(session, t.currency)
    for inv in cache[t.currency]:
        if inv.balance == t.amount:
            add(inv, "an open invoice of the same amount")
    return list(out.values())


@dataclass(frozen=True)
class BankEntryView:
    entry_id: int
    entry_key: str
    statement_id: str
    account_iban: str
    booked_on: date
    direction: str
    amount: Decimal
    currency: str
    counterparty_name: str
    counterparty_iban: str
    remittance: str
    end_to_end_id: str
    return_reason: str
    status: str
    rule: str
    note: str
    customer_id: str | None
    payment_id: int | None
    created_at: datetime
    candidates: tuple[Candidate, ...] = field(default=())


def _entry_view(session: Session, e: store.BankEntry, with_candidates: bool,
                cache: dict[str, list[invoice_store.Invoice]] | None = None) -> BankEntryView:
    candidates = tuple(candidates_for(session, e, cache)) if with_candidates and e.status == "unmatched" \
        and e.direction == "credit" else ()
    return BankEntryView(e.id, e.entry_key, e.statement_id, e.account_iban, e.booked_on, e.direction, e.amount,
                         e.currency, e.counterparty_name, e.counterparty_iban, e.remittance, e.end_to_end_id,
                         e.return_reason, e.status, e.rule, e.note, e.customer_id, e.payment_id, e.created_at,
                         candidates)


def list_bank_entries(session: Session, *, status: str | None = None, after_id: int | None = None,
                      limit: int = 50, with_candidates: bool = True) -> list[BankEntryView]:
    """Recorded statement entries by id (``status="unmatched"``: what finance must match), each
    unmatched credit with its candidate invoices."""
    cache: dict[str, list[invoice_store.Invoice]] = {}
    return [_entry_view(session, e, with_candidates, cache)
            for e in store.bank_entries(session, status=status, after_id=after_id, limit=limit)]


def get_bank_entry(session: Session, entry_id: int) -> BankEntryView:
    entry = store.bank_entry(session, entry_id)
    if entry is None:
        raise NotFoundError("bank entry", entry_id)
    return _entry_view(session, entry, True)


def match_bank_entry(session: Session, entry_id: int, *, invoice_ids: Sequence[int] = (),
                     invoice_numbers: Sequence[str] = (), customer_id: str | None = None,
                     now: datetime) -> BankEntryView:
    """Finance matches an unmatched credit by hand: to invoices, by id or number (paid in that order,
    the rest becoming credit), or to a customer (its oldest open invoices first). The payer's account
    is remembered for the next statements."""
    if invoice_numbers:
        found = store.invoices_by_numbers(session, invoice_numbers)
        unknown = [n for n in invoice_numbers if n not in found]
        if unknown:
            raise InvalidInputError("invoice_numbers", f"there is no invoice {unknown[0]}")
        invoice_ids = [*invoice_ids, *(found[n].id for n in invoice_numbers)]
    entry = store.bank_entry(session, entry_id, lock=True)
    if entry is None:
        raise NotFoundError("bank entry", entry_id)
    if entry.status != "unmatched" or entry.direction != "credit":
        raise ConflictError(f"bank entry {entry_id}", f"is {entry.status} ({entry.direction}); only an unmatched "
                                                      "credit can be matched")
    if not invoice_ids and not customer_id:
        raise InvalidInputError("invoice_ids", "name the invoices paid, or the customer who paid")
    invoices = invoice_store.invoices_by_ids(session, invoice_ids)
    missing = [i for i in invoice_ids if i not in invoices]
    if missing:
        raise InvalidInputError("invoice_ids", f"invoice {missing[0]} does not exist")
    owners = {inv.customer_id for inv in invoices.values()}
    if customer_id is not None:
        owners.add(customer_id)
    if len(owners) != 1:
        raise InvalidInputError("invoice_ids", "the invoices must be one customer's (and the customer's, if named)")
    [owner] = owners
    if catalog_store.find_customer(session, owner) is None:
        raise NotFoundError("customer", owner)
    result = record_payment(session, customer_id=owner, amount=entry.amount, currency=entry.currency,
                            received_on=entry.booked_on, method=BANK_METHOD, source=BANK_SOURCE,
                            external_reference=entry.entry_key, invoice_ids=list(invoice_ids) or None, now=now)
    store.remember_bank_account(session, owner, entry.counterparty_iban, "payment", now)
    numbers = ", ".join(invoices[i].number or str(i) for i in invoice_ids)
    entry.status, entry.rule, entry.customer_id, entry.payment_id = "matched", "manual", owner, result.payment_id
    entry.note = (f"matched by hand to {numbers}" if numbers else f"matched by hand to customer {owner}")[:500]
    entry.resolved_at = now
    session.add(entry)
    session.flush()
    return _entry_view(session, entry, False)


def ignore_bank_entry(session: Session, entry_id: int, *, reason: str, now: datetime) -> BankEntryView:
    """Set an unmatched entry aside (not a customer's payment: a refund from a supplier, a transfer
    between the company's accounts...); nothing is recorded for it."""
    entry = store.bank_entry(session, entry_id, lock=True)
    if entry is None:
        raise NotFoundError("bank entry", entry_id)
    if entry.status != "unmatched":
        raise ConflictError(f"bank entry {entry_id}", f"is {entry.status}; only an unmatched entry can be set aside")
    if not reason.strip() or len(reason) > 400:
        raise InvalidInputError("reason", "say why, in at most 400 characters")
    entry.status, entry.rule, entry.note, entry.resolved_at = "ignored", "manual", f"set aside: {reason.strip()}", now
    session.add(entry)
    session.flush()
    return _entry_view(session, entry, False)

