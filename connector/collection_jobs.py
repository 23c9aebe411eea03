"""The collection use cases as the CLI and the clock run them, with the settings applied
(docs/payments.md).

- ``run_collections`` (the clock's daily ``collections`` job, ``billsync payments collections``):
  the direct debits whose collection date has come are booked as paid, then the open invoices
  whose due date has passed unpaid become overdue, with the events that make the push show
  ``overdue`` on ``Invoice__c`` and ``past_due`` on the Account the same day.
- ``export_sepa`` (``billsync payments sepa-export``): the pain.008 file of every due invoice with
  an active mandate, written atomically: the file appears only once the export is recorded.
- ``import_statement`` (``billsync payments import-statement``): a bank statement read, checked
  whole, then recorded in one transaction (payments matched, returns, entries left to finance).
- ``run_dunning`` (the clock's daily ``dunning`` job, ``billsync payments dunning``): the reminders
  of DUNNING_SCHEDULE sent by e-mail (``connector.mail``) and recorded on their invoices.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from billing_engine.use_cases.bank_statements import ImportResult, import_bank_transactions
from billing_engine.use_cases.collections import (
    DunningNotice,
    DunningPlan,
    OverdueResult,
    dunning_due,
    mark_overdue_invoices,
    record_dunning_step,
)
from billing_engine.use_cases.direct_debits import (
    CollectedDebits,
    ExportResult,
    collect_due_debits,
    export_direct_debits,
)
from connector.database import transaction

if TYPE_CHECKING:
    from connector.wiring import Services


@dataclass(frozen=True)
class CollectionsReport:
    as_of: date
    collected: CollectedDebits
    overdue: OverdueResult

    def lines(self) -> list[str]:
        booked = self.collected.booked
        total = sum((amount for _, _, amount in booked), Decimal(0))
        return [f"collections as of {self.as_of}: {len(booked)} direct debits booked as paid ({total} EUR), "
                f"{len(self.overdue.invoices)} invoices became overdue ({len(self.overdue.customers)} customers "
                "past due)"]


def run_collections(services: Services, as_of: date, *, now: datetime | None = None) -> CollectionsReport:
    """Book the direct debits collected by ``as_of``, then mark overdue the open invoices due before
    it (idempotent: a second run books and marks nothing)."""
    with transaction(services.engine) as session:
        collected = collect_due_debits(session, as_of, now=now)
    with transaction(services.engine) as session:
        overdue = mark_overdue_invoices(session, as_of, now=now)
    return CollectionsReport(as_of, collected, overdue)


@dataclass(frozen=True)
class SepaExportReport:
    result: ExportResult
    path: Path | None

    def lines(self) -> list[str]:
        result = self.result
        if result.export_id is None:
            return [f"nothing to collect on {result.collect_on}: no open invoice due by then with an active "
                    "mandate that is not already in a direct debit"]
        return [f"{self.path}: {len(result.lines)} direct debits, {result.total} EUR, collected on "
                f"{result.collect_on} (message {result.message_id})"]


def export_sepa(services: Services, collect_on: date, output: Path | None = None, *,
                now: datetime | None = None) -> SepaExportReport:
    """Export the direct debits due by ``collect_on`` to a pain.008 file (``output``, by default
    ``<message id>.xml`` in the working directory). Raises ``SettingsError`` naming each missing
    creditor setting before anything is read; nothing is recorded when the file cannot be written."""
    from connector.sepa import render_pain008, require_creditor

    settings = services.settings
    require_creditor(settings)
    now = now or datetime.now(UTC)
    part: Path | None = None
    try:
        with transaction(services.engine) as session:
            result = export_direct_debits(session, collect_on, render=lambda plan: render_pain008(plan, settings),
                                          now=now)
            if result.export_id is None:
                return SepaExportReport(result, None)
            path = output or Path(f"{result.message_id}.xml")
            part = path.with_name(f".{path.name}.part")
            part.write_text(result.document or "", encoding="utf-8")
        os.replace(part, path)
        part = None
    finally:
        if part is not None:
            part.unlink(missing_ok=True)
    return SepaExportReport(result, path)


def import_statement(services: Services, path: Path, *, now: datetime | None = None) -> ImportResult:
    """Record a camt.053 or CSV statement (``connector.bank_statements``): every problem in the file
    raises ``StatementError`` before anything is recorded; then one transaction records it all."""
    from connector.bank_statements import read_statement

    transactions = read_statement(path)
    with transaction(services.engine) as session:
        return import_bank_transactions(session, transactions, now=now or datetime.now(UTC))


@dataclass(frozen=True)
class SentReminder:
    invoice_number: str
    customer_id: str
    step: str
    email: str
    language: str
    message_id: str


@dataclass(frozen=True)
class DunningReport:
    as_of: date
    plan: DunningPlan
    sent: tuple[SentReminder, ...] = ()
    no_email: tuple[DunningNotice, ...] = ()  # customers without an e-mail address for reminders
    failed: tuple[tuple[DunningNotice, str], ...] = ()  # not sent: tried again at the next run
    dry_run: bool = False

    def lines(self) -> list[str]:
        if self.dry_run:
            head = f"dunning as of {self.as_of} (dry run, nothing sent): {len(self.plan.notices)} reminders due"
        else:
            head = (f"dunning as of {self.as_of}: {len(self.sent)} reminders sent, {len(self.no_email)} without an "
                    f"e-mail address, {len(self.failed)} failed")
        out = [head + (f"; {len(self.plan.paused)} customers paused" if self.plan.paused else "")]
        for n in self.no_email:
            out.append(f"no e-mail address: customer {n.customer_id} ({n.number}, {n.step}); set one with "
                       f"'billsync payments dunning-profile {n.customer_id} --email ...'")
        for n, reason in self.failed:
            out.append(f"not sent: {n.number} {n.step} to {n.email}: {reason}")
        return out


def run_dunning(services: Services, as_of: date, *, now: datetime | None = None,
                dry_run: bool = False) -> DunningReport:
    """Send the reminders due on ``as_of`` by DUNNING_SCHEDULE, each in its customer's language, with
    the invoice PDF when one exists; each sent reminder is recorded on its invoice (and pushed to
    Salesforce) in its own transaction. A reminder that cannot be sent is not recorded: the next
    run sends the step due then. ``dry_run``: only say what would be sent."""
    from sqlmodel import Session

    from connector.dunning import invoice_document, render, seller_name
    from connector.mail import Attachment, Mailer, MailError

    settings = services.settings
    with Session(services.engine) as session:
        plan = dunning_due(session, as_of, settings.dunning_schedule)
        session.rollback()
    if dry_run:
        return DunningReport(as_of, plan, dry_run=True)
    mailer = Mailer.from_settings(settings)
    seller = seller_name(settings.mail_from)
    sent, no_email, failed = [], [], []
    for notice in plan.notices:
        if not notice.email:
            no_email.append(notice)
            continue
        document = invoice_document(services, notice.invoice_id)
        attachments = (Attachment(f"{notice.number}.pdf", document),) if document else ()
        rendered = render(notice, seller, attached=bool(attachments))
        message = mailer.compose(to=notice.email, subject=rendered.subject, text=rendered.text,
                                 attachments=attachments, now=now, language=notice.language)
        try:
            message_id = mailer.send(message)
        except MailError as exc:
            failed.append((notice, str(exc)))
            continue
        with transaction(services.engine) as session:
            record_dunning_step(session, notice, sent_on=as_of, message_id=message_id, now=now)
        sent.append(SentReminder(notice.number, notice.customer_id, notice.step, notice.email, notice.language,
                                 message_id))
    return DunningReport(as_of, plan, tuple(sent), tuple(no_email), tuple(failed))
