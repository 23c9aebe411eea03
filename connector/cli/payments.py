"""``billsync payments record|refund|show``: payments received and refunds, as finance enters them.

Thin calls of ``billing_engine.use_cases.payments`` (the API's payment routes call the same).
A payment is recorded once per (source, reference): recording the same reference again prints
the first result and changes nothing; without ``--reference`` every call is a new payment.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

import click

from connector.cli.invoices import business_day, check_day, parse_amount
from connector.cli.output import amount, echo_json, echo_table, money, text
from connector.cli.support import UserError, load_services, reported_as

#: ``--allocate INV-2026-000001=100.00``.
ALLOCATION = re.compile(r"\s*([^=\s]+)\s*=\s*(\S+)\s*")
#: Where a payment typed by hand (or sent to the API without a source) comes from.
MANUAL_SOURCE = "manual"
#: Largest payment id (an INTEGER column).
PAYMENT_ID_MAX = 2**31 - 1


@click.group()
def payments() -> None:
    """Payments received and refunds; collections: SEPA mandates and direct debits, bank statements,
    dunning, late charges."""


@payments.command("record")
@click.option("--customer", required=True, metavar="ID", help="The customer who paid.")
@click.option("--amount", "amount_text", required=True, metavar="AMOUNT", help="The amount received (179.99).")
@click.option("--currency", required=True, metavar="CODE", help="Its currency (EUR, USD, JPY, ...).")
@click.option("--received-on", required=True, metavar="YYYY-MM-DD", help="The day it was received.")
@click.option("--reference", metavar="TEXT",
              help="The bank or processor reference; the same reference is recorded once.")
@click.option("--method", default="bank_transfer", show_default=True, help="How it was paid.")
@click.option("--source", default=MANUAL_SOURCE, show_default=True,
              help="Where the reference comes from (a reference is unique per source).")
@click.option("--allocate", "allocations", multiple=True, metavar="INVOICE=AMOUNT",
              help="Apply AMOUNT to INVOICE (number or id); repeat. Without it: the oldest open invoices first.")
@click.option("--json", "as_json", is_flag=True, help="Print the payment as JSON.")
def record(customer: str, amount_text: str, currency: str, received_on: str, reference: str | None, method: str,
           source: str, allocations: tuple[str, ...], as_json: bool) -> None:
    """Record a payment: applied to the invoices given, else to the oldest open invoices in its
    currency; what is left becomes the customer's credit."""
    problems: list[str] = []
    value, problem = parse_amount("--amount", amount_text)
    if problem:
        problems.append(problem)
    day = check_day("--received-on", received_on, problems)
    pairs: list[tuple[str, Decimal]] = []
    for raw in allocations:
        match = ALLOCATION.fullmatch(raw)
        if not match:
            problems.append(f"--allocate: {raw!r} is not INVOICE=AMOUNT, for example INV-2026-000001=100.00")
            continue
        share, problem = parse_amount(f"--allocate {match.group(1)}", match.group(2))
        if problem:
            problems.append(problem)
        else:
            assert share is not None
            pairs.append((match.group(1), share))
    if reference is not None and not reference.strip():
        problems.append("--reference: is empty; leave it out to record a new payment each time")
    if problems:
        raise UserError(problems)
    assert day is not None
    services = load_services()
    from billing_engine.use_cases.invoices import find_invoice_id
    from billing_engine.use_cases.payments import get_payment, record_payment
    from connector.database import transaction

    with reported_as("payment not recorded"), transaction(services.engine) as session:
        named = [(find_invoice_id(session, key), share) for key, share in pairs]
        result = record_payment(session, customer_id=customer, amount=value, currency=currency, received_on=day,
                                method=method, source=source, external_reference=reference,
                                allocations=named or None, now=datetime.now(UTC))
        payment = get_payment(session, result.payment_id)
    if as_json:
        echo_json({"created": result.created, "payment": payment})
        return
    if not result.created:
        click.echo(f"payment {payment.payment_id} was already recorded with reference {payment.reference}; "
                   "nothing changed")
    else:
        click.echo(f"payment {payment.payment_id} recorded: {money(payment.amount)} from {payment.customer_id} "
                   f"received {payment.received_on}, {_reference(payment)}")
    _print_where_it_went(payment)


def _reference(payment) -> str:
    return f"reference {payment.reference}" if payment.reference else "no reference"


def _print_where_it_went(payment) -> None:
    for a in payment.allocations:
        click.echo(f"  applied {amount(a.amount)} to invoice {a.number or a.invoice_id}")
    if payment.unapplied.amount:
        click.echo(f"  {amount(payment.unapplied)} to the customer's credit")


@payments.command("refund")
@click.argument("payment_id", metavar="PAYMENT", type=click.IntRange(1, PAYMENT_ID_MAX))
@click.option("--amount", "amount_text", required=True, metavar="AMOUNT", help="The amount paid back.")
@click.option("--reason", required=True, help="Why (kept with the refund).")
@click.option("--on", metavar="YYYY-MM-DD", help="The day of the refund (default: today in BILLSYNC_TIMEZONE).")
def refund(payment_id: int, amount_text: str, reason: str, on: str | None) -> None:
    """Refund (part of) a payment: first out of the credit it left, then reopening the invoices it paid."""
    problems: list[str] = []
    value, problem = parse_amount("--amount", amount_text)
    if problem:
        problems.append(problem)
    check_day("--on", on, problems)
    if not reason.strip():
        problems.append("--reason: say why the payment is refunded")
    if problems:
        raise UserError(problems)
    services = load_services()
    day = business_day(services, on)
    from billing_engine.use_cases.payments import get_payment, refund_payment
    from connector.database import transaction

    with reported_as(f"payment {payment_id} not refunded"), transaction(services.engine) as session:
        done = refund_payment(session, payment_id, amount=value, refunded_on=day, reason=reason,
                              now=datetime.now(UTC))
        payment = get_payment(session, payment_id)
    [made] = [r for r in payment.refunds if r.refund_id == done.refund_id]
    click.echo(f"refund {made.refund_id} of payment {payment_id}: {money(made.amount)} on {day}")
    if made.from_credit.amount:
        click.echo(f"  {amount(made.from_credit)} taken back from the customer's credit")
    for a in made.reopened:
        click.echo(f"  {amount(a.amount)} back on the balance of invoice {a.number or a.invoice_id}")
    click.echo(f"  still refundable: {money(payment.refundable)}")


@payments.command("show")
@click.argument("payment_id", metavar="PAYMENT", type=click.IntRange(1, PAYMENT_ID_MAX))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def show(payment_id: int, as_json: bool) -> None:
    """One payment: where it went (invoices, credit) and its refunds."""
    services = load_services()
    from sqlmodel import Session

    from billing_engine.use_cases.payments import get_payment

    with reported_as(), Session(services.engine) as session:
        payment = get_payment(session, payment_id)
    if as_json:
        echo_json(payment)
        return
    origin = f"{payment.source} reference {payment.reference}" if payment.reference else \
        f"from {payment.source}, no reference"
    click.echo(f"payment {payment.payment_id}: {money(payment.amount)} from {payment.customer_id} received "
               f"{payment.received_on} ({payment.method}), {origin}")
    _print_where_it_went(payment)
    if payment.refunds:
        echo_table(("refund", "on", "amount", "from credit", "reason"),
                   [(str(r.refund_id), text(r.refunded_on), amount(r.amount), amount(r.from_credit), r.reason)
                    for r in payment.refunds], right=("amount", "from credit"), indent="  ")
    click.echo(f"  refunded {amount(payment.refunded)}, still refundable {amount(payment.refundable)}")
