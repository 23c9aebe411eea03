"""``billsync payments ...``: getting paid (docs/payments.md).

| command | what |
|---|---|
| ``payments collections --as-of D`` | the clock's daily collections job: direct debits due booked, unpaid invoices past due marked overdue |
| ``payments sepa-export --collect-on D [--output FILE]`` | the pain.008 file of every due invoice with an active mandate |
| ``payments sepa-return END_TO_END_ID --reason CODE`` | a direct debit came back: its invoice reopens with the reason |
| ``payments mandate add|list|revoke`` | SEPA mandates |
| ``payments import-statement FILE`` | a camt.053 or CSV bank statement: payments matched, returns, the rest left to finance |
| ``payments unmatched`` / ``match ENTRY`` / ``set-aside ENTRY`` | statement entries finance matches by hand |
| ``payments dunning --as-of D [--dry-run]`` | the clock's daily dunning job: the reminders due |
| ``payments dunning-profile CUSTOMER`` | where a customer's reminders go, their language, pause or resume |
| ``payments late-charges INVOICE`` | the late-payment interest and fixed indemnity of an overdue invoice |

The commands are plain ``click`` commands collected in ``COLLECTION_COMMANDS``;
``add_collection_commands(group)`` adds them to the ``payments`` group of ``connector.cli.payments``
(``record``, ``refund``, ``show``), so one group holds every payment command.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import click

from connector.cli.billing import parse_day
from connector.cli.support import UserError, load_services, reported_as


def _day(option: str, raw: str) -> date:
    on, problem = parse_day(option, raw)
    if problem:
        raise UserError(problem)
    return on


def _today(services) -> date:
    from connector.billing_jobs import today_in

    return today_in(services.settings.billsync_timezone)


@click.command("collections")
@click.option("--as-of", "as_of", required=True, metavar="YYYY-MM-DD", help="The business date (usually today).")
def collections(as_of: str) -> None:
    """Run the daily collections job for a date: book the direct debits whose collection date has
    come, and mark overdue the open invoices whose due date has passed unpaid (their Accounts
    become past_due). Running it twice changes nothing the second time."""
    on = _day("--as-of", as_of)
    services = load_services()
    from connector.collection_jobs import run_collections

    with reported_as(f"collections as of {on}"):
        report = run_collections(services, on)
    for line in report.lines():
        click.echo(line)
    for invoice in report.overdue.invoices:
        click.echo(f"overdue: {invoice.number} ({invoice.customer_id}), due {invoice.due_on}, "
                   f"{invoice.balance} {invoice.currency}")


@click.command("sepa-export")
@click.option("--collect-on", "collect_on", required=True, metavar="YYYY-MM-DD",
              help="The requested collection date (today or later).")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Where to write the pain.008 file (default: <message id>.xml here).")
def sepa_export(collect_on: str, output: Path | None) -> None:
    """Write the SEPA direct-debit file (pain.008) of every open invoice due by the collection date
    whose customer has an active mandate, and mark those invoices as being collected.

    An invoice is in one export only: a second export the same day adds nothing. The file
    is validated against the pain.008 XSD; it appears only once the export is recorded.
    """
    on = _day("--collect-on", collect_on)
    if output is not None and output.exists():
        raise UserError(f"--output: {output} already exists; choose a new file")
    services = load_services()
    from connector.collection_jobs import export_sepa
    from connector.sepa import SepaFileError, creditor_problems

    problems = creditor_problems(services.settings)
    if problems:
        raise UserError(problems)
    if on < _today(services):
        raise UserError(f"--collect-on: {on} is before today ({_today(services)}); a collection date is today "
                        "or later")
    with reported_as("sepa export"):
        try:
            report = export_sepa(services, on, output)
        except SepaFileError as exc:
            raise UserError(str(exc)) from None
    for line in report.lines():
        click.echo(line)


@click.command("sepa-return")
@click.argument("end_to_end_id")
@click.option("--reason", required=True, metavar="CODE", help="The ISO 20022 reason code (AM04, AC04, MD06...).")
@click.option("--on", "returned_on", metavar="YYYY-MM-DD", help="The day it came back (default: today).")
def sepa_return(end_to_end_id: str, reason: str, returned_on: str | None) -> None:
    """Record that a direct debit came back (returned, rejected or refunded to the debtor): its
    payment is refunded, the invoice reopens with the reason, and a reason that ends the mandate
    (closed account, no mandate, refusal...) revokes it. Bank statements record returns by
    themselves (billsync payments import-statement)."""
    services = load_services()
    on = _day("--on", returned_on) if returned_on else _today(services)
    from billing_engine.use_cases.direct_debits import return_direct_debit
    from connector.database import transaction

    with reported_as(f"direct debit {end_to_end_id}"), transaction(services.engine) as session:
        result = return_direct_debit(session, end_to_end_id, reason=reason, returned_on=on,
                                     now=datetime.now(UTC))
    click.echo(f"direct debit {end_to_end_id} returned ({result.reason}): invoice {end_to_end_id} is open again"
               + ("; its mandate is revoked" if result.mandate_revoked else ""))


@click.group("mandate")
def mandate() -> None:
    """SEPA direct-debit mandates."""


@mandate.command("add")
@click.option("--customer", required=True, metavar="ID", help="The customer (billed in EUR).")
@click.option("--reference", required=True, metavar="RUM", help="The mandate reference (RUM), as signed.")
@click.option("--signed-on", required=True, metavar="YYYY-MM-DD", help="The day the debtor signed it.")
@click.option("--iban", required=True, help="The debtor's IBAN (spaces allowed).")
@click.option("--bic", help="The debtor bank's BIC (optional).")
@click.option("--holder", metavar="NAME", help="The account holder (default: the customer's name).")
@click.option("--sequence", type=click.Choice(["FRST", "RCUR"]), default="FRST", show_default=True,
              help="FRST for a new mandate; RCUR for one already used by another system.")
def mandate_add(customer: str, reference: str, signed_on: str, iban: str, bic: str | None, holder: str | None,
                sequence: str) -> None:
    """Record a signed SEPA mandate: the customer's invoices are then collected by direct debit."""
    signed = _day("--signed-on", signed_on)
    services = load_services()
    from billing_engine.use_cases.direct_debits import create_mandate
    from connector.database import transaction

    with reported_as("mandate"), transaction(services.engine) as session:
        view = create_mandate(session, customer, reference=reference, signed_on=signed, iban=iban, bic=bic,
                              account_holder=holder, sequence_type=sequence, today=_today(services),
                              now=datetime.now(UTC))
    click.echo(f"mandate {view.mandate_id} {view.reference}: customer {view.customer_id}, {view.iban}, "
               f"signed {view.signed_on}, {view.sequence_type}, active")


@mandate.command("list")
@click.option("--customer", metavar="ID", help="Only this customer's mandates.")
def mandate_list(customer: str | None) -> None:
    """The mandates, with their status."""
    services = load_services()
    from sqlmodel import Session

    from billing_engine.use_cases.direct_debits import list_mandates

    with reported_as(), Session(services.engine) as session:
        views = list_mandates(session, customer_id=customer, limit=100_000)
    if not views:
        click.echo("no mandate")
    for v in views:
        status = v.status if v.status == "active" else f"revoked on {v.revoked_on}: {v.revoked_reason}"
        click.echo(f"{v.mandate_id}  {v.reference}  {v.customer_id}  {v.iban}  signed {v.signed_on}  "
                   f"{v.sequence_type}  {status}")


@mandate.command("revoke")
@click.argument("mandate_id", type=int)
@click.option("--reason", default="revoked by the customer", show_default=True, help="Why it ends.")
def mandate_revoke(mandate_id: int, reason: str) -> None:
    """End a mandate: no new direct debit uses it."""
    services = load_services()
    from billing_engine.use_cases.direct_debits import revoke_mandate
    from connector.database import transaction

    with reported_as(f"mandate {mandate_id}"), transaction(services.engine) as session:
        view = revoke_mandate(session, mandate_id, on=_today(services), reason=reason)
    click.echo(f"mandate {view.mandate_id} {view.reference} revoked on {view.revoked_on}")


def _show_candidates(entry) -> None:
    for c in entry.candidates:
        click.echo(f"    candidate {c.number or c.invoice_id} (id {c.invoice_id}, {c.customer_id}): balance "
                   f"{c.balance} {c.currency}, due {c.due_on}: {c.why}")
    if not entry.candidates:
        click.echo("    no candidate invoice")


def _show_entry(entry) -> None:
    payer = " ".join(p for p in (entry.counterparty_name, entry.counterparty_iban) if p) or "unknown payer"
    click.echo(f"#{entry.entry_id}  {entry.booked_on}  {entry.direction} {entry.amount} {entry.currency}  {payer}  "
               f"{entry.remittance!r}: {entry.note}")


@click.command("import-statement")
@click.argument("path", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
def import_statement(path: Path) -> None:
    """Record a bank statement (camt.053 XML, or CSV with the columns of docs/payments.md): each credit
    becomes a payment of the invoices it names, else of the payer's open invoice of that amount,
    else it waits for finance with its candidate invoices; direct-debit returns reopen their
    invoices. A file with any problem records nothing (one line per problem); importing the same
    statement again records nothing new."""
    services = load_services()
    from sqlmodel import Session

    from billing_engine.use_cases.bank_statements import list_bank_entries
    from connector.bank_statements import StatementError
    from connector.collection_jobs import import_statement as run_import

    with reported_as(f"{path}"):
        try:
            result = run_import(services, path)
        except StatementError as exc:
            raise UserError([f"{path}: {line}" for line in exc.problems]) from None
    counts = {status: result.count(status) for status in ("matched", "returned", "recorded", "unmatched",
                                                          "duplicate", "skipped")}
    click.echo(f"{path}: {len(result.outcomes)} entries: {counts['matched']} payments matched, {counts['returned']} "
               f"direct debits returned, {counts['recorded']} already booked, {counts['unmatched']} left to match, "
               f"{counts['duplicate']} imported before, {counts['skipped']} other debits skipped")
    for outcome in result.outcomes:
        if outcome.status in ("matched", "returned"):
            click.echo(f"{outcome.status}: {outcome.entry_key}: {', '.join(outcome.invoices)} ({outcome.customer_id}): "
                       f"{outcome.note}")
    unmatched = {o.entry_key for o in result.outcomes if o.status == "unmatched"}
    if unmatched:
        click.echo("left to match (billsync payments match ENTRY --invoice NUMBER):")
        with Session(services.engine) as session:
            for entry in list_bank_entries(session, status="unmatched", limit=100_000):
                if entry.entry_key in unmatched:
                    _show_entry(entry)
                    _show_candidates(entry)


@click.command("unmatched")
def unmatched() -> None:
    """The statement entries left for finance to match, with their candidate invoices."""
    services = load_services()
    from sqlmodel import Session

    from billing_engine.use_cases.bank_statements import list_bank_entries

    with reported_as(), Session(services.engine) as session:
        entries = list_bank_entries(session, status="unmatched", limit=100_000)
    if not entries:
        click.echo("no statement entry left to match")
    for entry in entries:
        _show_entry(entry)
        _show_candidates(entry)


@click.command("match")
@click.argument("entry_id", type=click.IntRange(1, 2**31 - 1))
@click.option("--invoice", "invoices", multiple=True, metavar="NUMBER",
              help="An invoice it pays (number, e.g. INV-2026-000123); repeat, in the order to pay them.")
@click.option("--customer", metavar="ID", help="The customer who paid (its oldest open invoices first).")
def match(entry_id: int, invoices: tuple[str, ...], customer: str | None) -> None:
    """Match a statement credit by hand: it is recorded as a payment of these invoices (or of the
    customer's oldest open ones), the rest becoming credit; the payer's account is remembered."""
    if not invoices and not customer:
        raise UserError("--invoice or --customer: say what the credit pays")
    services = load_services()
    from billing_engine.use_cases.bank_statements import match_bank_entry
    from connector.database import transaction

    with reported_as(f"entry {entry_id}"), transaction(services.engine) as session:
        entry = match_bank_entry(session, entry_id, invoice_numbers=list(invoices), customer_id=customer,
                                 now=datetime.now(UTC))
    click.echo(f"entry {entry_id}: payment {entry.payment_id} recorded for {entry.customer_id}: {entry.note}")


@click.command("set-aside")
@click.argument("entry_id", type=click.IntRange(1, 2**31 - 1))
@click.option("--reason", required=True, help="Why it is not a customer's payment.")
def set_aside(entry_id: int, reason: str) -> None:
    """Set an unmatched statement entry aside (not a customer's payment); nothing is recorded."""
    services = load_services()
    from billing_engine.use_cases.bank_statements import ignore_bank_entry
    from connector.database import transaction

    with reported_as(f"entry {entry_id}"), transaction(services.engine) as session:
        entry = ignore_bank_entry(session, entry_id, reason=reason, now=datetime.now(UTC))
    click.echo(f"entry {entry_id}: {entry.note}")


@click.command("dunning")
@click.option("--as-of", "as_of", required=True, metavar="YYYY-MM-DD", help="The business date (usually today).")
@click.option("--dry-run", is_flag=True, help="List the reminders due; send and record nothing.")
def dunning(as_of: str, dry_run: bool) -> None:
    """Run the daily dunning job for a date: send the reminders DUNNING_SCHEDULE calls for (one step
    per invoice and run, in the customer's language), each recorded on its invoice and shown in
    Salesforce. Paid invoices, paused customers and invoices being collected get none."""
    on = _day("--as-of", as_of)
    services = load_services()
    from connector.collection_jobs import run_dunning

    with reported_as(f"dunning as of {on}"):
        report = run_dunning(services, on, dry_run=dry_run)
    for line in report.lines():
        click.echo(line)
    if dry_run:
        for n in report.plan.notices:
            click.echo(f"would send: {n.step} for {n.number} ({n.customer_id}, {n.days_late} days late, "
                       f"{n.balance} {n.currency}) to {n.email or '(no e-mail address)'} in {n.language}")
    for r in report.sent:
        click.echo(f"sent: {r.step} for {r.invoice_number} ({r.customer_id}) to {r.email} in {r.language}")


@click.command("dunning-profile")
@click.argument("customer_id")
@click.option("--email", help="Where the customer's reminders go ('none' clears it).")
@click.option("--language", type=click.Choice(["en", "fr", "auto"]),
              help="The reminders' language; auto: French for a French-speaking billing country, else English.")
@click.option("--pause", "pause", flag_value="pause", default=None, help="Stop sending reminders to this customer.")
@click.option("--resume", "pause", flag_value="resume", help="Send its reminders again.")
@click.option("--reason", help="Why dunning is paused (with --pause).")
def dunning_profile(customer_id: str, email: str | None, language: str | None, pause: str | None,
                    reason: str | None) -> None:
    """Show, or change, where a customer's reminders go, in which language, and whether its dunning is
    paused (a dispute, a payment plan agreed with finance...)."""
    if reason and pause != "pause":
        raise UserError("--reason: goes with --pause")
    services = load_services()
    from billing_engine.use_cases.collections import get_collection_profile, set_collection_profile
    from connector.database import transaction

    changes: dict = {}
    if email is not None:
        changes["email"] = None if email.strip().lower() == "none" else email
    if language is not None:
        changes["language"] = None if language == "auto" else language
    with reported_as(f"customer {customer_id}"), transaction(services.engine) as session:
        if changes or pause:
            view = set_collection_profile(session, customer_id, paused=None if pause is None else pause == "pause",
                                          reason=reason, now=datetime.now(UTC), **changes)
        else:
            view = get_collection_profile(session, customer_id)
    state = f"paused ({view.paused_reason})" if view.dunning_paused and view.paused_reason else         "paused" if view.dunning_paused else "active"
    click.echo(f"customer {view.customer_id}: reminders to {view.email or '(no e-mail address)'}, in "
               f"{view.language}{'' if view.language_chosen else ' (from the billing country)'}, dunning {state}")


@click.command("late-charges")
@click.argument("invoice")
@click.option("--as-of", "as_of", metavar="YYYY-MM-DD", help="The day they are computed for (default: today).")
@click.option("--rate", metavar="PERCENT", help="Yearly interest rate in percent (default: LATE_INTEREST_RATE).")
def late_charges(invoice: str, as_of: str | None, rate: str | None) -> None:
    """The late-payment interest and the fixed recovery indemnity an overdue invoice (number or id)
    owes on a date: computed only; finance decides whether to invoice them."""
    from decimal import Decimal, InvalidOperation

    services = load_services()
    on = _day("--as-of", as_of) if as_of else _today(services)
    percent = services.settings.late_interest_rate
    if rate is not None:
        try:
            percent = Decimal(rate.strip())
        except InvalidOperation:
            raise UserError(f"--rate: {rate!r} is not a percentage such as 12.15") from None
    if percent is None:
        raise UserError("--rate: no rate given and LATE_INTEREST_RATE is not set (France: the ECB refinancing "
                        "rate + 10 points unless your terms say otherwise)")
    from sqlmodel import Session

    from billing_engine.use_cases.collections import invoice_id_of, invoice_late_charges

    with reported_as(f"invoice {invoice}"), Session(services.engine) as session:
        charges = invoice_late_charges(session, invoice_id_of(session, invoice), as_of=on, annual_rate_percent=percent,
                                       indemnity_eur=services.settings.late_payment_indemnity)
    click.echo(f"invoice {invoice} on {on}: balance {charges.balance} {charges.currency}, due {charges.due_on}, "
               f"{charges.days_late} days late")
    click.echo(f"interest {charges.interest} {charges.currency} + indemnity {charges.indemnity} {charges.currency} = "
               f"{charges.total} {charges.currency} ({charges.explanation})")


COLLECTION_COMMANDS: tuple[click.Command, ...] = (collections, sepa_export, sepa_return, mandate, import_statement,
                                                  unmatched, match, set_aside, dunning, dunning_profile, late_charges)


def add_collection_commands(group: click.Group) -> None:
    """Add the collection commands to ``group`` (the ``payments`` group)."""
    for command in COLLECTION_COMMANDS:
        group.add_command(command)
