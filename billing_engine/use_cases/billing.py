"""Billing use cases: the bill run, invoice finalization, voiding, credit notes, write-offs.

Each use case works inside the caller's ``Session`` (the caller commits, so
outbox events are written in the same transaction as the change), except
``run_billing``, which owns its transactions (one per batch of customers, with
a per-customer fallback) because it must survive one customer's bad data.

Clock: nothing here reads the system clock. ``now`` (tz-aware) is passed in;
when omitted it is midnight UTC of the business date of the call.

The bill run reads charges through a ``ChargeSource`` (customers, their subscriptions
and ``charges_due``), so this module does not know how charges are drawn, only how
they are invoiced. ``bill_customers`` is the bill run over the engine's own tables.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from billing_engine import outbox as ob
from billing_engine.catalog import Price
from billing_engine.charges import ChargeLine, billing_floor, charges_due, usage_windows
from billing_engine.customers import Customer
from billing_engine.errors import (
    BillingError,
    ConflictError,
    CurrencyMismatchError,
    InvalidInputError,
    NotFoundError,
)
from billing_engine.invoicing import (
    DEFAULT_CREDIT_NOTE_SEQUENCE,
    DEFAULT_INVOICE_SEQUENCE,
    ChargeLike,
    CreditNoteDraft,
    DraftLine,
    InvoiceDraft,
    assemble_invoice,
    build_credit_note,
    check_transition,
    due_on,
    format_number,
    recurring_periods,
    take_remaining_tax,
)
from billing_engine.money import round_money
from billing_engine.payments import check_amount
from billing_engine.revenue import CustomerKey
from billing_engine.storage import catalog as catalog_store
from billing_engine.storage import database
from billing_engine.storage import invoices as invoice_store
from billing_engine.storage import payments as payment_store
from billing_engine.storage import revenue as revenue_store
from billing_engine.storage import subscriptions as subscription_store
from billing_engine.storage import usage as usage_store
from billing_engine.storage.database import Session
from billing_engine.storage.outbox import add_events
from billing_engine.subscriptions import Subscription
from billing_engine.tax import LineTax, ProductTax, TaxGroup, TaxRate, TaxRule, vat_breakdown
from billing_engine.use_cases.revenue import mrr_snapshots, subscription_mrr_versions

if TYPE_CHECKING:  # the anomaly guard's use case imports this module
    from billing_engine.anomalies import Finding
    from billing_engine.use_cases.anomalies import AnomalyGuard

ZERO = Decimal(0)


# ================================================================ bill run


@dataclass(frozen=True, slots=True)
class BillingAccount:
    """What the bill run needs to know about a customer."""

    customer_id: str
    tax_rate: TaxRate
    payment_terms_days: int = 30
    invoice_discount: Decimal = ZERO  # fixed discount on each invoice (same currency as the lines)
    # VAT per line (category and rate from the product and the countries); None: every line at tax_rate.
    tax_rule: TaxRule | None = None
    # The buyer's references (purchase order, buyer reference, and the custom attributes as their
    # JSON text) per subscription id: an invoice holds the lines of subscriptions with the same ones.
    references: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def taxes(self) -> dict[str, Any]:
        """The tax arguments of ``assemble_invoice`` for this customer."""
        rule = self.tax_rule
        if rule is None:
            return {"tax_rate": self.tax_rate}
        return {"line_tax": lambda charge: rule.line_tax(charge.product_code)}


class ChargeSource(Protocol):
    """Where the bill run's charges come from; all three methods are required.

    ``customers_due``: customers with id > ``after`` (all when None) that may have
    charges due up to ``as_of``, ordered by id, at most ``limit``.
    ``charges_due``: per customer id, the charge lines due up to ``as_of`` that are
    not billed yet (``storage.invoices.billed_lines_for_subscriptions`` and
    ``storage.usage.usage_records_for_subscriptions`` give what is billed and recorded).
    ``customer_mrr_on``: the rounded MRR per ``(customer, currency)`` on ``on`` of the
    customers of the batch (customers without MRR left out), so the bill run announces
    MRR changes (``customer.summary_changed``); ``None`` for a source that does not
    know MRR (nothing is announced then).
    ``database_charge_source()`` is the ready-made one over the engine's tables.
    """

    def customers_due(self, session: Session, as_of: date, after: str | None,
                      limit: int) -> Sequence[BillingAccount]: ...

    def charges_due(self, session: Session, accounts: Sequence[BillingAccount],
                    as_of: date) -> Mapping[str, Sequence[ChargeLike]]: ...

    def customer_mrr_on(self, session: Session, accounts: Sequence[BillingAccount],
                        on: date) -> Mapping[CustomerKey, Decimal] | None: ...


#: The latest date a bill run accepts: the periods it starts still end within the calendar (year 9999).
LATEST_BILL_RUN_DATE = date(9998, 12, 31)


@dataclass(frozen=True)
class InvoicePreview:
    """An invoice a dry run would create: its draft (lines with their explanations, totals, customer
    credit applied when it would be finalized), not numbered. ``held`` says why it would stay a
    draft for review ('' when it would be finalized); ``periods``: the most recurring periods one
    subscription's lines cover (``invoicing.recurring_periods``)."""

    customer_id: str
    draft: InvoiceDraft
    periods: int
    held: str = ""


@dataclass
class BillRunResult:
    as_of: date
    invoices_created: int = 0
    invoices_finalized: int = 0
    credit_notes_issued: int = 0
    customers_billed: int = 0
    customers_skipped: int = 0  # billed concurrently by another run
    invoices_held: int = 0  # left as drafts because they cover more than ``max_periods`` periods
    invoices_anomalous: int = 0  # with findings of the anomaly guard (held as drafts in its hold mode)
    max_periods: int | None = None
    dry_run: bool = False  # nothing was written; ``previews`` holds what would have been invoiced
    failures: dict[str, str] = field(default_factory=dict)
    previews: list[InvoicePreview] = field(default_factory=list)


def check_bill_run_date(as_of: date) -> None:
    """Refuse a date past ``LATEST_BILL_RUN_DATE`` with one ``InvalidInputError``, before any
    customer is read (rather than every customer failing on date arithmetic past year 9999)."""
    if as_of > LATEST_BILL_RUN_DATE:
        raise InvalidInputError("as_of", f"{as_of} is after {LATEST_BILL_RUN_DATE}, the latest date a bill run "
                                         "accepts (its periods would end past year 9999)")


def run_billing(
    engine: Any,
    as_of: date,
    *,
    source: ChargeSource,
    hold_for_review: bool = False,
    max_periods: int | None = None,
    batch_size: int = 500,
    now: datetime | None = None,
    sequence: str = DEFAULT_INVOICE_SEQUENCE,
    dry_run: bool = False,
    guard: AnomalyGuard | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BillRunResult:
    """Bill every customer with charges due up to ``as_of``: one invoice per currency.

    Idempotent: already-billed charge keys are not drawn again. Works in batches of customers
    streamed by id, each batch in one transaction that first claims its customers
    (``storage.catalog.claim_customers``: row locks, ``SKIP LOCKED``), so two runs at once
    (two clocks, a clock and a person) share the customers instead of billing them twice; the
    customers another run held are billed at the end, once that run let go of them, which finds
    their charges billed (``customers_skipped``) unless that run failed them. The UNIQUE charge
    key stays the last line of defence: if a batch fails (a charge billed concurrently despite
    the claims, or one customer's data is bad) it is redone customer by customer in their own
    transactions, a conflicting customer once more with its charges read again, and a bad
    customer's reason is recorded in ``bill_run_errors`` without stopping the run. Only billing
    errors (``BillingError``) and database errors are a customer's failure; anything else is a
    bug and ends the run with its exception.

    ``max_periods``: an invoice on which one subscription's recurring lines cover more periods
    (back-billing) stays a draft held for review (``invoices_held``); ``hold_for_review`` holds
    every invoice. ``dry_run``: compute everything, write nothing (no claim, no row, no event;
    every transaction rolled back) and return the invoices in ``previews``. ``guard``: the anomaly
    guard (``use_cases.anomalies``) scores every invoice against its customer's history; one with
    findings is held as a draft (or only flagged) and its findings are stored with it
    (``invoices_anomalous``). ``progress(done, total)``
    is called after each batch: the customers looked at so far out of every customer.
    """
    check_bill_run_date(as_of)
    if max_periods is not None and max_periods < 1:
        raise InvalidInputError("max_periods", f"{max_periods} is not a number of periods (1 or more)")
    run = _BillRun(engine, source, as_of, ob.changed_at(now, as_of), hold_for_review, max_periods, sequence,
                   dry_run, BillRunResult(as_of=as_of, max_periods=max_periods, dry_run=dry_run), guard)
    after: str | None = None
    busy: list[BillingAccount] = []
    total = done = 0
    if progress is not None:
        with Session(engine) as session:
            total = catalog_store.count_customers(session)
            session.rollback()
        progress(0, total)
    while True:
        with Session(engine) as session:
            accounts = list(source.customers_due(session, as_of, after, batch_size))
            session.rollback()
        if not accounts:
            break
        after = accounts[-1].customer_id
        busy.extend(run.batch(accounts, wait=False))
        done += len(accounts)
        if progress is not None:
            progress(min(done, total), total)
    # Customers another run was billing: wait until it lets go, then bill what it left.
    for start in range(0, len(busy), batch_size):
        run.batch(busy[start:start + batch_size], wait=True)
    if progress is not None:
        progress(total, total)
    return run.result


@dataclass
class _BillRun:
    engine: Any
    source: ChargeSource
    as_of: date
    created_at: datetime
    hold: bool
    max_periods: int | None
    sequence: str
    dry_run: bool
    result: BillRunResult
    guard: AnomalyGuard | None = None
    _due: set[str] = field(default_factory=set)  # customers with charges due in the batch being billed

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        if self.dry_run:
            with Session(self.engine) as session:
                try:
                    yield session
                finally:
                    session.rollback()
            return
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    def _claim(self, session: Session, accounts: Sequence[BillingAccount], wait: bool) -> set[str]:
        ids = [a.customer_id for a in accounts]
        return set(ids) if self.dry_run else catalog_store.claim_customers(session, ids, wait=wait)

    def batch(self, accounts: Sequence[BillingAccount], *, wait: bool) -> list[BillingAccount]:
        """Bill the customers of one batch in one transaction. Without ``wait``, the customers another
        transaction holds are left out and returned; with it, they are waited for and every one not
        invoiced here counts as billed by another run."""
        self._due = set()
        try:
            with self._transaction() as session:
                claimed = self._claim(session, accounts, wait)
                mine = [a for a in accounts if a.customer_id in claimed]
                stats = self._bill(session, mine)
        except (BillingError, database.SQLAlchemyError):
            # A charge billed concurrently, or one customer's data is bad: redo the batch customer
            # by customer so the others still get billed. A customer that had charges due when the
            # batch read them and has none now was billed by another run meanwhile.
            due = self._due
            for account in accounts:
                self.one(account, contended=wait or account.customer_id in due)
            return []
        _merge(self.result, stats)
        if wait:
            self.result.customers_skipped += len(mine) - stats.customers_billed
        return [a for a in accounts if a.customer_id not in claimed]

    def one(self, account: BillingAccount, *, contended: bool) -> None:
        cid = account.customer_id
        reason = ""
        for _attempt in range(2):
            try:
                with self._transaction() as session:
                    if not self._claim(session, [account], wait=False):
                        contended = True
                        self._claim(session, [account], wait=True)
                    stats = self._bill(session, [account])
                    if not self.dry_run:
                        invoice_store.clear_bill_run_error(session, self.as_of, cid)
            except (database.IntegrityError, database.OperationalError) as exc:
                # Billed by another run between our read and our write, or a deadlock: read again.
                contended = True
                reason = f"{type(exc).__name__}: {exc}"
                continue
            except (BillingError, database.SQLAlchemyError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
                break
            _merge(self.result, stats)
            if contended and not stats.customers_billed:
                self.result.customers_skipped += 1
            return
        self.result.failures[cid] = reason
        if not self.dry_run:
            with Session(self.engine) as session, session.begin():
                invoice_store.record_bill_run_error(session, self.as_of, cid, reason, self.created_at)

    def _bill(self, session: Session, accounts: Sequence[BillingAccount]) -> BillRunResult:
        if not accounts:
            return BillRunResult(as_of=self.as_of)
        charges = self.source.charges_due(session, accounts, self.as_of)
        self._due = {cid for cid, lines in charges.items() if lines}
        events = [] if self.dry_run else _mrr_changes(session, self.source, accounts, self.as_of, self.created_at)
        return self._bill_batch(session, accounts, charges, events)

    def _held(self, periods: int) -> str:
        if self.max_periods is not None and periods > self.max_periods:
            return f"covers {periods} periods of one subscription (more than {self.max_periods})"
        return "every invoice is held for review" if self.hold else ""

    def _bill_batch(self, session: Session, accounts: Sequence[BillingAccount],
                    charges: Mapping[str, Sequence[ChargeLike]],
                    mrr_events: Sequence[ob.OutboxEvent] = ()) -> BillRunResult:
        as_of, created_at = self.as_of, self.created_at
        stats = BillRunResult(as_of=as_of)
        held: list[_Pending] = []
        final: list[_Pending] = []
        for account in accounts:
            lines = charges.get(account.customer_id) or ()
            # One invoice per currency, buyer references and custom attributes (a purchase order number,
            # a cost centre is one per invoice).
            by_currency: dict[tuple[str, str, str, str], list[ChargeLike]] = defaultdict(list)
            for line in lines:
                refs = (*account.references.get(line.subscription_id, ()), "", "", "")[:3]
                by_currency[(line.currency, refs[0], refs[1], refs[2] or "{}")].append(line)
            for key in sorted(by_currency):
                currency = key[0]
                draft = assemble_invoice(by_currency[key], currency=currency, **account.taxes(),
                                         invoice_discount=account.invoice_discount)
                if draft.is_empty:
                    continue
                periods = recurring_periods(by_currency[key])
                pending = _Pending(account, by_currency[key], draft, periods, self._held(periods), key[1], key[2],
                                   key[3])
                if self.max_periods is not None and periods > self.max_periods:
                    stats.invoices_held += 1
                (held if pending.held else final).append(pending)
            if by_currency:
                stats.customers_billed += 1
        # ---- the anomaly guard (use_cases/anomalies.py): findings per pending invoice, by id() ----
        found: dict[int, list[Finding]] = {}
        if self.guard is not None:
            found = self.guard.screen(session, as_of, {id(p): (p.account.customer_id, p.draft) for p in held + final})
            stats.invoices_anomalous = len(found)
            if self.guard.holds:
                moved = [(p, replace(p, held=self.guard.reason(found[id(p)]))) for p in final if id(p) in found]
                found.update({id(new): found[id(old)] for old, new in moved})
                held += [new for _old, new in moved]
                final = [p for p in final if id(p) not in found]
        # ---- end of the anomaly guard ----
        stats.invoices_created = len(held) + len(final)
        balances = payment_store.lock_accounts(
            session, sorted({(p.account.customer_id, p.draft.currency) for p in final}), lock=not self.dry_run) \
            if final else {}
        final_drafts = _with_credit(final, balances)
        stats.invoices_finalized = len(final)
        stats.credit_notes_issued = sum(1 for d in final_drafts if d.credit_note is not None)
        if self.dry_run:
            drafts = {id(p): d for p, d in zip(final, final_drafts, strict=True)}
            for p in sorted(held + final, key=lambda p: (p.account.customer_id, p.draft.currency)):
                stats.previews.append(InvoicePreview(p.account.customer_id, drafts.get(id(p), p.draft), p.periods,
                                                     p.held))
            return stats
        invoices: list[tuple[int, InvoiceDraft, int | None]] = []
        if held:
            ids = invoice_store.insert_invoices(session, [_invoice_row(p, p.draft, as_of, created_at) for p in held])
            invoices.extend((i, p.draft, None) for i, p in zip(ids, held, strict=True))
        events: list[ob.OutboxEvent] = []
        if final:
            # Finalize in memory and insert the invoices already open: credit applied, numbered, dated.
            rows = [_invoice_row(p, p.draft, as_of, created_at) for p in final]
            numbers = _numbers(session, self.sequence, as_of.year, len(final))
            cn_numbers = _numbers(session, DEFAULT_CREDIT_NOTE_SEQUENCE, as_of.year, stats.credit_notes_issued)
            for row, draft, number in zip(rows, final_drafts, numbers, strict=True):
                row.update(_final_fields(draft, number, as_of, row["payment_terms_days"], created_at))
            ids = invoice_store.insert_invoices(session, rows)
            credit_changes: list[tuple[Any, ...]] = []
            cn_ids = [
                _finalize_effects(session, invoice_id, row, draft, cn_numbers, as_of, created_at, events,
                                  credit_changes)
                for invoice_id, row, draft in zip(ids, rows, final_drafts, strict=True)
            ]
            for customer_id, currency, amount, kind, refs in credit_changes:
                payment_store.change_credit(session, customer_id, currency, amount, kind, created_at, **refs)
            invoices.extend(zip(ids, final_drafts, cn_ids, strict=True))
        add_events(session, events + list(mrr_events))
        line_rows: list[dict[str, Any]] = []
        tax_rows: list[dict[str, Any]] = []
        for invoice_id, draft, cn_id in invoices:
            line_rows.extend(_line_rows(invoice_id, draft, cn_id))
            tax_rows.extend(invoice_store.tax_row(invoice_id, g) for g in draft.tax_groups)
        database.bulk_insert(session, invoice_store.InvoiceLine, line_rows)
        database.bulk_insert(session, invoice_store.InvoiceTax, tax_rows)
        if found and self.guard is not None:  # the anomaly guard's findings, stored with their invoices
            self.guard.record(session, [(i, found.get(id(p), [])) for (i, _d, _c), p in zip(invoices, held + final,
                                                                                             strict=True)], created_at)
        return stats


@dataclass(frozen=True)
class _Pending:
    """An invoice the bill run is about to create: its customer, charges, draft (before credit),
    the periods it covers and why it is held ('' when it is finalized)."""

    account: BillingAccount
    lines: list[ChargeLike]
    draft: InvoiceDraft
    periods: int
    held: str
    purchase_order: str = ""
    buyer_reference: str = ""
    attributes_json: str = "{}"


def _with_credit(final: Sequence[_Pending], balances: dict[tuple[str, str], Decimal]) -> list[InvoiceDraft]:
    """The drafts of the invoices being finalized with the customers' credit applied, in order."""
    drafts = []
    for p in final:
        key = (p.account.customer_id, p.draft.currency)
        available = balances.get(key, ZERO)
        draft = p.draft
        if available > 0:
            draft = assemble_invoice(p.lines, currency=draft.currency, **p.account.taxes(),
                                     invoice_discount=p.account.invoice_discount, available_credit=available)
        balances[key] = available - draft.credit_applied + draft.credit_created
        drafts.append(draft)
    return drafts


def _merge(result: BillRunResult, stats: BillRunResult) -> None:
    result.invoices_created += stats.invoices_created
    result.invoices_finalized += stats.invoices_finalized
    result.credit_notes_issued += stats.credit_notes_issued
    result.customers_billed += stats.customers_billed
    result.invoices_held += stats.invoices_held
    result.invoices_anomalous += stats.invoices_anomalous
    result.previews.extend(stats.previews)


def _mrr_changes(session: Session, source: ChargeSource, accounts: Sequence[BillingAccount], as_of: date,
                 created_at: datetime) -> list[ob.OutboxEvent]:
    """``customer.summary_changed`` events for the customers whose MRR on ``as_of`` differs from the
    MRR last announced (a cancellation or renewal taking effect, a change dated in the future);
    the announced MRR is updated in the same transaction. Nothing for a source that does not
    know MRR (``customer_mrr_on`` gives None)."""
    current = source.customer_mrr_on(session, accounts, as_of)
    if current is None:
        return []
    known = revenue_store.announced_mrr(session, [a.customer_id for a in accounts])
    changed = []
    for key in sorted(set(current) | set(known)):
        value = current.get(key, round_money(ZERO, key[1]))
        if known.get(key, ZERO) != value:
            changed.append({"customer_id": key[0], "currency": key[1], "mrr": value, "measured_on": as_of})
    revenue_store.save_announced_mrr(session, changed)
    return [ob.customer_summary_event(cid, created_at) for cid in sorted({str(row["customer_id"]) for row in changed})]


def _numbers(session: Session, sequence: str, year: int, count: int) -> list[str]:
    if count == 0:
        return []
    first = invoice_store.next_numbers(session, sequence, year, count)
    return [format_number(sequence, year, first + i) for i in range(count)]


def _final_fields(draft: InvoiceDraft, number: str, invoice_issued_on: date, terms: int, now: datetime) -> dict[str, Any]:
    t = draft.totals
    credited = draft.credit_applied + draft.settled_by_credit_note
    return {"status": "paid" if t.total - credited == 0 else "open", "number": number, "issued_on": invoice_issued_on,
            "due_on": due_on(invoice_issued_on, terms), "subtotal": t.subtotal, "discount": t.discount, "net": t.net,
            "tax": t.tax, "total": t.total, "amount_credited": credited, "finalized_at": now,
            "status_changed_at": now}


def _finalize_effects(session: Session, invoice_id: int, row: Mapping[str, Any], draft: InvoiceDraft,
                      cn_numbers: list[str], issued_on: date, now: datetime, events: list[ob.OutboxEvent],
                      credit_changes: list[tuple[Any, ...]]) -> int | None:
    """Credit note, credit-balance changes and outbox events of one invoice being finalized."""
    customer_id, currency = row["customer_id"], draft.currency
    cn_id = None
    if draft.credit_note is not None:
        cn_id = _insert_credit_note(session, customer_id, invoice_id, cn_numbers.pop(0), draft.credit_note.reason,
                                    draft.credit_note, issued_on, now, applied=draft.settled_by_credit_note,
                                    to_credit=draft.credit_created, events=events)
    if draft.credit_created:
        credit_changes.append((customer_id, currency, draft.credit_created, "credit_note",
                               {"credit_note_id": cn_id, "invoice_id": invoice_id}))
    if draft.credit_applied:
        credit_changes.append((customer_id, currency, -draft.credit_applied, "applied", {"invoice_id": invoice_id}))
    t = draft.totals
    payload = {"invoice_id": invoice_id, "number": row["number"], "customer_id": customer_id, "currency": currency,
               "issued_on": issued_on, "due_on": row["due_on"], "subtotal": t.subtotal, "discount": t.discount,
               "tax": t.tax, "total": t.total, "amount_credited": row["amount_credited"],
               "amount_due": t.total - row["amount_credited"], "status": row["status"],
               "tax_breakdown": [{"category": g.category, "rate": g.percent, "net": g.net, "tax": g.tax}
                                 for g in draft.tax_groups],
               "lines": [{"key": ln.charge_key, "description": ln.description, "kind": ln.kind,
                          "starts_on": ln.starts_on, "ends_before": ln.ends_before, "net": ln.net}
                         for ln in draft.lines]}
    events.append(ob.new_event(ob.INVOICE_FINALIZED, "invoice", invoice_id, payload, now))
    events.append(ob.customer_summary_event(customer_id, now))
    return cn_id


def _invoice_row(pending: _Pending, draft: InvoiceDraft, as_of: date, created_at: datetime) -> dict[str, Any]:
    t = draft.totals
    account = pending.account
    return {"customer_id": account.customer_id, "payment_terms_days": account.payment_terms_days,
            "currency": draft.currency, "status": "draft", "bill_run_on": as_of,
            "purchase_order": pending.purchase_order, "buyer_reference": pending.buyer_reference,
            "attributes_json": pending.attributes_json,
            "tax_percent": draft.tax_percent, "tax_reason": draft.tax_reason, "subtotal": t.subtotal,
            "discount": t.discount, "net": t.net, "tax": t.tax, "total": t.total, "amount_credited": ZERO,
            "amount_paid": ZERO, "amount_refunded": ZERO, "created_at": created_at}


def _line_rows(invoice_id: int, draft: InvoiceDraft, credit_note_id: int | None = None) -> list[dict[str, Any]]:
    lines = list(draft.lines) + (list(draft.credit_note.lines) if draft.credit_note else [])
    out = []
    for position, ln in enumerate(lines, start=1):
        is_credit_note_line = draft.credit_note is not None and ln in draft.credit_note.lines
        net = -ln.net if is_credit_note_line else ln.net
        out.append({"invoice_id": invoice_id, "charge_key": ln.charge_key, "position": position,
                    "subscription_id": ln.subscription_id, "item_id": ln.item_id, "product_code": ln.product_code,
                    "product_name": ln.product_name, "kind": ln.kind, "description": ln.description,
                    "starts_on": ln.starts_on, "ends_before": ln.ends_before, "quantity": ln.quantity,
                    "unit_price": ln.unit_price, "gross": -ln.gross if is_credit_note_line else ln.gross,
                    "line_discount": ln.line_discount, "invoice_discount": ln.invoice_discount, "net": net,
                    "tax_percent": ln.tax_percent, "explanation": ln.explanation,
                    "tax_category": ln.tax.code, "tax_reason": ln.tax_reason,
                    "credit_note_id": credit_note_id if is_credit_note_line else None})
    return out


def _redraft(invoice: invoice_store.Invoice, lines: Sequence[invoice_store.InvoiceLine], available_credit: Decimal) -> InvoiceDraft:
    """Re-assemble a stored draft (deterministic) to apply credit and split off a credit note."""
    charges = [ChargeLine(ln.charge_key, ln.subscription_id, ln.item_id, ln.product_code, ln.product_name,
                          ln.kind, ln.starts_on, ln.ends_before, ln.quantity, ln.unit_price,
                          ln.gross - ln.line_discount, ln.line_discount, invoice.currency, ln.explanation,
                          ln.description)
               for ln in lines]
    invoice_discount = sum((ln.invoice_discount for ln in lines), ZERO)
    taxes = {ln.charge_key: LineTax.of(ln.tax_percent, ln.tax_reason or invoice.tax_reason, ln.tax_category)
             for ln in lines}
    return assemble_invoice(charges, currency=invoice.currency, line_tax=lambda c: taxes[c.key],
                            invoice_discount=invoice_discount, available_credit=available_credit)


@dataclass(frozen=True)
class FinalizedInvoice:
    invoice_id: int
    number: str
    total: Decimal
    amount_due: Decimal
    credit_applied: Decimal
    credit_note_id: int | None


def finalize_invoice(session: Session, invoice_id: int, *, issued_on: date, now: datetime | None = None,
                     sequence: str = DEFAULT_INVOICE_SEQUENCE) -> FinalizedInvoice:
    """draft → open: apply customer credit, split off excess credits, number it, date it, emit events.

    The number is taken in this transaction, so a rollback leaves no gap.
    """
    [result] = _finalize_many(session, [invoice_id], issued_on=issued_on, now=ob.changed_at(now, issued_on),
                              sequence=sequence)
    return result


def _finalize_many(session: Session, invoice_ids: Sequence[int], *, issued_on: date, now: datetime,
                   sequence: str) -> list[FinalizedInvoice]:
    invoices = invoice_store.invoices_by_ids_for_update(session, invoice_ids)
    lines_by_invoice = invoice_store.lines_by_invoice(session, invoice_ids)
    for inv in invoices:
        check_transition(inv.status, "open", f"invoice {inv.id}")
    # Lock the credit accounts once per (customer, currency), in a stable order (no deadlock).
    balances = payment_store.lock_accounts(session, sorted({(inv.customer_id, inv.currency) for inv in invoices}))
    drafts = []
    for inv in invoices:
        key = (inv.customer_id, inv.currency)
        available = balances.get(key, ZERO)
        draft = _redraft(inv, lines_by_invoice.get(inv.id, []), available)
        balances[key] = available - draft.credit_applied + draft.credit_created
        drafts.append(draft)
    numbers = _numbers(session, sequence, issued_on.year, len(invoices))
    cn_numbers = _numbers(session, DEFAULT_CREDIT_NOTE_SEQUENCE, issued_on.year,
                          sum(1 for d in drafts if d.credit_note is not None))
    out: list[Any] = []
    updates: list[Any] = []
    events: list[Any] = []
    credit_changes: list[Any] = []
    for inv, draft, number in zip(invoices, drafts, numbers, strict=True):
        fields = _final_fields(draft, number, issued_on, inv.payment_terms_days, now)
        row = {"customer_id": inv.customer_id, **fields}
        cn_id = _finalize_effects(session, inv.id, row, draft, cn_numbers, issued_on, now, events, credit_changes)
        if cn_id is not None:
            invoice_store.mark_lines_credited(session, inv.id, [ln.charge_key for ln in draft.credit_note.lines], cn_id)
        updates.append({"b_id": inv.id, **fields})
        out.append(FinalizedInvoice(inv.id, number, fields["total"], fields["total"] - fields["amount_credited"],
                                    draft.credit_applied, cn_id))
    invoice_store.update_invoices(session, updates)
    invoice_store.replace_taxes(session, {inv.id: d.tax_groups for inv, d in zip(invoices, drafts, strict=True)})
    for customer_id, currency, amount, kind, refs in credit_changes:
        payment_store.change_credit(session, customer_id, currency, amount, kind, now, **refs)
    add_events(session, events)
    return out


def _insert_credit_note(session: Session, customer_id: str, invoice_id: int | None, number: str, reason: str,
                        note: Any, issued_on: date, now: datetime, *, applied: Decimal, to_credit: Decimal,
                        events: list[ob.OutboxEvent]) -> int:
    cn_id = database.insert_returning_id(session, invoice_store.CreditNote, {
        "number": number, "customer_id": customer_id, "invoice_id": invoice_id, "currency": note.currency,
        "reason": reason, "issued_on": issued_on, "net": note.net, "tax": note.tax, "total": note.total,
        "applied_to_invoice": applied, "to_credit_balance": to_credit, "created_at": now})
    database.bulk_insert(session, invoice_store.CreditNoteLine, [
        {"credit_note_id": cn_id, "charge_key": ln.charge_key, "description": ln.description, "net": ln.net,
         "tax_percent": ln.tax_percent, "tax_category": ln.tax.code, "tax_reason": ln.tax_reason}
        for ln in note.lines])
    events.append(ob.new_event(ob.CREDIT_NOTE_ISSUED, "credit_note", cn_id, {
        "credit_note_id": cn_id, "number": number, "customer_id": customer_id, "invoice_id": invoice_id,
        "currency": note.currency, "issued_on": issued_on, "reason": reason, "net": note.net, "tax": note.tax,
        "total": note.total, "applied_to_invoice": applied, "to_credit_balance": to_credit}, now))
    return cn_id


def invoice_status_event(inv: invoice_store.Invoice, old: str, new: str, now: datetime) -> ob.OutboxEvent:
    """``invoice.status_changed`` of an invoice going from ``old`` to ``new``."""
    return ob.new_event(ob.INVOICE_STATUS_CHANGED, "invoice", inv.id, {
        "invoice_id": inv.id, "number": inv.number, "customer_id": inv.customer_id, "from": old, "to": new,
        "balance": inv.balance}, now)


def get_invoice_for_update(session: Session, invoice_id: int) -> invoice_store.Invoice:
    """The invoice, locked until the transaction ends; raises ``NotFoundError``."""
    inv = invoice_store.get_invoice_for_update(session, invoice_id)
    if inv is None:
        raise NotFoundError("invoice", invoice_id)
    return inv


def void_invoice(session: Session, invoice_id: int, *, on: date, reason: str = "void",
                 now: datetime | None = None) -> int | None:
    """Void an invoice that has no payment applied; returns the credit note id (None for a draft).

    An open invoice is reversed by a credit note for its total: the part still
    due is cancelled (the invoice counts it as credited, so its balance is 0), customer
    credit that had been applied goes back to the balance.
    """
    now = ob.changed_at(now, on)
    inv = get_invoice_for_update(session, invoice_id)
    old = inv.status
    check_transition(old, "void", f"invoice {inv.number or inv.id}")
    if inv.amount_paid - inv.amount_refunded != 0:
        raise ConflictError(f"invoice {inv.number}", "has payments applied; refund them or issue a credit note")
    if old != "draft" and invoice_store.credited_net(session, inv.id) != 0:
        raise ConflictError(f"invoice {inv.number}",
                            "already has a credit note; issue a credit note for what is left instead of voiding it")
    events: list[ob.OutboxEvent] = []
    cn_id = None
    if old != "draft" and inv.total > 0:
        note = _whole_invoice_note(session, inv, reason)
        returned = inv.amount_credited
        if returned:
            payment_store.lock_account(session, inv.customer_id, inv.currency)
        number = format_number(DEFAULT_CREDIT_NOTE_SEQUENCE, on.year,
                               invoice_store.next_numbers(session, DEFAULT_CREDIT_NOTE_SEQUENCE, on.year, 1))
        cn_id = _insert_credit_note(session, inv.customer_id, inv.id, number, reason, note, on, now,
                                    applied=inv.balance, to_credit=returned, events=events)
        if returned:
            payment_store.change_credit(session, inv.customer_id, inv.currency, returned, "credit_note", now,
                             credit_note_id=cn_id, invoice_id=inv.id)
        inv.amount_credited += inv.balance
    inv.status = "void"
    inv.status_changed_at = now
    session.add(inv)
    session.flush()
    if old != "draft":
        events.append(invoice_status_event(inv, old, "void", now))
        events.append(ob.customer_summary_event(inv.customer_id, now))
    add_events(session, events)
    return cn_id


def _whole_invoice_note(session: Session, inv: invoice_store.Invoice, reason: str):
    """The credit note that voids a finalized invoice: one line per VAT group of the invoice, each
    with the group's net, category and rate, so its tax is the invoice's, group by group."""
    on = inv.issued_on or date.min
    groups = [g for g in invoice_store.invoice_tax_groups(session, inv.id) if g.net > 0]
    if len(groups) < 2:
        tax = groups[0] if groups else None
        line = DraftLine(f"void:{inv.id}", "", "", "", "", "adjustment", reason, on, on, Decimal(1), inv.net,
                         inv.net, ZERO, ZERO, inv.net, inv.tax_percent, "", tax.category if tax else "",
                         (tax.reason if tax else "") or inv.tax_reason)
        return build_credit_note(reason, inv.currency, [(line, inv.net)])
    lines = [(DraftLine(f"void:{inv.id}:{n}", "", "", "", "", "adjustment", reason, on, on, Decimal(1), g.net,
                        g.net, ZERO, ZERO, g.net, g.tax_percent, "", g.category, g.reason), g.net)
             for n, g in enumerate(groups, start=1)]
    return build_credit_note(reason, inv.currency, lines)


def _adjustment_tax(session: Session, inv: invoice_store.Invoice) -> LineTax:
    """The VAT of an amount credited on an invoice: its one VAT group's. An invoice with several
    groups is credited line by line, since an amount alone does not say which group it reduces."""
    groups = [g for g in invoice_store.invoice_tax_groups(session, inv.id) if g.net > 0]
    if len(groups) > 1:
        raise InvalidInputError("amount", f"invoice {inv.number or inv.id} has {len(groups)} VAT groups; credit "
                                          "its lines instead of an amount")
    if not groups:
        return LineTax.of(inv.tax_percent, inv.tax_reason)
    return LineTax.of(groups[0].tax_percent, groups[0].reason or inv.tax_reason, groups[0].category)


def issue_credit_note(session: Session, invoice_id: int, *, amount: Decimal, reason: str, on: date,
                      now: datetime | None = None) -> int:
    """Credit part of a finalized invoice (an adjustment): ``amount`` is the net credited, before tax.

    Tax is recomputed on the rounded credited amount at the invoice's rate. The
    credit settles the invoice's open balance first; the rest becomes customer credit.
    """
    now = ob.changed_at(now, on)
    inv = get_invoice_for_update(session, invoice_id)
    _check_creditable(inv)
    amount = check_amount(amount, inv.currency)
    already = invoice_store.credited_net(session, inv.id)
    if already + amount > inv.net:
        raise InvalidInputError("amount", f"credits {already} + {amount} would exceed the invoice net {inv.net}")
    return _settle_credit_note(session, inv, _adjustment_note(session, inv, amount, reason), reason, on, now)


def credit_invoice(session: Session, invoice_id: int, *, reason: str, on: date,
                   lines: Sequence[tuple[int, object | None]] | None = None, amount: object | None = None,
                   currency: str | None = None, now: datetime | None = None) -> int:
    """Issue a credit note on a finalized invoice, with a reason; returns its id.

    - ``amount``: an adjustment of that net amount (``issue_credit_note``);
    - ``lines``: ``(line position, net to credit on it)`` pairs (``None``: what is left to credit
      on the line); the credit note has one line per invoice line credited, at its tax rate;
    - neither: everything left to credit, line by line (a single adjustment line when earlier
      adjustments were not made per line).

    ``currency``, when given, is the currency the amounts are in: it must be the invoice's.
    A line is credited at most its net, the invoice at most its net (docs/billing-rules.md §15
    Credit notes and customer credit); the credit settles the balance first, the rest becomes
    customer credit. Errors name ``lines[i].line``, ``lines[i].amount`` or ``amount``.
    """
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInputError("reason", "is required; it is printed on the credit note")
    if lines and amount is not None:
        raise InvalidInputError("lines", "credit given lines or an amount, not both")
    now = ob.changed_at(now, on)
    inv = get_invoice_for_update(session, invoice_id)
    if currency is not None and currency != inv.currency:
        raise CurrencyMismatchError("amount.currency" if amount is not None else "lines[0].amount.currency",
                                    inv.currency, currency)
    if amount is not None:
        return issue_credit_note(session, invoice_id, amount=amount, reason=reason, on=on, now=now)  # type: ignore[arg-type]
    _check_creditable(inv)
    label = inv.number or str(inv.id)
    own = [ln for ln in invoice_store.invoice_lines(session, inv.id) if ln.credit_note_id is None]
    credited = invoice_store.credited_by_charge_key(session, inv.id)
    left_on_invoice = inv.net - invoice_store.credited_net(session, inv.id)
    wanted: list[tuple[invoice_store.InvoiceLine, Decimal]] = []
    if lines:
        by_position = {ln.position: ln for ln in own}
        for n, (position, raw) in enumerate(lines):
            line = by_position.get(position)
            if line is None:
                raise InvalidInputError(f"lines[{n}].line", f"invoice {label} has no line {position}")
            if any(ln is line for ln, _ in wanted):
                raise InvalidInputError(f"lines[{n}].line", f"line {position} is named twice")
            if line.net <= 0:
                raise InvalidInputError(f"lines[{n}].line", f"line {position} is a credit ({line.net}); "
                                                            "only charges are credited")
            left = line.net - credited.get(line.charge_key, ZERO)
            if left <= 0:
                raise ConflictError(f"invoice {label} line {position}", "is already credited in full")
            value = left if raw is None else check_amount(raw, inv.currency, f"lines[{n}].amount")
            if value > left:
                raise InvalidInputError(f"lines[{n}].amount",
                                        f"{value} is more than is left to credit on line {position} ({left})")
            wanted.append((line, value))
        total = sum((value for _, value in wanted), ZERO)
        if total > left_on_invoice:
            raise InvalidInputError("lines", f"{total} is more than is left to credit on invoice {label} "
                                             f"({left_on_invoice} of its net {inv.net})")
    else:
        if left_on_invoice <= 0:
            raise ConflictError(f"invoice {label}", "is already credited in full")
        wanted = [(ln, ln.net - credited.get(ln.charge_key, ZERO)) for ln in own]
        wanted = [(ln, left) for ln, left in wanted if ln.net > 0 and left > 0]
        if sum((left for _, left in wanted), ZERO) != left_on_invoice:
            return _settle_credit_note(session, inv, _adjustment_note(session, inv, left_on_invoice, reason), reason,
                                       on, now)
    note = build_credit_note(reason, inv.currency, [(_credited_line(ln), value) for ln, value in wanted])
    return _settle_credit_note(session, inv, note, reason, on, now)


def _check_creditable(inv: invoice_store.Invoice) -> None:
    if inv.status not in ("open", "paid", "uncollectible"):
        raise ConflictError(f"invoice {inv.number or inv.id}", f"is {inv.status}; only finalized invoices are credited")


def _adjustment_note(session: Session, inv: invoice_store.Invoice, amount: Decimal, reason: str) -> CreditNoteDraft:
    """An amount credited on an invoice, at the VAT of its one group (``_adjustment_tax``)."""
    tax = _adjustment_tax(session, inv)
    line = DraftLine(f"adjustment:{inv.id}", "", "", "", "", "adjustment", reason, inv.issued_on, inv.issued_on,
                     Decimal(1), amount, amount, ZERO, ZERO, amount, tax.percent, "", tax.code, tax.reason)
    return build_credit_note(reason, inv.currency, [(line, amount)])


def _credited_line(line: invoice_store.InvoiceLine) -> DraftLine:
    """An invoice line as a credit note line credits it (same key, description, VAT category, rate and
    exemption reason)."""
    return DraftLine(line.charge_key, line.subscription_id, line.item_id, line.product_code, line.product_name,
                     line.kind, line.description, line.starts_on, line.ends_before, line.quantity, line.unit_price,
                     line.gross, line.line_discount, line.invoice_discount, line.net, line.tax_percent,
                     line.explanation, line.tax_category, line.tax_reason)


def _settle_credit_note(session: Session, inv: invoice_store.Invoice, note: CreditNoteDraft, reason: str, on: date,
                        now: datetime) -> int:
    """Number and store a credit note on a locked invoice: it settles the open balance first, the
    rest becomes customer credit; a balance brought to zero makes the invoice paid. The credit that
    completes the invoice's net in a VAT group takes the tax left there (``take_remaining_tax``)."""
    invoiced = [TaxGroup(t.tax_percent, t.net, t.tax, t.category, t.reason)
                for t in invoice_store.invoice_taxes(session, inv.id)]
    note = take_remaining_tax(note, invoiced, _credited_tax(session, inv.id))
    applied = min(note.total, max(inv.balance, ZERO))
    to_credit = note.total - applied
    events: list[ob.OutboxEvent] = []
    number = format_number(DEFAULT_CREDIT_NOTE_SEQUENCE, on.year,
                           invoice_store.next_numbers(session, DEFAULT_CREDIT_NOTE_SEQUENCE, on.year, 1))
    cn_id = _insert_credit_note(session, inv.customer_id, inv.id, number, reason, note, on, now, applied=applied,
                                to_credit=to_credit, events=events)
    if to_credit:
        payment_store.lock_account(session, inv.customer_id, inv.currency)
        payment_store.change_credit(session, inv.customer_id, inv.currency, to_credit, "credit_note", now,
                         credit_note_id=cn_id, invoice_id=inv.id)
    old = inv.status
    inv.amount_credited += applied
    if inv.balance == 0 and old in ("open", "uncollectible"):
        inv.status = "paid"
        inv.status_changed_at = now
        events.append(invoice_status_event(inv, old, "paid", now))
    session.add(inv)
    events.append(ob.customer_summary_event(inv.customer_id, now))
    session.flush()
    add_events(session, events)
    return cn_id


def _credited_tax(session: Session, invoice_id: int) -> list[TaxGroup]:
    """What the invoice's credit notes took, per note and VAT group: a note in one group as stored,
    a note over several groups by its lines' breakdown."""
    notes = invoice_store.credit_notes_of_invoice(session, invoice_id)
    lines = invoice_store.credit_note_lines(session, [cn.id for cn in notes if cn.id is not None])
    out: list[TaxGroup] = []
    for cn in notes:
        own = lines.get(cn.id or 0, [])
        taxes = [(ln.net, LineTax.of(ln.tax_percent, ln.tax_reason, ln.tax_category)) for ln in own]
        keys = {(t.code, t.percent.normalize()) for _, t in taxes}
        if len(keys) == 1:
            code, percent = keys.pop()
            out.append(TaxGroup(percent, cn.net, cn.tax, category=code))
        else:
            out.extend(vat_breakdown(taxes, cn.currency))
    return out


def mark_uncollectible(session: Session, invoice_id: int, *, on: date, now: datetime | None = None) -> None:
    now = ob.changed_at(now, on)
    inv = get_invoice_for_update(session, invoice_id)
    old = inv.status
    check_transition(old, "uncollectible", f"invoice {inv.number or inv.id}")
    inv.status, inv.status_changed_at = "uncollectible", now
    session.add(inv)
    session.flush()
    add_events(session, [invoice_status_event(inv, old, "uncollectible", now),
                         ob.customer_summary_event(inv.customer_id, now)])


# ================================================================ charge sources over the domain


def account_for(customer: Customer, default_tax_percent: Decimal = ZERO,
                invoice_discount: Decimal = ZERO) -> BillingAccount:
    """A ``BillingAccount`` from ``billing_engine.customers.Customer``."""
    percent = customer.tax_rate(default_tax_percent)
    reason = customer.tax_exempt_reason or ""
    rate = TaxRate.exempt(reason) if reason else TaxRate(percent)
    return BillingAccount(customer.customer_id, rate, customer.payment_terms_days, invoice_discount)


class SubscriptionChargeSource:
    """A ``ChargeSource`` over ``Subscription`` objects and ``charges.charges_due``.

    ``load_accounts(session, as_of, after, limit)`` lists customers by id;
    ``load_subscriptions(session, customer_ids)`` returns their subscriptions.
    Already-billed lines and recorded usage come from the billing tables (one query
    each per batch). It also tells each customer's MRR (``customer_mrr_on``) from the
    subscriptions of the batch, so the bill run announces MRR changes. ``bills_from``: the
    cut-over, the first day anything may be invoiced (``charges.billing_floor``; MRR is not
    affected).
    """

    def __init__(self, load_accounts: Callable[[Session, date, str | None, int], Sequence[BillingAccount]],
                 load_subscriptions: Callable[[Session, Sequence[str]], Sequence[Subscription]],
                 bills_from: date | None = None):
        self.load_accounts = load_accounts
        self.load_subscriptions = load_subscriptions
        self.bills_from = bills_from
        self._batch: tuple[tuple[str, ...], list[Subscription]] = ((), [])

    def customers_due(self, session: Session, as_of: date, after: str | None,
                      limit: int) -> Sequence[BillingAccount]:
        return self.load_accounts(session, as_of, after, limit)

    def _subscriptions(self, session: Session, accounts: Sequence[BillingAccount]) -> list[Subscription]:
        ids = tuple(a.customer_id for a in accounts)
        if self._batch[0] != ids:
            self._batch = (ids, list(self.load_subscriptions(session, list(ids))))
        return self._batch[1]

    def charges_due(self, session: Session, accounts: Sequence[BillingAccount],
                    as_of: date) -> Mapping[str, Sequence[ChargeLine]]:
        self._batch = ((), [])  # a new transaction: load afresh
        subs = [s for s in self._subscriptions(session, accounts) if s.starts_on <= as_of]
        billed = invoice_store.billed_lines_for_subscriptions(session, [s.subscription_id for s in subs])
        metered = [s for s in subs if _has_usage(s, as_of)]
        records = usage_store.usage_records_for_subscriptions(session, [s.subscription_id for s in metered], as_of) \
            if metered else {}
        out: dict[str, list[ChargeLine]] = defaultdict(list)
        floor = self.bills_from
        for sub in subs:
            sid = sub.subscription_id
            usage = _subscription_usage(session, sub, as_of, records.get(sid, []), bills_from=floor) \
                if sid in records else None
            out[sub.customer_id].extend(charges_due(sub, as_of, billed.get(sid, ()), usage, bills_from=floor))
        return out

    def customer_mrr_on(self, session: Session, accounts: Sequence[BillingAccount],
                        on: date) -> dict[CustomerKey, Decimal]:
        """Rounded MRR per (customer, currency) on ``on`` (customers without MRR are left out)."""
        subs = self._subscriptions(session, accounts)
        [snapshot] = mrr_snapshots((v for s in subs for v in subscription_mrr_versions(s, on)), [on])
        return snapshot


def _has_usage(sub: Subscription, as_of: date) -> bool:
    return any(item.price.charge_type == "usage" for v in sub.versions(as_of) for item in v.items.values())


def _subscription_usage(session: Session, sub: Subscription, as_of: date,
                        records: Sequence[tuple[str, date, Decimal]] | None = None, *,
                        bills_from: date | None = None) -> dict[tuple[str, date], Decimal]:
    """Σ recorded usage per (item, usage window start) of one subscription, up to ``as_of``.

    A record falls in the window ``usage_windows`` reports for its item and day (a
    record on a day its item was not on the subscription goes to the anchored billing
    period containing the day, clamped to the subscription's start). ``records``:
    ``(item id, occurred_on, quantity)``, read from the usage table when not given.
    Usage before the cut-over (``bills_from``, see ``charges.billing_floor``) is not billed.
    """
    from billing_engine.periods import period_containing

    item_ids = sorted({i.item_id for v in sub.versions(as_of) for i in v.items.values()
                       if i.price.charge_type == "usage"})
    if records is None:
        records = usage_store.usage_totals(session, sub.subscription_id, item_ids, sub.starts_on, as_of)
    first_day = billing_floor(sub, bills_from) or sub.starts_on
    records = [r for r in records if r[1] >= first_day and r[0] in item_ids]
    if not records:
        return {}
    windows: dict[str, list[Any]] = defaultdict(list)
    for item_id, window in usage_windows(sub, as_of, bills_from=bills_from):
        windows[item_id].append(window)
    totals: dict[tuple[str, date], Decimal] = {}
    for item_id, on, quantity in records:
        start = next((w.starts_on for w in windows.get(item_id, ()) if w.starts_on <= on < w.ends_before), None)
        if start is None:
            start = max(period_containing(sub.billing_anchor_on, sub.interval, on).starts_on, first_day)
        totals[(item_id, start)] = totals.get((item_id, start), ZERO) + quantity
    return totals


class DatabaseChargeSource(SubscriptionChargeSource):
    """The bill run's ``ChargeSource`` over the engine's own tables.

    Customers with a subscription started by the bill-run date come as ``BillingAccount``
    rows in id order, a page at a time (``after``/``limit``), taxed at their rate (an
    exempt customer at 0 % with its reason; no rate: ``default_tax_percent``). Their
    subscriptions load in three queries per batch (subscriptions, items, amendments;
    prices once per run), not one per subscription. Make one per run
    (``database_charge_source()``): it caches the catalog prices it read.
    """

    def __init__(self, default_tax_percent: Decimal = ZERO, bills_from: date | None = None,
                 seller_country: str | None = None):
        self.default_tax_percent = default_tax_percent
        self.seller_country = seller_country
        self._prices: dict[str, Price] = {}
        self._rates: dict[tuple[Any, Any], TaxRate] = {}
        # Filled as subscriptions load, read when their lines are taxed and grouped into invoices.
        self._product_taxes: dict[str, ProductTax] = {}
        self._references: dict[str, tuple[str, ...]] = {}
        super().__init__(self._load_accounts, self._load_subscriptions, bills_from)

    def _rate(self, percent: Decimal | None, exempt_reason: str | None) -> TaxRate:
        key = (percent, exempt_reason)
        rate = self._rates.get(key)
        if rate is None:
            rate = self._rates[key] = TaxRate.exempt(exempt_reason) if exempt_reason else \
                TaxRate(percent if percent is not None else self.default_tax_percent)
        return rate

    def _load_accounts(self, session: Session, as_of: date, after: str | None, limit: int) -> list[BillingAccount]:
        return [BillingAccount(row.id, self._rate(row.tax_rate_percent, row.tax_exempt_reason), row.payment_terms_days,
                               tax_rule=self._tax_rule(row), references=self._references)
                for row in subscription_store.customers_page(session, after=after, limit=limit, starts_by=as_of)]

    def _tax_rule(self, row: Any) -> TaxRule:
        """VAT per line for this customer (docs/billing-rules.md §14 Tax)."""
        return TaxRule(customer_country=row.country or "", customer_vat_id=row.vat_id or None,
                       standard_percent=row.tax_rate_percent if row.tax_rate_percent is not None
                       else self.default_tax_percent, customer_exempt_reason=row.tax_exempt_reason or None,
                       seller_country=self.seller_country, products=self._product_taxes)

    def _load_subscriptions(self, session: Session, customer_ids: Sequence[str]) -> list[Subscription]:
        subscriptions = subscription_store.subscriptions_of_customers(session, customer_ids, price_cache=self._prices)
        for price in self._prices.values():
            self._product_taxes.setdefault(price.product.code, price.product.tax)
        for sub in subscriptions:
            if sub.purchase_order or sub.buyer_reference or sub.attributes:
                self._references[sub.subscription_id] = (sub.purchase_order, sub.buyer_reference,
                                                         subscription_store.attributes_json(sub.attributes))
        return subscriptions


def database_charge_source(default_tax_percent: Decimal = ZERO, bills_from: date | None = None,
                           seller_country: str | None = None) -> DatabaseChargeSource:
    """A ready-made ``ChargeSource`` reading customers and subscriptions from the database
    (charging nothing before the cut-over ``bills_from``; VAT per line from ``seller_country``)."""
    return DatabaseChargeSource(default_tax_percent, bills_from, seller_country)


def bill_customers(engine: Any, as_of: date, *, hold_for_review: bool = False, now: datetime | None = None,
                   default_tax_percent: Decimal = ZERO, batch_size: int = 500, max_periods: int | None = None,
                   dry_run: bool = False, bills_from: date | None = None,
                   seller_country: str | None = None, guard: AnomalyGuard | None = None,
                   progress: Callable[[int, int], None] | None = None) -> BillRunResult:
    """The bill run over the database: every customer's charges due up to ``as_of`` invoiced
    (finalized, or held as drafts: all with ``hold_for_review``, those covering more than
    ``max_periods`` periods of a subscription otherwise), MRR changes announced. Owns its
    transactions (``run_billing``). ``dry_run``: the same run computed and rolled back, nothing
    written; the invoices it would create are in the result's ``previews``. ``bills_from``: the
    cut-over; nothing before it is invoiced (docs/billing-rules.md §19 Cut-over). ``guard``: the
    anomaly guard (``use_cases.anomalies.AnomalyGuard``; None: no screening)."""
    return run_billing(engine, as_of, source=database_charge_source(default_tax_percent, bills_from, seller_country),
                       hold_for_review=hold_for_review, max_periods=max_periods, batch_size=batch_size, now=now,
                       dry_run=dry_run, guard=guard, progress=progress)
