"""``billsync invoices list|show|finalize|anomalies|release|void|mark-uncollectible|credit``: finance's
invoice actions.

Each command is a thin call of the engine use case the API calls too
(``billing_engine.use_cases.invoices`` to read, ``billing_engine.use_cases.billing`` to change).
An invoice is named by its number (``INV-2026-000001``) or its id (a draft has no number yet).
Payment statuses are as of today in BILLSYNC_TIMEZONE; changes are dated today unless ``--on``.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

import click

from connector.cli.billing import parse_day
from connector.cli.output import amount, echo_json, echo_table, money, text
from connector.cli.support import UserError, load_services, reported_as

STATUSES = ("draft", "open", "paid", "void", "uncollectible")
#: ``--line 2`` or ``--line 2=10.00``.
LINE = re.compile(r"\s*(\d{1,6})\s*(?:=\s*(\S+)\s*)?")


def parse_amount(option: str, raw: str) -> tuple[Decimal | None, str | None]:
    """A decimal amount as typed (``179.99``) → (Decimal, None) or (None, the problem as one line).
    Its sign and decimals are the engine's to check, against the currency."""
    try:
        value = Decimal(raw.strip())
    except InvalidOperation:
        return None, f"{option}: {raw!r} is not an amount; write it like 179.99"
    if not value.is_finite():
        return None, f"{option}: {raw!r} is not an amount; write it like 179.99"
    return value, None


def business_day(services, on: str | None, option: str = "--on") -> date:
    """``--on`` when given (checked), else today in BILLSYNC_TIMEZONE."""
    if on is None:
        from connector.billing_jobs import today_in

        return today_in(services.settings.billsync_timezone)
    day, problem = parse_day(option, on)
    if problem:
        raise UserError(problem)
    assert day is not None
    return day


def check_day(option: str, raw: str | None, problems: list[str]) -> date | None:
    if raw is None:
        return None
    day, problem = parse_day(option, raw)
    if problem:
        problems.append(problem)
    return day


@click.group()
def invoices() -> None:
    """Invoices: list, show, finalize a held draft, review anomalies, void, write off, credit."""


@invoices.command("list")
@click.option("--status", "statuses", multiple=True, type=click.Choice(STATUSES), help="Repeat for several.")
@click.option("--customer", metavar="ID", help="Only this customer's invoices.")
@click.option("--currency", metavar="CODE", help="Only invoices in this currency (EUR, USD, ...).")
@click.option("--issued-from", metavar="YYYY-MM-DD", help="Issued on or after this day.")
@click.option("--issued-to", metavar="YYYY-MM-DD", help="Issued on or before this day.")
@click.option("--number", metavar="PREFIX", help="Numbers starting with this (INV-2026-0001).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000), help="Invoices per page.")
@click.option("--after", metavar="CURSOR", help="Start after this cursor (printed at the end of a page).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_invoices(statuses: tuple[str, ...], customer: str | None, currency: str | None, issued_from: str | None,
                  issued_to: str | None, number: str | None, limit: int, after: str | None, as_json: bool) -> None:
    """Invoices, drafts first, then the newest issued. A full page ends with the command for the next."""
    from datetime import timedelta

    from billing_engine.errors import InvalidInputError
    from billing_engine.use_cases.invoices import InvoiceCursor, InvoiceFilters

    problems: list[str] = []
    start = check_day("--issued-from", issued_from, problems)
    end = check_day("--issued-to", issued_to, problems)
    cursor = None
    if after is not None:
        try:
            cursor = InvoiceCursor.parse(after, "--after")
        except InvalidInputError as exc:
            problems.append(str(exc))
    if start and end and end < start:
        problems.append(f"--issued-to: {end} is before --issued-from {start}")
    if problems:
        raise UserError(problems)
    filters = InvoiceFilters(statuses=statuses, customer_id=customer, currency=currency, issued_from=start,
                             issued_before=end + timedelta(days=1) if end else None, number=number)
    services = load_services()
    from sqlmodel import Session

    from billing_engine.use_cases.invoices import list_invoices as list_page

    today = business_day(services, None)
    with reported_as("invoices list"), Session(services.engine) as session:
        page = list_page(session, as_of=today, filters=filters, after=cursor, limit=limit)
    if as_json:
        echo_json({"items": page.items, "next": page.next.token() if page.next else None})
        return
    if not page.items:
        click.echo("no invoices")
        return
    echo_table(("number", "id", "customer", "status", "payment", "issued", "due", "total", "amount due", "cur"),
               [(text(i.number), str(i.invoice_id), i.customer_id, i.status, text(i.payment_status),
                 text(i.issued_on), text(i.due_on), amount(i.total), amount(i.amount_due), i.currency)
                for i in page.items], right=("total", "amount due"))
    if page.next is not None:
        click.echo(f"more: add --after {page.next.token()}")


@invoices.command("show")
@click.argument("key", metavar="NUMBER_OR_ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def show(key: str, as_json: bool) -> None:
    """One invoice: lines with how each was computed, tax, payments, refunds, credit notes."""
    services = load_services()
    from sqlmodel import Session

    from billing_engine.use_cases.invoices import find_invoice_id, get_invoice

    today = business_day(services, None)
    with reported_as(), Session(services.engine) as session:
        inv = get_invoice(session, find_invoice_id(session, key), as_of=today)
    if as_json:
        echo_json(inv)
        return
    cur = inv.currency
    click.echo(f"invoice {inv.number or '(draft, no number yet)'}  id {inv.invoice_id}  {inv.status}"
               f"{f' ({inv.payment_status})' if inv.payment_status else ''}")
    click.echo(f"customer {inv.customer_id} {inv.customer_name}".rstrip())
    click.echo(f"issued {text(inv.issued_on)}  due {text(inv.due_on)}  currency {cur}"
               f"{f'  salesforce {inv.salesforce_id}' if inv.salesforce_id else ''}")
    click.echo("")
    echo_table(("#", "description", "period", "qty", "unit price", "gross", "discount", "net", "tax %", "credited"),
               [(str(ln.position), ln.description, f"{ln.starts_on} to {ln.ends_before}", text(ln.quantity),
                 amount(ln.unit_price), amount(ln.gross), amount(ln.discount), amount(ln.net), text(ln.tax_percent),
                 amount(ln.credited) if ln.credited.amount else "")
                for ln in inv.lines],
               right=("qty", "unit price", "gross", "discount", "net", "tax %", "credited"))
    for ln in inv.lines:
        if ln.explanation:
            click.echo(f"  {ln.position}: {ln.explanation}")
    click.echo("")
    for tax in inv.taxes:
        click.echo(f"tax {tax.percent} % on {amount(tax.net)}: {amount(tax.tax)}")
    if inv.tax_reason:
        click.echo(f"tax note: {inv.tax_reason}")
    for label, value in (("subtotal", inv.subtotal), ("discount", inv.discount), ("net", inv.net), ("tax", inv.tax),
                         ("total", inv.total), ("paid", inv.amount_paid), ("refunded", inv.amount_refunded),
                         ("credited", inv.amount_credited), ("amount due", inv.amount_due)):
        if value.amount or label in ("total", "amount due"):
            click.echo(f"{label:>10}  {amount(value)} {cur}")
    if inv.payments:
        click.echo("")
        echo_table(("payment", "reference", "method", "received", "applied"),
                   [(str(p.payment_id), p.reference, p.method, text(p.received_on), amount(p.amount))
                    for p in inv.payments], right=("applied",))
    if inv.refunds:
        click.echo("")
        echo_table(("refund", "payment", "refunded", "reopened", "reason"),
                   [(str(r.refund_id), str(r.payment_id), text(r.refunded_on), amount(r.amount), r.reason)
                    for r in inv.refunds], right=("reopened",))
    for finding in inv.anomalies:
        state = (f"released {text(finding.released_at)}: {finding.release_note}" if finding.released_at
                 else "held for review" if inv.status == "draft" else "flagged")
        click.echo(f"anomaly {finding.kind} (score {finding.score}, {state}): {finding.reason}")
    for note in inv.credit_notes:
        click.echo("")
        click.echo(f"credit note {note.number}  issued {note.issued_on}  total {amount(note.total)} {cur} "
                   f"(net {amount(note.net)} + tax {amount(note.tax)}): {note.reason}")
        click.echo(f"  settled on this invoice {amount(note.applied_to_invoice)}, "
                   f"to the customer's credit {amount(note.to_credit_balance)}")
        for line in note.lines:
            where = f"line {line.line_position}" if line.line_position else "invoice"
            click.echo(f"  {where}: {line.description} {amount(line.net)} at {line.tax_percent} %")


@invoices.command("finalize")
@click.argument("key", metavar="NUMBER_OR_ID")
@click.option("--on", metavar="YYYY-MM-DD", help="Issue date (default: today in BILLSYNC_TIMEZONE).")
def finalize(key: str, on: str | None) -> None:
    """Finalize a draft (one held for review): customer credit applied, numbered, dated, sent on."""
    services = load_services()
    day = business_day(services, on)
    from billing_engine.use_cases.billing import finalize_invoice
    from billing_engine.use_cases.invoices import find_invoice_id, get_invoice
    from connector.database import transaction

    with reported_as(f"invoice {key} not finalized"), transaction(services.engine) as session:
        invoice_id = find_invoice_id(session, key)
        done = finalize_invoice(session, invoice_id, issued_on=day, now=datetime.now(UTC))
        inv = get_invoice(session, invoice_id, as_of=day)
    credit = f", customer credit applied {amount(inv.amount_credited)}" if inv.amount_credited.amount else ""
    click.echo(f"invoice {invoice_id} finalized as {done.number} on {day}: total {money(inv.total)}{credit}, "
               f"amount due {money(inv.amount_due)} ({inv.status})")


@invoices.command("anomalies")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000), help="Invoices per page.")
@click.option("--after", metavar="ID", type=click.IntRange(0), help="Start after this invoice id.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def anomalies(limit: int, after: int | None, as_json: bool) -> None:
    """Drafts the bill run held for anomalies, with the reasons: release them or void them."""
    services = load_services()
    from sqlmodel import Session

    from billing_engine.use_cases.anomalies import list_held_invoices

    with reported_as("anomalies list"), Session(services.engine) as session:
        held = list_held_invoices(session, after=after, limit=limit)
    if as_json:
        echo_json(held)
        return
    if not held:
        click.echo("no invoice held for anomalies")
        return
    for inv in held:
        name = f" {inv.customer_name}" if inv.customer_name else ""
        click.echo(f"invoice {inv.invoice_id}  customer {inv.customer_id}{name}  bill run {text(inv.bill_run_on)}  "
                   f"total {money(inv.total)}")
        for finding in inv.anomalies:
            click.echo(f"  {finding.kind} (score {finding.score}): {finding.reason}")
    click.echo("release one: billsync invoices release ID --note '...'; void one: billsync invoices void ID "
               "--reason '...'")
    if len(held) == limit:
        click.echo(f"more: add --after {held[-1].invoice_id}")


@invoices.command("release")
@click.argument("key", metavar="ID")
@click.option("--note", required=True, help="Why it is right after all (kept with the reasons it was held for).")
@click.option("--on", metavar="YYYY-MM-DD", help="Issue date (default: today in BILLSYNC_TIMEZONE).")
def release(key: str, note: str, on: str | None) -> None:
    """Release a draft held for anomalies: the note is kept with its reasons, and it is finalized (numbered,
    dated, sent on to Salesforce)."""
    if not note.strip():
        raise UserError("--note: say why the invoice is released (what was checked)")
    services = load_services()
    day = business_day(services, on)
    from billing_engine.use_cases.anomalies import release_invoice
    from billing_engine.use_cases.invoices import find_invoice_id, get_invoice
    from connector.database import transaction

    with reported_as(f"invoice {key} not released"), transaction(services.engine) as session:
        invoice_id = find_invoice_id(session, key)
        done = release_invoice(session, invoice_id, note=note, on=day, now=datetime.now(UTC))
        inv = get_invoice(session, invoice_id, as_of=day)
    click.echo(f"invoice {invoice_id} released and finalized as {done.number} on {day}: total {money(inv.total)}, "
               f"amount due {money(inv.amount_due)} ({inv.status})")


@invoices.command("void")
@click.argument("key", metavar="NUMBER_OR_ID")
@click.option("--reason", required=True, help="Why (printed on the credit note that reverses it).")
@click.option("--on", metavar="YYYY-MM-DD", help="Date of the void (default: today in BILLSYNC_TIMEZONE).")
def void(key: str, reason: str, on: str | None) -> None:
    """Void an invoice with no payment on it; a finalized one is reversed by a credit note."""
    if not reason.strip():
        raise UserError("--reason: say why the invoice is voided")
    services = load_services()
    day = business_day(services, on)
    from billing_engine.use_cases.billing import void_invoice
    from billing_engine.use_cases.invoices import find_invoice_id, get_credit_note
    from connector.database import transaction

    with reported_as(f"invoice {key} not voided"), transaction(services.engine) as session:
        note_id = void_invoice(session, find_invoice_id(session, key), on=day, reason=reason, now=datetime.now(UTC))
        note = get_credit_note(session, note_id) if note_id is not None else None
    if note is None:
        click.echo(f"invoice {key} voided on {day} (a draft: no credit note)")
    else:
        click.echo(f"invoice {key} voided on {day}: credit note {note.number} of {money(note.total)}")


@invoices.command("mark-uncollectible")
@click.argument("key", metavar="NUMBER_OR_ID")
@click.option("--on", metavar="YYYY-MM-DD", help="Date of the write-off (default: today in BILLSYNC_TIMEZONE).")
def mark_uncollectible(key: str, on: str | None) -> None:
    """Write an open invoice off as uncollectible (it can still be paid later)."""
    services = load_services()
    day = business_day(services, on)
    from billing_engine.use_cases.billing import mark_uncollectible as write_off
    from billing_engine.use_cases.invoices import find_invoice_id
    from connector.database import transaction

    with reported_as(f"invoice {key} not written off"), transaction(services.engine) as session:
        write_off(session, find_invoice_id(session, key), on=day, now=datetime.now(UTC))
    click.echo(f"invoice {key} marked uncollectible on {day}")


@invoices.command("credit")
@click.argument("key", metavar="NUMBER_OR_ID")
@click.option("--line", "lines", multiple=True, metavar="N[=AMOUNT]",
              help="Credit line N (as 'invoices show' numbers them), whole or AMOUNT of its net; repeat.")
@click.option("--amount", "amount_text", metavar="AMOUNT", help="Credit this net amount of the invoice.")
@click.option("--reason", required=True, help="Why (printed on the credit note).")
@click.option("--on", metavar="YYYY-MM-DD", help="Issue date (default: today in BILLSYNC_TIMEZONE).")
def credit(key: str, lines: tuple[str, ...], amount_text: str | None, reason: str, on: str | None) -> None:
    """Issue a credit note: on given lines, for an amount, or (neither) for all that is left.

    Amounts are nets before tax; tax is added at the invoice's rate. The credit settles the
    invoice's balance first; the rest becomes the customer's credit.
    """
    problems: list[str] = []
    wanted: list[tuple[int, Decimal | None]] = []
    for raw in lines:
        match = LINE.fullmatch(raw)
        if not match:
            problems.append(f"--line: {raw!r} is not a line; write N or N=AMOUNT, for example 2 or 2=10.00")
            continue
        position = int(match.group(1))
        value: Decimal | None = None
        if match.group(2) is not None:
            value, problem = parse_amount(f"--line {position}", match.group(2))
            if problem:
                problems.append(problem)
        if any(position == known for known, _ in wanted):
            problems.append(f"--line: line {position} is given twice")
        wanted.append((position, value))
    value_total = None
    if amount_text is not None:
        value_total, problem = parse_amount("--amount", amount_text)
        if problem:
            problems.append(problem)
        if lines:
            problems.append("--amount: give --line or --amount, not both")
    if not reason.strip():
        problems.append("--reason: say why the invoice is credited")
    if problems:
        raise UserError(problems)
    services = load_services()
    day = business_day(services, on)
    from billing_engine.use_cases.billing import credit_invoice
    from billing_engine.use_cases.invoices import find_invoice_id, get_credit_note
    from connector.database import transaction

    with reported_as(f"invoice {key} not credited"), transaction(services.engine) as session:
        note_id = credit_invoice(session, find_invoice_id(session, key), reason=reason, on=day,
                                 lines=wanted or None, amount=value_total, now=datetime.now(UTC))
        note = get_credit_note(session, note_id)
    click.echo(f"credit note {note.number} on invoice {key}: net {amount(note.net)} + tax {amount(note.tax)} = {money(note.total)}; "
               f"{amount(note.applied_to_invoice)} settles the invoice, {amount(note.to_credit_balance)} "
               "to the customer's credit")
