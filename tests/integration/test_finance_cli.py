"""``billsync invoices ...`` and ``billsync payments ...`` through the command line, on a billed database."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal as D

import pytest
from click.testing import CliRunner

from billing_engine.charges import ChargeLine
from billing_engine.use_cases.billing import run_billing
from connector.cli import cli
from tests.support.billing import StaticSource, account, seed_source, snapshot

JAN, FEB, MAR = date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)


def charge(key, amount, *, sub="sub-a", item="seats", starts_on=JAN, ends_before=FEB, description="Seats",
           explanation=""):
    return ChargeLine(key, sub, item, item.upper(), item.title(), "recurring", starts_on, ends_before, D(1),
                      D(amount), D(amount), D(0), "EUR", explanation, description)


@pytest.fixture
def billed(engine, database_url):
    """cus-a (20 %): INV-2026-000001 179.99 (Seats 100.00, Support 49.99), INV-2026-000003 120.00;
    cus-b (10 %): INV-2026-000002 11.00, and a Feb draft of 11.00 held for review."""
    source = StaticSource(
        [account("cus-a"), account("cus-b", "10")],
        {"cus-a": [charge("a:1", "100.00", explanation="Seats 10 × 10.00"),
                   charge("a:2", "49.99", item="support", description="Support"),
                   charge("a:3", "100.00", starts_on=FEB, ends_before=MAR)],
         "cus-b": [charge("b:1", "10.00", sub="sub-b"),
                   charge("b:2", "10.00", sub="sub-b", starts_on=FEB, ends_before=MAR)]})
    seed_source(engine, source)
    run_billing(engine, JAN, source=source)
    source.accounts = [account("cus-a")]
    run_billing(engine, FEB, source=source)
    source.accounts = [account("cus-b", "10")]
    run_billing(engine, FEB, source=source, hold_for_review=True)
    return database_url


def run(database_url, *args):
    result = CliRunner().invoke(cli, list(args), env={"DATABASE_URL": database_url, "LOG_LEVEL": "warning",
                                                      "BILLSYNC_TIMEZONE": "UTC"})
    return result.exit_code, result.output


def draft_id(url):
    code, output = run(url, "invoices", "list", "--status", "draft", "--json")
    assert code == 0, output
    [draft] = json.loads(output)["items"]
    return draft["invoice_id"]


def test_the_list_is_an_aligned_table_and_pages_to_the_end(billed):
    code, output = run(billed, "invoices", "list", "--limit", "2")
    assert code == 0, output
    lines = output.splitlines()
    assert lines[0].split() == ["number", "id", "customer", "status", "payment", "issued", "due", "total",
                                "amount", "due", "cur"]
    assert lines[1].split()[:4] == ["-", "4", "cus-b", "draft"]
    assert lines[2].split()[:4] == ["INV-2026-000003", "3", "cus-a", "open"]
    assert lines[2].endswith("120.00  EUR")
    assert len({line.index("EUR") for line in lines[1:3]}) == 1  # one column, whatever the row
    assert lines[-1] == "more: add --after 2026-02-01.3"
    code, output = run(billed, "invoices", "list", "--limit", "2", "--after", "2026-02-01.3")
    assert [line.split()[0] for line in output.splitlines()[1:]] == ["INV-2026-000002", "INV-2026-000001"]
    assert "more:" not in output


def test_the_list_filters_and_prints_json_with_exact_amounts(billed):
    code, output = run(billed, "invoices", "list", "--customer", "cus-a", "--issued-to", "2026-01-31", "--json")
    assert code == 0, output
    document = json.loads(output)
    assert [(i["number"], i["total"]) for i in document["items"]] == [
        ("INV-2026-000001", {"amount": "179.99", "currency": "EUR"})]
    assert document["next"] is None
    code, output = run(billed, "invoices", "list", "--status", "paid")
    assert (code, output) == (0, "no invoices\n")


def test_bad_list_options_are_one_line_each(billed):
    code, output = run(billed, "invoices", "list", "--issued-from", "2026-13-01", "--after", "page-2")
    assert code == 2
    assert output.splitlines() == [
        "error: --issued-from: '2026-13-01' is not a valid date (month must be in 1..12)",
        "error: --after: 'page-2' is not a cursor of the invoice list"]
    code, output = run(billed, "invoices", "list", "--currency", "euro")
    assert code == 2 and output.splitlines() == [
        "error: invoices list: currency: unknown currency 'euro'; use an ISO 4217 code such as EUR, USD or JPY"]


def test_show_prints_lines_explanations_and_totals(billed):
    code, output = run(billed, "invoices", "show", "INV-2026-000001")
    assert code == 0, output
    assert output.splitlines()[0] == "invoice INV-2026-000001  id 1  open (overdue)"
    assert "  1: Seats 10 × 10.00" in output
    assert "tax 20 % on 149.99: 30.00" in output
    assert "     total  179.99 EUR" in output
    code, output = run(billed, "invoices", "show", "INV-2099-000001")
    assert (code, output) == (2, "error: invoice 'INV-2099-000001' not found\n")


def test_finalize_a_held_draft(billed):
    code, output = run(billed, "invoices", "finalize", str(draft_id(billed)), "--on", "2026-02-03")
    assert code == 0, output
    assert output == ("invoice 4 finalized as INV-2026-000004 on 2026-02-03: total 11.00 EUR, "
                      "amount due 11.00 EUR (open)\n")
    code, output = run(billed, "invoices", "finalize", "4", "--on", "2026-02-03")
    assert code == 2
    assert output == "error: invoice 4 not finalized: invoice 4: cannot go from open to open\n"


def test_void_and_write_off(billed):
    code, output = run(billed, "invoices", "void", "INV-2026-000002", "--reason", "duplicate order",
                       "--on", "2026-01-05")
    assert (code, output) == (0, "invoice INV-2026-000002 voided on 2026-01-05: credit note CN-2026-000001 of "
                                 "11.00 EUR\n")
    code, output = run(billed, "invoices", "void", str(draft_id(billed)), "--reason", "not billable")
    assert code == 0 and "(a draft: no credit note)" in output
    code, output = run(billed, "invoices", "mark-uncollectible", "INV-2026-000003", "--on", "2026-06-01")
    assert (code, output) == (0, "invoice INV-2026-000003 marked uncollectible on 2026-06-01\n")
    code, output = run(billed, "invoices", "void", "INV-2026-000002", "--reason", "again")
    assert code == 2 and output == ("error: invoice INV-2026-000002 not voided: invoice INV-2026-000002: "
                                    "cannot go from void to void\n")


def test_credit_one_line(billed, engine):
    code, output = run(billed, "invoices", "credit", "INV-2026-000001", "--line", "2=10.00",
                       "--reason", "support outage", "--on", "2026-01-12")
    assert code == 0, output
    assert output == ("credit note CN-2026-000001 on invoice INV-2026-000001: net 10.00 + tax 2.00 = 12.00 EUR; "
                      "12.00 settles the invoice, 0.00 to the customer's credit\n")
    code, output = run(billed, "invoices", "show", "INV-2026-000001")
    assert "  line 2: Support 10.00 at 20 %" in output and "amount due  167.99 EUR" in output
    before = snapshot(engine)
    code, output = run(billed, "invoices", "credit", "INV-2026-000001", "--line", "two", "--line", "1=ten",
                       "--amount", "5", "--reason", " ")
    assert code == 2
    assert output.splitlines() == [
        "error: --line: 'two' is not a line; write N or N=AMOUNT, for example 2 or 2=10.00",
        "error: --line 1: 'ten' is not an amount; write it like 179.99",
        "error: --amount: give --line or --amount, not both",
        "error: --reason: say why the invoice is credited"]
    code, output = run(billed, "invoices", "credit", "INV-2026-000001", "--line", "2=40.00", "--reason", "x")
    assert code == 2 and output == ("error: invoice INV-2026-000001 not credited: lines[0].amount: 40.00 is more than "
                                    "is left to credit on line 2 (39.99)\n")
    assert snapshot(engine) == before


def test_a_payment_without_a_reference_is_a_new_payment_each_time(billed):
    args = ("payments", "record", "--customer", "cus-a", "--amount", "5.00", "--currency", "EUR",
            "--received-on", "2026-02-10")
    outputs = [run(billed, *args) for _ in range(2)]
    assert [(code, output.splitlines()[0]) for code, output in outputs] == [
        (0, f"payment {n} recorded: 5.00 EUR from cus-a received 2026-02-10, no reference") for n in (1, 2)]
    code, output = run(billed, "payments", "show", "2")
    assert code == 0 and output.splitlines()[0] == ("payment 2: 5.00 EUR from cus-a received 2026-02-10 "
                                                    "(bank_transfer), from manual, no reference"), output


def test_record_a_payment_by_amounts_then_refund_it(billed):
    code, output = run(billed, "payments", "record", "--customer", "cus-a", "--amount", "200.00", "--currency",
                       "EUR", "--received-on", "2026-02-10", "--reference", "TX-1",
                       "--allocate", "INV-2026-000003=120.00", "--allocate", "1=50.00")
    assert code == 0, output
    assert output.splitlines() == [
        "payment 1 recorded: 200.00 EUR from cus-a received 2026-02-10, reference TX-1",
        "  applied 120.00 to invoice INV-2026-000003",
        "  applied 50.00 to invoice INV-2026-000001",
        "  30.00 to the customer's credit"]
    code, again = run(billed, "payments", "record", "--customer", "cus-a", "--amount", "200.00", "--currency",
                      "EUR", "--received-on", "2026-02-10", "--reference", "TX-1")
    assert code == 0 and again.splitlines()[0] == ("payment 1 was already recorded with reference TX-1; "
                                                   "nothing changed")
    code, output = run(billed, "payments", "refund", "1", "--amount", "40.00", "--reason", "overpaid",
                       "--on", "2026-02-12")
    assert code == 0, output
    assert output.splitlines() == [
        "refund 1 of payment 1: 40.00 EUR on 2026-02-12",
        "  30.00 taken back from the customer's credit",
        "  10.00 back on the balance of invoice INV-2026-000001",
        "  still refundable: 160.00 EUR"]
    code, output = run(billed, "payments", "refund", "1", "--amount", "160.01", "--reason", "too much")
    assert code == 2 and output == ("error: payment 1 not refunded: amount: refund 160.01 is larger than what is "
                                    "left of the payment (160.00)\n")
    code, output = run(billed, "payments", "show", "1", "--json")
    document = json.loads(output)
    assert document["refunded"] == {"amount": "40.00", "currency": "EUR"}
    assert [a["number"] for a in document["allocations"]] == ["INV-2026-000003", "INV-2026-000001"]


def test_a_payment_without_allocations_pays_the_oldest_first_and_overpays_into_credit(billed):
    code, output = run(billed, "payments", "record", "--customer", "cus-a", "--amount", "320.00", "--currency",
                       "EUR", "--received-on", "2026-02-10", "--json")
    assert code == 0, output
    document = json.loads(output)
    assert document["created"] is True
    assert [(a["number"], a["amount"]["amount"]) for a in document["payment"]["allocations"]] == [
        ("INV-2026-000001", "179.99"), ("INV-2026-000003", "120.00")]
    assert document["payment"]["unapplied"] == {"amount": "20.01", "currency": "EUR"}


def test_bad_payments_are_one_line_per_problem_and_record_nothing(billed, engine):
    before = snapshot(engine)
    code, output = run(billed, "payments", "record", "--customer", "cus-a", "--amount", "lots", "--currency",
                       "EUR", "--received-on", "10/02/2026", "--allocate", "INV-2026-000001", "--reference", "")
    assert code == 2
    assert output.splitlines() == [
        "error: --amount: 'lots' is not an amount; write it like 179.99",
        "error: --received-on: '10/02/2026' is not a date; use YYYY-MM-DD, for example 2026-11-24",
        "error: --allocate: 'INV-2026-000001' is not INVOICE=AMOUNT, for example INV-2026-000001=100.00",
        "error: --reference: is empty; leave it out to record a new payment each time"]
    code, output = run(billed, "payments", "record", "--customer", "cus-a", "--amount", "10.00", "--currency",
                       "USD", "--received-on", "2026-02-10")
    assert (code, output) == (2, "error: payment not recorded: currency: currency USD does not match EUR\n")
    code, output = run(billed, "payments", "record", "--customer", "cus-a", "--amount", "10.00", "--currency",
                       "EUR", "--received-on", "2026-02-10", "--allocate", "INV-2026-000002=10.00")
    assert (code, output) == (2, "error: payment not recorded: allocations[0].invoice_id: invoice 2 is not this customer's\n")
    assert snapshot(engine) == before
