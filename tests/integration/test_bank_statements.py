"""Bank statement import: credits matched to invoices and recorded as payments, direct-debit returns,
entries left for finance, and files that record nothing (docs/payments.md)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlmodel import Session, select

from billing_engine.storage.collections import BankEntry, CustomerBankAccount
from billing_engine.storage.invoices import Invoice
from billing_engine.storage.outbox import OutboxRow
from billing_engine.storage.payments import CustomerAccount, Payment
from billing_engine.use_cases.bank_statements import list_bank_entries, match_bank_entry
from billing_engine.use_cases.direct_debits import create_mandate
from connector.bank_statements import StatementError, parse_camt053
from connector.cli import cli
from connector.collection_jobs import export_sepa, import_statement, run_collections
from connector.database import transaction
from connector.settings import load_settings
from connector.wiring import build_services
from tests.support.camt import Entry, Tx, statement
from tests.support.collections import CREDITOR, DUE_ON, SIGNED_ON, add_mandates, iban, invoiced_customers

NOW = datetime(2026, 12, 5, 19, 0, tzinfo=UTC)
#: The ways customers quote an invoice number in a transfer.
FORMS = ("INV-2026-{n:06d}", "inv 2026 {n}", "Payment for invoice INV/2026/{n:06d}, thanks", "inv2026{n:06d}",
         "ACME SAS facture inv-2026-{n:06d} novembre", "INVOICE INV 2026 {n:06d}")
UNKNOWN_IBAN = "BE68539007547034"


@pytest.fixture
def services(database_url):
    built = build_services(load_settings({"DATABASE_URL": database_url, "LOG_LEVEL": "warning", **CREDITOR}))
    yield built
    built.engine.dispose()


def invoices(engine) -> dict[str, Invoice]:
    with Session(engine) as session:
        return {inv.customer_id: inv for inv in session.scalars(select(Invoice))}


def counts(engine) -> tuple[int, int, int, int]:
    with Session(engine) as session:
        return tuple(len(session.scalars(select(model)).all())  # type: ignore[return-value]
                     for model in (Payment, BankEntry, OutboxRow, CustomerBankAccount))


def fifty_credits(services, tmp_path) -> tuple[Path, list[str], dict[str, Invoice]]:
    """52 customers with one invoice each, and a statement of 50 credits and 2 direct-debit returns:

    - c0–c39 pay in full, quoting their invoice number in six different ways;
    - c40 and c41 pay half (partial payments), c42 pays 25.00 too much (overpayment);
    - c43–c47 pay the exact amount without a reference, from the IBAN of their (new) mandate;
    - an unknown payer sends the amount of c51's invoice (left for finance, c51 a candidate);
    - the direct debits of c48–c50, exported and booked on Dec 1, arrive as one batch credit, and
      those of c48 (AM04) and c49 (MD06) come back;
    - plus a bank fee and a pending entry, which are not billsync's business.
    """
    customers = invoiced_customers(services.engine, 52)
    add_mandates(services.engine, customers[48:51], offset=48)
    export = export_sepa(services, DUE_ON, tmp_path / "dd.xml", now=datetime(2026, 11, 28, tzinfo=UTC))
    run_collections(services, DUE_ON, now=datetime(2026, 12, 1, 0, 30, tzinfo=UTC))
    with transaction(services.engine) as session:  # c43–c47 sign mandates later: their accounts are known
        for n in range(43, 48):
            create_mandate(session, customers[n], reference=f"RUM-{customers[n]}", signed_on=SIGNED_ON,
                           iban=iban(n), today=date(2026, 12, 2), now=datetime(2026, 12, 2, tzinfo=UTC))
    before = invoices(services.engine)
    entries = []
    for n in range(40):
        inv = before[customers[n]]
        entries.append(Entry(inv.total, f"CR{n:04d}", details=[Tx(
            name=f"Customer {n}", iban=iban(100 + n), remittance=(FORMS[n % 6].format(n=n + 1),))]))
    for n in (40, 41):
        half = (before[customers[n]].total / 2).quantize(Decimal("0.01"))
        entries.append(Entry(half, f"CR{n:04d}", details=[Tx(name=f"Customer {n}", iban=iban(100 + n),
                                                             creditor_reference=f"INV-2026-{n + 1:06d}")]))
    entries.append(Entry(before[customers[42]].total + Decimal("25.00"), "CR0042", details=[Tx(
        name="Customer 42", iban=iban(142), remittance=("Reglement INV-2026-000043",))]))
    for n in range(43, 48):
        entries.append(Entry(before[customers[n]].total, f"CR{n:04d}", details=[Tx(
            name=f"Customer {n}", iban=iban(n), remittance=("VIREMENT SEPA",))]))
    entries.append(Entry(before[customers[51]].total, "CR0051", details=[Tx(
        name="SOMEONE ELSE", iban=UNKNOWN_IBAN, remittance=("order 7781",))]))
    batch = export.result.lines
    entries.append(Entry(sum((line.amount for line in batch), Decimal(0)), "DD-BATCH", booked_on=DUE_ON, details=[
        Tx(amount=line.amount, end_to_end_id=line.end_to_end_id, batch_id=f"{export.result.message_id}-FRST",
           name=line.debtor_name, iban=line.iban) for line in batch]))
    for n, reason in ((48, "AM04"), (49, "MD06")):
        entries.append(Entry(before[customers[n]].total, f"RT{n:04d}", direction="DBIT", booked_on=date(2026, 12, 4),
                             details=[Tx(end_to_end_id=f"INV-2026-{n + 1:06d}", return_reason=reason,
                                         name=f"Customer {n}", iban=iban(n))]))
    entries.append(Entry(Decimal("12.50"), "FEE-12", direction="DBIT", info="Frais de tenue de compte"))
    entries.append(Entry(Decimal("99.00"), "PDNG-1", status="PDNG", details=[Tx(remittance=("INV-2026-000052",))]))
    assert sum(1 for e in entries if e.direction == "CRDT" and e.status == "BOOK") == 50
    path = tmp_path / "statement.xml"
    path.write_bytes(statement(entries))
    return path, customers, before


def test_a_statement_of_50_credits_records_the_right_payments_and_importing_it_again_changes_nothing(services,
                                                                                                      tmp_path):
    path, customers, before = fifty_credits(services, tmp_path)

    result = import_statement(services, path, now=NOW)

    by_key = {o.entry_key.split(":")[1]: o for o in result.outcomes}
    assert {o.status for k, o in by_key.items() if k.startswith("CR00") and k != "CR0051"} == {"matched"}
    assert {by_key[f"CR{n:04d}"].rule for n in range(43)} == {"invoice_number"}
    assert {by_key[f"CR{n:04d}"].rule for n in range(43, 48)} == {"amount_and_account"}
    assert (by_key["CR0040"].note, by_key["CR0042"].note) == ("partial payment", "overpayment: the rest is credit")
    assert by_key["CR0051"].status == "unmatched"
    assert [by_key[f"DD-BATCH/{k}"].status for k in (1, 2, 3)] == ["recorded"] * 3  # booked on Dec 1 already
    assert (by_key["RT0048"].status, by_key["RT0049"].status) == ("returned", "returned")
    assert by_key["RT0048"].note == "AM04 insufficient funds: invoice INV-2026-000049 reopened"
    assert (by_key["FEE-12"].status, result.count("matched"), result.count("unmatched")) == ("skipped", 48, 1)

    after = invoices(services.engine)
    expected = {}
    for n, cid in enumerate(customers):
        total = before[cid].total
        if n in (40, 41):
            expected[cid] = ("open", total - (total / 2).quantize(Decimal("0.01")))
        elif n in (48, 49, 51):
            expected[cid] = ("open", total)  # returned direct debits reopen; c51 was not paid
        else:
            expected[cid] = ("paid", Decimal(0))
    assert {cid: (inv.status, inv.balance) for cid, inv in after.items()} == expected
    with Session(services.engine) as session:
        credit = session.get(CustomerAccount, (customers[42], "EUR"))
        assert credit.credit_balance == Decimal("25.00")
        learned = {(a.customer_id, a.iban) for a in session.scalars(select(CustomerBankAccount))}
    assert (customers[0], iban(100)) in learned  # the next transfer from that account is recognised

    with Session(services.engine) as session:
        [waiting] = list_bank_entries(session, status="unmatched")
    assert (waiting.counterparty_iban, waiting.amount) == (UNKNOWN_IBAN, before[customers[51]].total)
    assert [c.number for c in waiting.candidates] == ["INV-2026-000052"]
    assert waiting.candidates[0].why == "an open invoice of the same amount"

    # The same statement again: every entry is known by its bank reference; nothing changes.
    state = (counts(services.engine), {cid: (inv.status, inv.balance) for cid, inv in invoices(services.engine).items()})
    again = import_statement(services, path, now=NOW)
    assert again.recorded == 0 and again.count("duplicate") == 54 and again.count("skipped") == 1
    assert (counts(services.engine), {cid: (inv.status, inv.balance)
                                      for cid, inv in invoices(services.engine).items()}) == state

    # Finance matches the unknown payer by hand; its account is known from then on.
    with transaction(services.engine) as session:
        matched = match_bank_entry(session, waiting.entry_id, invoice_numbers=["INV-2026-000052"], now=NOW)
    assert (matched.status, matched.customer_id, matched.rule) == ("matched", customers[51], "manual")
    assert invoices(services.engine)[customers[51]].status == "paid"


def test_the_import_command_prints_what_it_did_and_what_is_left(services, tmp_path):
    path, customers, before = fifty_credits(services, tmp_path)
    env = {"DATABASE_URL": str(services.engine.url.render_as_string(hide_password=False)), **CREDITOR}
    runner = CliRunner()
    result = runner.invoke(cli, ["payments", "import-statement", str(path)], env=env)
    assert result.exit_code == 0, result.output
    assert (f"{path}: 55 entries: 48 payments matched, 2 direct debits returned, 3 already booked, 1 left to match, "
            "0 imported before, 1 other debits skipped") in result.output
    assert "matched: FR7630006000011234567890189:CR0001: INV-2026-000002 (c000001): paid in full" in result.output
    assert "left to match (billsync payments match ENTRY --invoice NUMBER):" in result.output
    assert f"SOMEONE ELSE {UNKNOWN_IBAN}  'order 7781'" in result.output
    assert "candidate INV-2026-000052 (id 52, c000051)" in result.output

    listed = runner.invoke(cli, ["payments", "unmatched"], env=env)
    assert listed.exit_code == 0 and "candidate INV-2026-000052" in listed.output
    entry_id = listed.output.split()[0].lstrip("#")
    wrong = runner.invoke(cli, ["payments", "match", entry_id, "--invoice", "INV-2026-999999"], env=env)
    assert wrong.exit_code == 2 and "there is no invoice INV-2026-999999" in wrong.output
    matched = runner.invoke(cli, ["payments", "match", entry_id, "--invoice", "INV-2026-000052"], env=env)
    assert matched.exit_code == 0, matched.output
    assert "recorded for c000051: matched by hand to INV-2026-000052" in matched.output
    assert runner.invoke(cli, ["payments", "unmatched"], env=env).output == "no statement entry left to match\n"
    again = runner.invoke(cli, ["payments", "import-statement", str(path)], env=env)
    assert "0 payments matched" in again.output and "54 imported before" in again.output


def test_a_malformed_statement_gives_one_line_per_problem_and_records_nothing(services, tmp_path):
    invoiced_customers(services.engine, 2)
    state = counts(services.engine)
    env = {"DATABASE_URL": str(services.engine.url.render_as_string(hide_password=False))}
    runner = CliRunner()

    broken = tmp_path / "broken.xml"
    broken.write_bytes(statement([Entry(Decimal("10.00"), "A1")])[:-40])
    result = runner.invoke(cli, ["payments", "import-statement", str(broken)], env=env)
    assert result.exit_code == 2
    assert len(result.output.splitlines()) == 1 and result.output.startswith(f"error: {broken}: not readable XML")

    bad = tmp_path / "bad.xml"
    bad.write_bytes(statement([
        Entry(Decimal("10.00"), "A1", details=[Tx(iban="FR76 3000 6000 0112 3456 7890 188",
                                                  remittance=("INV-2026-000001",))]),
        Entry(Decimal("20.00"), "A2", currency="XYZ", details=[Tx(remittance=("INV-2026-000002",))]),
        Entry(Decimal("30.00"), "A3", details=[Tx(remittance=("INV-2026-000002",))]),
    ]))
    result = runner.invoke(cli, ["payments", "import-statement", str(bad)], env=env)
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        f"error: {bad}: entry 1 (A1): counterparty: bad IBAN 'FR76 3000 6000 0112 3456 7890 188' "
        "(Invalid checksum digits)",
        f"error: {bad}: entry 2 (A2): unknown currency 'XYZ'"]
    not_camt = tmp_path / "pain.xml"
    not_camt.write_text("<Document xmlns='urn:iso:std:iso:20022:tech:xsd:pain.008.001.08'><CstmrDrctDbtInitn/>"
                        "</Document>")
    result = runner.invoke(cli, ["payments", "import-statement", str(not_camt)], env=env)
    assert result.exit_code == 2 and "not a camt.053 bank statement" in result.output
    assert counts(services.engine) == state  # nothing recorded

    huge = tmp_path / "huge.xml"
    huge.write_bytes(statement([Entry(Decimal("99999999999999999999999999999"), "H1",
                                      details=[Tx(remittance=("INV-2026-000001",))])]))
    result = runner.invoke(cli, ["payments", "import-statement", str(huge)], env=env)
    assert result.exit_code == 2, result.output
    assert "entry 1 (H1)" in result.output and "too large" in result.output
    assert counts(services.engine) == state


def test_camt_053_001_02_and_batch_shapes_are_read(services):
    transactions = parse_camt053(statement([
        Entry(Decimal("120.00"), "B1", details=[Tx(name="Acme", iban=iban(1), remittance=("INV 2026", "000007"))]),
        Entry(Decimal("30.00"), "B2", details=[Tx(amount=Decimal("10.00"), end_to_end_id="E1"),
                                               Tx(amount=Decimal("20.00"), end_to_end_id="NOTPROVIDED")]),
        Entry(Decimal("5.00"), "B3", status="PDNG"),
    ], version="02"))
    assert [(t.entry_key.split(":")[1], t.amount, t.counterparty_name, t.remittance, t.end_to_end_id)
            for t in transactions] == [("B1", Decimal("120.00"), "Acme", "INV 2026 000007", ""),
                                       ("B2/1", Decimal("10.00"), "", "", "E1"),
                                       ("B2/2", Decimal("20.00"), "", "", "")]
    with pytest.raises(StatementError) as err:
        parse_camt053(statement([Entry(Decimal("10.001"), "C1"), Entry(Decimal("-4"), "C2")]))
    assert err.value.problems == ["entry 1 (C1): the amount '10.001' has more decimals than EUR allows",
                                  "entry 2 (C2): the amount '-4' must be positive"]


def test_a_csv_statement_with_the_documented_columns(services, tmp_path):
    customers = invoiced_customers(services.engine, 3)
    before = invoices(services.engine)
    csv_path = tmp_path / "releve.csv"
    csv_path.write_text(
        "Date;Amount;Currency;Reference;Name;IBAN;Remittance\n"
        f"2026-12-02;{str(before[customers[0]].total).replace('.', ',')};EUR;TX-1;Client A;{iban(1)};"
        "facture inv-2026-000001\n"
        f"2026-12-02;-15,00;EUR;TX-2;Banque;;frais\n"
        f"2026-12-03;10,00;EUR;TX-3;Client C;;INV-2026-000003 acompte\n")
    result = import_statement(services, csv_path, now=NOW)
    assert [o.status for o in result.outcomes] == ["matched", "skipped", "matched"]
    after = invoices(services.engine)
    assert after[customers[0]].status == "paid"
    assert after[customers[2]].balance == before[customers[2]].total - Decimal("10.00")
    assert import_statement(services, csv_path, now=NOW).recorded == 0

    missing = tmp_path / "missing.csv"
    missing.write_text("date,amount,name\n2026-12-02,10.00,x\n")
    with pytest.raises(StatementError) as err:
        import_statement(services, missing)
    assert err.value.problems == ["the CSV header lacks the columns currency, reference (required: date, amount, "
                                  "currency, reference; optional: name, iban, remittance, end_to_end_id, "
                                  "return_reason, account)"]
    bad = tmp_path / "bad.csv"
    bad.write_text("date,amount,currency,reference,iban\n02/12/2026,ten,EUR,R1,\n2026-12-02,1.00,EURO,R2,XX12\n")
    with pytest.raises(StatementError) as err:
        import_statement(services, bad)
    assert err.value.problems == [
        "line 2: the amount 'ten' is not a number", "line 2: the date '02/12/2026' is not YYYY-MM-DD",
        "line 3: unknown currency 'EURO'", "line 3: iban: bad IBAN 'XX12' (Invalid characters in IBAN XX12)"]
