"""Reconciliation: do the engine and Salesforce agree on a month's records and on every Account summary?

``reconcile_period(services, "2026-11")`` reads, for the month:

- the engine's finalized invoices issued in it (``issued_on``), its payments received in it
  (``received_on``), its credit notes issued in it and its refunds made in it;
- Salesforce's ``Invoice__c`` by ``Issue_Date__c``, ``Payment__c`` by ``Payment_Date__c``,
  ``Credit_Note__c`` by ``Issue_Date__c`` and ``Refund__c`` by ``Refund_Date__c`` in the month
  (SOQL through the client; every value escaped);
- and, whatever the month, every customer's Account summary as of today (MRR, ARR, balance,
  billing status: ``exports.account_summaries_of_accounts``) against the Accounts billsync writes
  (``Billsync_Customer_Id__c`` set), matched by the Account's Id.

It compares them per currency and status (count and sum: the total of invoices and credit notes,
the amount of payments and refunds, the MRR of Accounts) and record by record, keyed by the
external ids the push writes (``Billsync_Invoice_Id__c``, ``Billsync_Payment_Id__c``,
``Billsync_Credit_Note_Id__c``, ``Billsync_Refund_Id__c``: this installation's keys,
``connector.sync.installation.Keys``; a record keyed by another installation is one billsync
does not hold): missing in Salesforce, missing in the engine, an amount different (``Total__c``,
``Balance__c``, ``Amount_Paid__c``, ``Amount_Credited__c``; ``Amount__c``; ``Net__c``, ``Tax__c``,
``Applied_To_Invoice__c``; ``MRR__c``, ``ARR__c``, ``Balance__c``), a status different
(``Status__c``, ``Payment_Status__c``, ``Billing_Status__c``) or a payment's name. Amounts are exact
decimals, compared to the cent. Credit notes and refunds are left out when their mapping is
switched off (an empty ``credit_note.yaml`` or ``refund.yaml``): billsync does not push them.

``requeue_drift(services, report)`` (``billsync reconcile --repair``) puts the outbox rows
of every drifted engine record back to pending (and announces a drifted Account summary again),
so the next push writes it again (the push upserts by external id, so replaying is safe). A
record that exists only in Salesforce cannot be fixed by a push: it is reported for a person to
look at.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import select as columns
from sqlmodel import Session

from billing_engine.use_cases import exports
from connector.database import READ_ONLY, transaction
from connector.queue import utc
from connector.salesforce.soql import build_soql
from connector.sync.installation import Keys, keys_of
from connector.sync.records import payment_name, refund_name
from connector.sync.tables import ReconcileRun
from mappings import load_specs

if TYPE_CHECKING:
    from connector.wiring import Services

ZERO = Decimal(0)

INVOICE_SOQL = ("SELECT Id, Name, Billsync_Invoice_Id__c, Status__c, Payment_Status__c, Total__c, Amount_Paid__c, "
                "Amount_Credited__c, Balance__c, CurrencyIsoCode, Issue_Date__c FROM Invoice__c "
                "WHERE Issue_Date__c >= {} AND Issue_Date__c < {} ORDER BY Issue_Date__c, Name")
PAYMENT_SOQL = ("SELECT Id, Name, Billsync_Payment_Id__c, Status__c, Amount__c, Unapplied_Amount__c, "
                "CurrencyIsoCode, Payment_Date__c FROM Payment__c "
                "WHERE Payment_Date__c >= {} AND Payment_Date__c < {} ORDER BY Payment_Date__c, Name")
CREDIT_NOTE_SOQL = ("SELECT Id, Name, Billsync_Credit_Note_Id__c, Status__c, Net__c, Tax__c, Total__c, "
                    "Applied_To_Invoice__c, CurrencyIsoCode, Issue_Date__c FROM Credit_Note__c "
                    "WHERE Issue_Date__c >= {} AND Issue_Date__c < {} ORDER BY Issue_Date__c, Name")
REFUND_SOQL = ("SELECT Id, Name, Billsync_Refund_Id__c, Amount__c, CurrencyIsoCode, Refund_Date__c FROM Refund__c "
               "WHERE Refund_Date__c >= {} AND Refund_Date__c < {} ORDER BY Refund_Date__c, Name")
ACCOUNT_SOQL = ("SELECT Id, Name, Billsync_Customer_Id__c, MRR__c, ARR__c, Balance__c, Billing_Status__c, "
                "CurrencyIsoCode FROM Account WHERE Billsync_Customer_Id__c != null ORDER BY Id")

# The fields compared record by record: (Salesforce field, kind of mismatch).
INVOICE_FIELDS = (("Status__c", "status"), ("Payment_Status__c", "status"), ("Total__c", "amount"),
                  ("Amount_Paid__c", "amount"), ("Amount_Credited__c", "amount"), ("Balance__c", "amount"),
                  ("CurrencyIsoCode", "status"))
PAYMENT_FIELDS = (("Status__c", "status"), ("Amount__c", "amount"), ("CurrencyIsoCode", "status"),
                  ("Name", "name"))
CREDIT_NOTE_FIELDS = (("Status__c", "status"), ("Net__c", "amount"), ("Tax__c", "amount"), ("Total__c", "amount"),
                      ("Applied_To_Invoice__c", "amount"), ("CurrencyIsoCode", "status"))
REFUND_FIELDS = (("Amount__c", "amount"), ("CurrencyIsoCode", "status"))
ACCOUNT_FIELDS = (("Billing_Status__c", "status"), ("MRR__c", "amount"), ("ARR__c", "amount"),
                  ("Balance__c", "amount"))
#: The status every refund is counted under in the totals.
REFUNDED = "refunded"


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

    object_name: str  # "invoice" | "payment" | "credit_note" | "refund" | "account"
    external_id: str  # an account's: its customer id
    label: str  # invoice or credit note number, payment or refund name, customer id: for people
    currency: str
    status: str
    amount: Decimal  # what the per-status sums add: total, amount, or an Account's MRR
    fields: dict[str, Any]


@dataclass(frozen=True)
class Mismatch:
    object_name: str
    external_id: str
    label: str
    kind: str  # missing_in_salesforce | missing_in_engine | amount | status | name
    field: str = ""
    engine_value: Any = None
    salesforce_value: Any = None

    def describe(self) -> str:
        what = f"{self.object_name.replace('_', ' ')} {self.label}"
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
    accounts_as_of: date | None = None  # the day the Account summaries were compared as of
    not_compared: list[str] = field(default_factory=list)  # what was left out, and why

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
        name = payment_name(p.payment_id, p.received_on, p.external_reference)
        out.append(Side("payment", keys.payment(p.payment_id), name, p.currency, p.status, p.amount,
                        {"Status__c": p.status, "Amount__c": p.amount, "Unapplied_Amount__c": p.unapplied_amount,
                         "CurrencyIsoCode": p.currency, "Name": name}))
    return out


def engine_credit_notes(session: Session, starts_on: date, ends_before: date, keys: Keys) -> list[Side]:
    return [Side("credit_note", keys.credit_note(cn.credit_note_id), cn.number, cn.currency, cn.status, cn.total,
                 {"Status__c": cn.status, "Net__c": cn.net, "Tax__c": cn.tax, "Total__c": cn.total,
                  "Applied_To_Invoice__c": cn.applied_to_invoice, "CurrencyIsoCode": cn.currency})
            for cn in exports.credit_notes_issued_between(session, starts_on, ends_before)]


def engine_refunds(session: Session, starts_on: date, ends_before: date, keys: Keys) -> list[Side]:
    return [Side("refund", keys.refund(r.refund_id), refund_name(r.refund_id, r.refunded_on), r.currency, REFUNDED,
                 r.amount, {"Amount__c": r.amount, "CurrencyIsoCode": r.currency})
            for r in exports.refunds_made_between(session, starts_on, ends_before)]


def engine_accounts(session: Session, today: date) -> tuple[list[Side], dict[str, str]]:
    """Every customer's Account summary as of ``today``, and customer id by Account Id (15 characters)."""
    out, customers = [], {}
    for summary in exports.account_summaries_of_accounts(session, today):
        account = str(summary.salesforce_account_id)
        customers[account[:15]] = summary.customer_id
        out.append(Side("account", summary.customer_id, summary.customer_id, summary.currency,
                        summary.billing_status, summary.mrr,
                        {"Billing_Status__c": summary.billing_status, "MRR__c": summary.mrr, "ARR__c": summary.arr,
                         "Balance__c": summary.balance}))
    return out, customers


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
                         "CurrencyIsoCode": rec.get("CurrencyIsoCode"), "Name": rec.get("Name")}))
    return out


def salesforce_credit_notes(client: Any, starts_on: date, ends_before: date) -> list[Side]:
    out = []
    for rec in client.query_all(build_soql(CREDIT_NOTE_SOQL, starts_on, ends_before)):
        ext = rec.get("Billsync_Credit_Note_Id__c") or ""
        out.append(Side("credit_note", ext or rec["Id"], rec.get("Name") or rec["Id"],
                        rec.get("CurrencyIsoCode") or "", rec.get("Status__c") or "",
                        _decimal(rec.get("Total__c")) or ZERO,
                        {"Status__c": rec.get("Status__c"), "Net__c": _decimal(rec.get("Net__c")),
                         "Tax__c": _decimal(rec.get("Tax__c")), "Total__c": _decimal(rec.get("Total__c")),
                         "Applied_To_Invoice__c": _decimal(rec.get("Applied_To_Invoice__c")),
                         "CurrencyIsoCode": rec.get("CurrencyIsoCode")}))
    return out


def salesforce_refunds(client: Any, starts_on: date, ends_before: date) -> list[Side]:
    out = []
    for rec in client.query_all(build_soql(REFUND_SOQL, starts_on, ends_before)):
        ext = rec.get("Billsync_Refund_Id__c") or ""
        out.append(Side("refund", ext or rec["Id"], rec.get("Name") or rec["Id"], rec.get("CurrencyIsoCode") or "",
                        REFUNDED, _decimal(rec.get("Amount__c")) or ZERO,
                        {"Amount__c": _decimal(rec.get("Amount__c")), "CurrencyIsoCode": rec.get("CurrencyIsoCode")}))
    return out


def salesforce_accounts(client: Any, customers: dict[str, str]) -> list[Side]:
    """The Accounts billsync writes; one whose Id is not a customer's keeps its Account Id as key."""
    out = []
    for rec in client.query_all(ACCOUNT_SOQL):
        customer = customers.get(str(rec["Id"])[:15])
        status = rec.get("Billing_Status__c") or ""
        out.append(Side("account", customer or rec["Id"], customer or rec.get("Name") or rec["Id"],
                        rec.get("CurrencyIsoCode") or "", status, _decimal(rec.get("MRR__c")) or ZERO,
                        {"Billing_Status__c": rec.get("Billing_Status__c"), "MRR__c": _decimal(rec.get("MRR__c")),
                         "ARR__c": _decimal(rec.get("ARR__c")), "Balance__c": _decimal(rec.get("Balance__c"))}))
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


def reconcile_period(services: Services, period: str, *, today: date | None = None,
                     keys: Keys | None = None) -> ReconcileReport:
    """Compare the engine and Salesforce for one month (``YYYY-MM``), and every Account summary; read-only
    (but for this installation's id, created on first use when ``keys`` are not given).

    ``today`` (default: today in BILLSYNC_TIMEZONE) decides which unpaid invoices are overdue, and
    the day the Account summaries are compared as of.
    """
    from connector.billing_jobs import today_in

    starts_on, ends_before = parse_period(period)
    today = today or today_in(services.settings.billsync_timezone)
    keys = keys or keys_of(services.engine)
    specs = load_specs(services.settings.mappings_dir)
    pushed = {source: bool(specs.outbound_for(source)) for source in ("credit_note", "refund")}
    report = ReconcileReport(f"{starts_on:%Y-%m}", starts_on, ends_before, accounts_as_of=today)
    for source, what in (("credit_note", "credit notes"), ("refund", "refunds")):
        if not pushed[source]:
            report.not_compared.append(f"{what}: not pushed to Salesforce (the {source} mapping is switched off)")
    # Reads only: on SQLite it never waits for the write lock (an API request may hold it).
    with Session(services.engine.execution_options(**{READ_ONLY: True})) as session:
        engine_sides = {
            "invoice": engine_invoices(session, starts_on, ends_before, today, keys),
            "payment": engine_payments(session, starts_on, ends_before, keys),
            "credit_note": engine_credit_notes(session, starts_on, ends_before, keys) if pushed["credit_note"] else [],
            "refund": engine_refunds(session, starts_on, ends_before, keys) if pushed["refund"] else [],
        }
        engine_sides["account"], customers = engine_accounts(session, today)
    client = services.salesforce()
    salesforce_sides = {
        "invoice": salesforce_invoices(client, starts_on, ends_before),
        "payment": salesforce_payments(client, starts_on, ends_before),
        "credit_note": salesforce_credit_notes(client, starts_on, ends_before) if pushed["credit_note"] else [],
        "refund": salesforce_refunds(client, starts_on, ends_before) if pushed["refund"] else [],
        "account": salesforce_accounts(client, customers),
    }
    fields = {"invoice": INVOICE_FIELDS, "payment": PAYMENT_FIELDS, "credit_note": CREDIT_NOTE_FIELDS,
              "refund": REFUND_FIELDS, "account": ACCOUNT_FIELDS}
    for name in ("invoice", "payment", "credit_note", "refund", "account"):
        report.engine_records += len(engine_sides[name])
        report.salesforce_records += len(salesforce_sides[name])
        totals, mismatches = compare(engine_sides[name], salesforce_sides[name], fields[name])
        report.totals.extend(totals)
        report.mismatches.extend(mismatches)
    return report


# ---------------------------------------------------------------- repairing


@dataclass
class RepairResult:
    requeued: list[str] = field(default_factory=list)  # "invoice INV-2026-000001"
    not_repairable: list[Mismatch] = field(default_factory=list)


def requeue_drift(services: Services, report: ReconcileReport, *, now: datetime | None = None,
                  session: Session | None = None, keys: Keys | None = None) -> RepairResult:
    """Put the outbox rows of every drifted engine record back to pending (one transaction: the
    caller's ``session`` when given, which the caller commits; ``keys``: the installation's, read
    when not given).

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
    keys = keys or keys_of(services.engine)
    engine_ids: dict[tuple[str, str], int | str | None] = {
        (kind, ext): ext if kind == "account" else keys.engine_id(kind, ext) for kind, ext in drifted}
    records = sorted((("customer" if kind == "account" else kind), engine_id)
                     for (kind, _), engine_id in engine_ids.items() if engine_id is not None)
    if session is not None:
        missing = set(exports.requeue_exports(session, records, now=now)) if records else set()
    else:
        with transaction(services.engine) as own:
            missing = set(exports.requeue_exports(own, records, now=now)) if records else set()
    for (object_name, external_id) in sorted(drifted):
        label = drifted[(object_name, external_id)]
        if engine_ids[(object_name, external_id)] is None \
                or (object_name, engine_ids[(object_name, external_id)]) in missing:
            result.not_repairable.append(Mismatch(object_name, external_id, label, "no_outbox_row"))
        else:
            result.requeued.append(f"{object_name.replace('_', ' ')} {label}")
    return result




# ---------------------------------------------------------------- runs kept for the API


@dataclass(frozen=True)
class SavedRun:
    """A reconciliation as it was when it ran: who asked, when, and its full result."""

    id: int
    period: str
    requested_at: datetime
    requested_by: str
    agrees: bool
    result: dict[str, Any]  # result_of(report, repair)


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def result_of(report: ReconcileReport, repair: RepairResult | None = None) -> dict[str, Any]:
    """The report as plain JSON values: exact decimals as strings, dates ISO."""
    return {
        "period": report.period, "starts_on": report.starts_on.isoformat(),
        "ends_before": report.ends_before.isoformat(),
        "accounts_as_of": report.accounts_as_of.isoformat() if report.accounts_as_of else None,
        "agrees": report.agrees, "engine_records": report.engine_records,
        "salesforce_records": report.salesforce_records, "not_compared": list(report.not_compared),
        "totals": [{"object": t.object_name, "currency": t.currency, "status": t.status,
                    "engine_count": t.engine_count, "engine_sum": format(t.engine_sum, "f"),
                    "salesforce_count": t.salesforce_count, "salesforce_sum": format(t.salesforce_sum, "f"),
                    "agrees": t.agrees} for t in report.totals],
        "mismatches": [{"object": m.object_name, "external_id": m.external_id, "label": m.label, "kind": m.kind,
                        "field": m.field or None, "engine_value": _text(m.engine_value),
                        "salesforce_value": _text(m.salesforce_value), "description": m.describe()}
                       for m in report.mismatches],
        "repair": None if repair is None else {
            "requeued": list(repair.requeued),
            "not_repairable": [{"object": m.object_name, "label": m.label,
                                "reason": ("exists only in Salesforce: a person must decide"
                                           if m.kind == "missing_in_engine" else "has no outbox row to replay")}
                               for m in repair.not_repairable]},
    }


def save_run(session: Session, report: ReconcileReport, *, requested_by: str, requested_at: datetime,
             repair: RepairResult | None = None) -> SavedRun:
    """Keep a reconciliation's result (the caller commits)."""
    result = result_of(report, repair)
    row = ReconcileRun(period=report.period, requested_at=requested_at, requested_by=requested_by,
                       agrees=report.agrees, engine_records=report.engine_records,
                       salesforce_records=report.salesforce_records, mismatches=len(report.mismatches),
                       result_json=json.dumps(result, separators=(",", ":")))
    session.add(row)
    session.flush()
    assert row.id is not None
    return SavedRun(row.id, row.period, requested_at, requested_by, row.agrees, result)


def _saved(row: ReconcileRun) -> SavedRun:
    assert row.id is not None
    return SavedRun(row.id, row.period, utc(row.requested_at) or row.requested_at, row.requested_by, row.agrees,
                    json.loads(row.result_json))


def find_run(session: Session, run_id: int) -> SavedRun | None:
    row = session.get(ReconcileRun, run_id)
    return _saved(row) if row is not None else None


@dataclass(frozen=True)
class RunSummary:
    id: int
    period: str
    requested_at: datetime
    requested_by: str
    agrees: bool
    mismatches: int


def list_runs(session: Session, *, limit: int, before_id: int | None = None,
              period: str | None = None) -> list[RunSummary]:
    """Saved reconciliations, newest first (``before_id``: the last id of the previous page)."""
    t = ReconcileRun.__table__  # type: ignore[attr-defined]  # set on every table class
    query = columns(t.c.id, t.c.period, t.c.requested_at, t.c.requested_by, t.c.agrees, t.c.mismatches)
    if before_id is not None:
        query = query.where(t.c.id < before_id)
    if period is not None:
        query = query.where(t.c.period == period)
    rows = session.execute(query.order_by(t.c.id.desc()).limit(limit)).all()
    return [RunSummary(r.id, r.period, utc(r.requested_at) or r.requested_at, r.requested_by, r.agrees, r.mismatches)
            for r in rows]
