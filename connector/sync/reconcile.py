"""Reconciliation: do the engine and Salesforce agree on a month's invoices and payments?

``reconcile_period(services, "2026-11")`` reads, for the month:

- the engine's finalized invoices issued in it (``issued_on``) and its payments received
  in it (``received_on``);
- Salesforce's ``Invoice__c`` by ``Issue_Date__c`` and ``Payment__c`` by
  ``Payment_Date__c`` in the month (SOQL through the client; every value escaped).

It compares them per currency and status (count and sum) and record by record, keyed by
the external ids the push writes (``Billsync_Invoice_Id__c``, ``Billsync_Payment_Id__c``, this
installation's keys, ``connector.sync.installation.Keys``; a record keyed by another
installation is one billsync does not hold):
missing in Salesforce, missing in the engine, an amount different (``Total__c``,
``Balance__c``; ``Amount__c``), or a status different
(``Status__c``, ``Payment_Status__c``). Amounts are exact decimals, compared to the cent.

``requeue_drift(services, report)`` (``billsync reconcile --repair``) puts the outbox rows
of every drifted engine record back to pending, so the next push writes it again (the
push upserts by external id, so replaying is safe). A record that exists only in
Salesforce cannot be fixed by a push: it is reported for a person to look at.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlmodel import Session

from billing_engine.use_cases import exports
from connector.database import transaction
from connector.salesforce.soql import build_soql
from connector.sync.installation import Keys, keys_of

if TYPE_CHECKING:
    from connector.wiring import Services

ZERO = Decimal(0)

INVOICE_SOQL = ("SELECT Id, Name, Billsync_Invoice_Id__c, Status__c, Payment_Status__c, Total__c, Balance__c, "
                "CurrencyIsoCode, Issue_Date__c FROM Invoice__c "
                "WHERE Issue_Date__c >= {} AND Issue_Date__c < {} ORDER BY Issue_Date__c, Name")
PAYMENT_SOQL = ("SELECT Id, Name, Billsync_Payment_Id__c, Status__c, Amount__c, Unapplied_Amount__c, "
                "CurrencyIsoCode, Payment_Date__c FROM Payment__c "
                "WHERE Payment_Date__c >= {} AND Payment_Date__c < {} ORDER BY Payment_Date__c, Name")

# The fields compared record by record: (Salesforce field, kind of mismatch).
INVOICE_FIELDS = (("Status__c", "status"), ("Payment_Status__c", "status"), ("Total__c", "amount"),
                  ("Balance__c", "amount"), ("CurrencyIsoCode", "status"))
PAYMENT_FIELDS = (("Status__c", "status"), ("Amount__c", "amount"), ("CurrencyIsoCode", "status"))


class ReconcileError(Exception):
    """The comparison cannot run (bad period); the message is one line for people."""


def parse_period(text: str) -> tuple[date, date]:
    """``"2026-11"`` → ``[2026-11-01, 2026-12-01)``; raises ``ReconcileError``."""
    parts = text.strip().split("-")
    if len(parts) != 2 or len(parts[0]) != 4 or len(parts[1]) != 2 or not all(p.isdigit() for p in parts) \
            or not 1 <= int(parts[1]) <= 12 or int(parts[0]) < 1900:
        raise ReconcileError(f"{text!r} is not a month; use YYYY-MM, for example 2026-11")
    year, month = int(parts[0]), int(parts[1])
    starts_on = date(year, month, 1)
    ends_before = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    return starts_on, ends_before


# ---------------------------------------------------------------- the report


@dataclass(frozen=True)
class Side:
    """One record as one side sees it: the compared fields, as strings or exact decimals."""

    object_name: str  # "invoice" | "payment"
    external_id: str
    label: str  # invoice number / payment reference, for people
    currency: str
    status: str
    amount: Decimal  # total (invoice) or amount (payment): what the per-status sums add
    fields: dict[str, Any]


@dataclass(frozen=True)
class Mismatch:
    object_name: str
    external_id: str
    label: str
    kind: str  # missing_in_salesforce | missing_in_engine | amount | status
    field: str = ""
    engine_value: Any = None
    salesforce_value: Any = None

    def describe(self) -> str:
        what = f"{self.object_name} {self.label}"
        if self.label != self.external_id:
            what += f" (billsync id {self.external_id})"
        if self.kind == "missing_in_salesforce":
            return f"{what}: missing in Salesforce"
        if self.kind == "missing_in_engine":
            return f"{what}: in Salesforce but not in billsync"
        return (f"{what}: {self.kind} differs on {self.field}: billsync {_show(self.engine_value)}, "
                f"Salesforce {_show(self.salesforce_value)}")


def _show(value: Any) -> str:
    return "empty" if value is None or value == "" else str(value)


@dataclass
class StatusTotal:
    object_name: str
    currency: str
    status: str
    engine_count: int = 0
    engine_sum: Decimal = ZERO
    salesforce_count: int = 0
    salesforce_sum: Decimal = ZERO

    @property
    def agrees(self) -> bool:
        return self.engine_count == self.salesforce_count and self.engine_sum == self.salesforce_sum


@dataclass
class ReconcileReport:
    period: str
    starts_on: date
    ends_before: date
    totals: list[StatusTotal] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)
    engine_records: int = 0
    salesforce_records: int = 0

    @property
    def agrees(self) -> bool:
        return not self.mismatches and all(t.agrees for t in self.totals)


# ---------------------------------------------------------------- reading both sides


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, Decimal) else Decimal(str(value))


def engine_invoices(session: Session, starts_on: date, ends_before: date, today: date, keys: Keys) -> list[Side]:
    out = []
    for inv in exports.invoices_issued_between(session, starts_on, ends_before, today):
        out.append(Side("invoice", keys.invoice(inv.invoice_id), inv.number or f"DRAFT-{inv.invoice_id}",
                        inv.currency, inv.status, inv.total,
                        {"Status__c": inv.status, "Payment_Status__c": inv.payment_status, "Total__c": inv.total,
                         "Balance__c": inv.balance, "CurrencyIsoCode": inv.currency}))
    return out


def engine_payments(session: Session, starts_on: date, ends_before: date, keys: Keys) -> list[Side]:
    out = []
    for p in exports.payments_received_between(session, starts_on, ends_before):
        out.append(Side("payment", keys.payment(p.payment_id), p.external_reference or str(p.payment_id),
                        p.currency, p.status, p.amount,
                        {"Status__c": p.status, "Amount__c": p.amount, "Unapplied_Amount__c": p.unapplied_amount,
                         "CurrencyIsoCode": p.currency}))
    return out


def salesforce_invoices(client: Any, starts_on: date, ends_before: date) -> list[Side]:
    out = []
    for rec in client.query_all(build_soql(INVOICE_SOQL, starts_on, ends_before)):
        ext = rec.get("Billsync_Invoice_Id__c") or ""
        total = _decimal(rec.get("Total__c")) or ZERO
        out.append(Side("invoice", ext or rec["Id"], rec.get("Name") or rec["Id"], rec.get("CurrencyIsoCode") or "",
                        rec.get("Status__c") or "", total,
                        {"Status__c": rec.get("Status__c"), "Payment_Status__c": rec.get("Payment_Status__c"),
                         "Total__c": _decimal(rec.get("Total__c")), "Balance__c": _decimal(rec.get("Balance__c")),
                         "CurrencyIsoCode": rec.get("CurrencyIsoCode")}))
    return out


def salesforce_payments(client: Any, starts_on: date, ends_before: date) -> list[Side]:
    out = []
    for rec in client.query_all(build_soql(PAYMENT_SOQL, starts_on, ends_before)):
        ext = rec.get("Billsync_Payment_Id__c") or ""
        out.append(Side("payment", ext or rec["Id"], rec.get("Name") or rec["Id"], rec.get("CurrencyIsoCode") or "",
                        rec.get("Status__c") or "", _decimal(rec.get("Amount__c")) or ZERO,
                        {"Status__c": rec.get("Status__c"), "Amount__c": _decimal(rec.get("Amount__c")),
                         "Unapplied_Amount__c": _decimal(rec.get("Unapplied_Amount__c")),
                         "CurrencyIsoCode": rec.get("CurrencyIsoCode")}))
    return out


# ---------------------------------------------------------------- comparing


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Decimal) or isinstance(b, Decimal):
        return (a if a is not None else ZERO) == (b if b is not None else ZERO)
    return (a or "") == (b or "")


def compare(engine: Iterable[Side], salesforce: Iterable[Side],
            fields: tuple[tuple[str, str], ...]) -> tuple[list[StatusTotal], list[Mismatch]]:
    """Per (object, currency, status) counts and sums, and every record-level mismatch (pure)."""
    totals: dict[tuple[str, str, str], StatusTotal] = {}

    def total(side: Side) -> StatusTotal:
        key = (side.object_name, side.currency, side.status)
        if key not in totals:
            totals[key] = StatusTotal(*key)
        return totals[key]

    mismatches: list[Mismatch] = []
    sf_by_id: dict[str, Side] = {}
    for rec in salesforce:
        t = total(rec)
        t.salesforce_count += 1
        t.salesforce_sum += rec.amount
        sf_by_id[rec.external_id] = rec
    seen: set[str] = set()
    for rec in engine:
        t = total(rec)
        t.engine_count += 1
        t.engine_sum += rec.amount
        seen.add(rec.external_id)
        other = sf_by_id.get(rec.external_id)
        if other is None:
            mismatches.append(Mismatch(rec.object_name, rec.external_id, rec.label, "missing_in_salesforce"))
            continue
        for name, kind in fields:
            if not _same(rec.fields.get(name), other.fields.get(name)):
                mismatches.append(Mismatch(rec.object_name, rec.external_id, rec.label, kind, name,
                                           rec.fields.get(name), other.fields.get(name)))
    for ext, rec in sf_by_id.items():
        if ext not in seen:
            mismatches.append(Mismatch(rec.object_name, rec.external_id, rec.label, "missing_in_engine"))
    ordered = sorted(totals.values(), key=lambda t: (t.object_name, t.currency, t.status))
    return ordered, mismatches


def reconcile_period(services: Services, period: str, *, today: date | None = None) -> ReconcileReport:
    """Compare the engine and Salesforce for one month (``YYYY-MM``); read-only.

    ``today`` (default: today in BILLSYNC_TIMEZONE) decides which unpaid invoices are overdue.
    """
    from connector.billing_jobs import today_in

    starts_on, ends_before = parse_period(period)
    today = today or today_in(services.settings.billsync_timezone)
    keys = keys_of(services.engine)
    with Session(services.engine) as session:
        e_invoices = engine_invoices(session, starts_on, ends_before, today, keys)
        e_payments = engine_payments(session, starts_on, ends_before, keys)
    client = services.salesforce()
    s_invoices = salesforce_invoices(client, starts_on, ends_before)
    s_payments = salesforce_payments(client, starts_on, ends_before)
    report = ReconcileReport(f"{starts_on:%Y-%m}", starts_on, ends_before,
                             engine_records=len(e_invoices) + len(e_payments),
                             salesforce_records=len(s_invoices) + len(s_payments))
    for engine_side, sf_side, fields in ((e_invoices, s_invoices, INVOICE_FIELDS),
                                         (e_payments, s_payments, PAYMENT_FIELDS)):
        totals, mismatches = compare(engine_side, sf_side, fields)
        report.totals.extend(totals)
        report.mismatches.extend(mismatches)
    return report


# ---------------------------------------------------------------- repairing


@dataclass
class RepairResult:
    requeued: list[str] = field(default_factory=list)  # "invoice INV-2026-000001"
    not_repairable: list[Mismatch] = field(default_factory=list)


def requeue_drift(services: Services, report: ReconcileReport, *, now: datetime | None = None) -> RepairResult:
    """Put the outbox rows of every drifted engine record back to pending (one transaction).

    The rows are replayed in their original order, so Salesforce ends with the engine's
    current state. A record only Salesforce has is left for a person.
    """
    now = now or datetime.now(UTC)
    result = RepairResult()
    drifted: dict[tuple[str, str], str] = {}
    for m in report.mismatches:
        if m.kind == "missing_in_engine":
            result.not_repairable.append(m)
        else:
            drifted.setdefault((m.object_name, m.external_id), m.label)
    if not drifted:
        return result
    keys = keys_of(services.engine)
    engine_ids = {(kind, ext): keys.engine_id(kind, ext) for kind, ext in drifted}
    records = sorted((kind, engine_id) for (kind, _), engine_id in engine_ids.items() if engine_id is not None)
    with transaction(services.engine) as session:
        missing = set(exports.requeue_exports(session, records, now=now)) if records else set()
    for (object_name, external_id) in sorted(drifted):
        label = drifted[(object_name, external_id)]
        if engine_ids[(object_name, external_id)] is None \
                or (object_name, engine_ids[(object_name, external_id)]) in missing:
            result.not_repairable.append(Mismatch(object_name, external_id, label, "no_outbox_row"))
        else:
            result.requeued.append(f"{object_name} {label}")
    return result


