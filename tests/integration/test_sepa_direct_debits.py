"""SEPA direct debits: mandates, the pain.008 export, booking on the collection date, returns
(docs/payments.md)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import sepaxml
import xmlschema
from click.testing import CliRunner
from sqlmodel import Session, select

from billing_engine.errors import ConflictError, InvalidInputError, NotFoundError
from billing_engine.storage.collections import DirectDebit, InvoiceCollection, Mandate
from billing_engine.storage.invoices import Invoice
from billing_engine.use_cases.direct_debits import create_mandate, return_direct_debit, revoke_mandate
from billing_engine.use_cases.payments import record_payment
from connector.cli import cli
from connector.collection_jobs import export_sepa, run_collections
from connector.database import transaction
from connector.settings import load_settings
from connector.wiring import build_services
from tests.support.collections import (
    CREDITOR,
    DUE_ON,
    SIGNED_ON,
    add_mandates,
    iban,
    invoiced_customers,
    invoices_by_customer,
)

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
XSD = Path(sepaxml.__file__).parent / "schemas"


@pytest.fixture
def services(database_url):
    built = build_services(load_settings({"DATABASE_URL": database_url, "LOG_LEVEL": "warning", **CREDITOR}))
    yield built
    built.engine.dispose()


def parse(path: Path, schema: str = "pain.008.001.08") -> tuple[ET.Element, dict[str, str]]:
    ns = {"p": f"urn:iso:std:iso:20022:tech:xsd:{schema}"}
    return ET.parse(path).getroot(), ns


def debits_in(root: ET.Element, ns: dict[str, str]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for tx in root.iter(f"{{{ns['p']}}}DrctDbtTxInf"):
        e2e = tx.find("p:PmtId/p:EndToEndId", ns).text
        assert e2e not in out, f"{e2e} twice in the file"
        out[e2e] = Decimal(tx.find("p:InstdAmt", ns).text)
    return out


@pytest.mark.slow
def test_an_export_of_1000_due_invoices_is_xsd_valid_holds_each_once_and_sums_to_the_cent(services, tmp_path):
    customers = invoiced_customers(services.engine, 1003)
    due, no_mandate, revoked, partly_paid = customers[:1000], customers[1000], customers[1001], customers[0]
    add_mandates(services.engine, due + [revoked])
    invoices = invoices_by_customer(services.engine)
    with transaction(services.engine) as session:
        [m] = session.scalars(select(Mandate).where(Mandate.customer_id == revoked)).all()
        revoke_mandate(session, m.id, on=date(2026, 11, 20), reason="account moved")
        record_payment(session, customer_id=partly_paid, amount=Decimal("10.00"), currency="EUR",
                       received_on=date(2026, 11, 25), method="transfer", source="bank", external_reference="T-1")
    expected = {invoices[c].number: invoices[c].total - (Decimal("10.00") if c == partly_paid else 0) for c in due}

    output = tmp_path / "collect.xml"
    report = export_sepa(services, DUE_ON, output, now=NOW)

    assert report.path == output and len(report.result.lines) == 1000
    document = output.read_bytes()
    assert xmlschema.XMLSchema(str(XSD / "pain.008.001.08.xsd")).is_valid(document.decode())
    root, ns = parse(output)
    header = root.find("p:CstmrDrctDbtInitn/p:GrpHdr", ns)
    assert header.find("p:MsgId", ns).text == "BILLSYNC-SDD-20261201-0001"
    assert header.find("p:CreDtTm", ns).text == "2026-11-28T10:00:00"
    assert header.find("p:NbOfTxs", ns).text == "1000"
    in_file = debits_in(root, ns)
    assert in_file == expected  # each due invoice once, for its balance; no other invoice
    assert Decimal(header.find("p:CtrlSum", ns).text) == sum(expected.values()) == report.result.total
    [batch] = root.findall("p:CstmrDrctDbtInitn/p:PmtInf", ns)
    assert batch.find("p:PmtTpInf/p:SeqTp", ns).text == "FRST"
    assert batch.find("p:ReqdColltnDt", ns).text == "2026-12-01"
    assert batch.find("p:PmtInfId", ns).text == "BILLSYNC-SDD-20261201-0001-FRST"
    assert batch.find("p:CdtrSchmeId/p:Id/p:PrvtId/p:Othr/p:Id", ns).text == "FR72ZZZ123456"
    assert batch.find("p:Cdtr/p:Nm", ns).text == "Billsync Demo SAS"  # SEPA's Latin character set
    first = batch.find("p:DrctDbtTxInf", ns)
    assert first.find("p:DrctDbtTx/p:MndtRltdInf/p:MndtId", ns).text == "RUM-c000000"
    assert first.find("p:DrctDbtTx/p:MndtRltdInf/p:DtOfSgntr", ns).text == SIGNED_ON.isoformat()
    assert first.find("p:DbtrAcct/p:Id/p:IBAN", ns).text == iban(0)
    with Session(services.engine) as session:
        debits = session.scalars(select(DirectDebit)).all()
        assert {d.end_to_end_id for d in debits} == set(expected) and {d.status for d in debits} == {"pending"}
        assert {m.sequence_type for m in session.scalars(select(Mandate).where(Mandate.status == "active"))} == {"RCUR"}

    # A second export the same day adds nothing, and writes no file.
    again = export_sepa(services, DUE_ON, tmp_path / "again.xml", now=NOW + timedelta(hours=1))
    assert again.result.export_id is None and again.path is None and not (tmp_path / "again.xml").exists()
    assert again.lines()[0].startswith("nothing to collect on 2026-12-01")

    # On the collection date the clock books each debit as the payment of its invoice.
    report = run_collections(services, DUE_ON, now=datetime(2026, 12, 1, 0, 30, tzinfo=UTC))
    assert len(report.collected.booked) == 1000 and report.overdue.invoices == ()
    assert report.lines()[0].startswith(f"collections as of 2026-12-01: 1000 direct debits booked as paid "
                                        f"({sum(expected.values())} EUR), 0 invoices became overdue")
    with Session(services.engine) as session:
        statuses = {inv.customer_id: (inv.status, inv.balance) for inv in session.scalars(select(Invoice))}
    assert all(statuses[c] == ("paid", 0) for c in due)
    assert statuses[no_mandate][0] == statuses[revoked][0] == "open"
    assert run_collections(services, DUE_ON).collected.booked == ()  # booked once


def test_a_return_reopens_the_invoice_with_its_reason_and_some_reasons_end_the_mandate(services, tmp_path):
    customers = invoiced_customers(services.engine, 3)
    add_mandates(services.engine, customers)
    invoices = invoices_by_customer(services.engine)
    export_sepa(services, DUE_ON, tmp_path / "dd.xml", now=NOW)
    run_collections(services, date(2026, 12, 1), now=datetime(2026, 12, 1, 0, 30, tzinfo=UTC))
    funds, closed = invoices[customers[0]], invoices[customers[1]]

    with transaction(services.engine) as session:
        first = return_direct_debit(session, funds.number, reason="am04", returned_on=date(2026, 12, 4))
        second = return_direct_debit(session, closed.number, reason="AC04", returned_on=date(2026, 12, 5))
    assert (first.reason, first.mandate_revoked) == ("AM04 insufficient funds", False)
    assert (second.reason, second.mandate_revoked) == ("AC04 account closed", True)
    with Session(services.engine) as session:
        reopened = session.get(Invoice, funds.id)
        assert (reopened.status, reopened.balance) == ("open", funds.total)
        row = session.get(InvoiceCollection, funds.id)
        assert (row.return_reason, row.returned_on) == ("AM04 insufficient funds", date(2026, 12, 4))
        assert session.get(Invoice, invoices[customers[2]].id).status == "paid"
        mandates = {m.customer_id: m for m in session.scalars(select(Mandate))}
    assert mandates[customers[0]].status == "active"
    assert (mandates[customers[1]].status, mandates[customers[1]].revoked_reason) == (
        "revoked", f"direct debit {closed.number} returned: AC04 account closed")

    with transaction(services.engine) as session, pytest.raises(ConflictError, match="already returned"):
        return_direct_debit(session, funds.number, reason="AM04", returned_on=date(2026, 12, 6))
    with transaction(services.engine) as session, pytest.raises(NotFoundError):
        return_direct_debit(session, "INV-2026-999999", reason="AM04", returned_on=date(2026, 12, 6))
    # A returned invoice is not collected again by the next export: it is left to dunning and transfers.
    assert export_sepa(services, date(2026, 12, 10), tmp_path / "next.xml", now=NOW).result.export_id is None


def test_a_mandate_is_checked_before_anything_is_written(services):
    [cid] = invoiced_customers(services.engine, 1)
    today, now = date(2026, 11, 2), datetime(2026, 11, 2, tzinfo=UTC)
    cases = [
        ({"iban": "DE89 3704 0044 0532 0130 01"}, "iban: is not a valid IBAN (Invalid checksum digits)"),
        ({"iban": "BR1800360305000010009795493C1"}, "iban: BR accounts are outside the SEPA zone"),
        ({"bic": "ZZZZZZZZ"}, "bic: is not a valid BIC"),
        ({"reference": "RUM_1"}, "reference: must be 1 to 35 characters"),
        ({"signed_on": date(2026, 11, 3)}, "signed_on: 2026-11-03 is after today"),
        ({"sequence_type": "OOFF"}, "sequence_type: must be one of FRST, RCUR"),
    ]
    for change, message in cases:
        fields = {"reference": "RUM-1", "signed_on": SIGNED_ON, "iban": iban(1), **change}
        with transaction(services.engine) as session, pytest.raises(InvalidInputError) as err:
            create_mandate(session, cid, today=today, now=now, **fields)
        assert str(err.value).startswith(message)
    with transaction(services.engine) as session:
        view = create_mandate(session, cid, reference="RUM-1", signed_on=SIGNED_ON, iban="de89 3704 0044 0532 0130 00",
                              bic="cobadeffxxx", today=today, now=now)
    assert (view.iban, view.bic, view.account_holder, view.sequence_type) == (
        "DE89370400440532013000", "COBADEFFXXX", cid, "FRST")
    with transaction(services.engine) as session, pytest.raises(ConflictError, match="already recorded"):
        create_mandate(session, cid, reference="RUM-1", signed_on=SIGNED_ON, iban=iban(2), today=today, now=now)
    with transaction(services.engine) as session, pytest.raises(ConflictError, match="already has an active mandate"):
        create_mandate(session, cid, reference="RUM-2", signed_on=SIGNED_ON, iban=iban(2), today=today, now=now)


def test_sepa_commands(database_url, tmp_path):
    customers = invoiced_customers(build_services(load_settings({"DATABASE_URL": database_url})).engine, 2)
    runner = CliRunner()
    env = {"DATABASE_URL": database_url, **CREDITOR}
    today = datetime.now(UTC).date()
    collect_on = max(today, DUE_ON) + timedelta(days=1)

    missing = runner.invoke(cli, ["payments", "sepa-export", "--collect-on", collect_on.isoformat()],
                            env={"DATABASE_URL": database_url, "SEPA_SCHEMA": "pain.008.001.02"})
    assert missing.exit_code == 2
    assert missing.output.splitlines() == [
        "error: SEPA_CREDITOR_NAME: required to export SEPA direct debits (the creditor's name)",
        "error: SEPA_CREDITOR_IBAN: required to export SEPA direct debits (the account the debits are collected to)",
        "error: SEPA_CREDITOR_ID: required to export SEPA direct debits (the SEPA creditor identifier (ICS) your "
        "bank gave you)",
        "error: SEPA_CREDITOR_BIC: required by pain.008.001.02 (the BIC of the creditor's bank)"]

    added = runner.invoke(cli, ["payments", "mandate", "add", "--customer", customers[0], "--reference", "RUM-A1",
                                "--signed-on", "2026-10-15", "--iban", iban(7)], env=env)
    assert added.exit_code == 0, added.output
    assert added.output.startswith(f"mandate 1 RUM-A1: customer {customers[0]}, {iban(7)}, signed 2026-10-15, FRST")
    bad = runner.invoke(cli, ["payments", "mandate", "add", "--customer", customers[1], "--reference", "RUM-B1",
                              "--signed-on", "2026-10-15", "--iban", "FR76 0000"], env=env)
    assert bad.exit_code == 2 and bad.output.startswith("error: mandate: iban: is not a valid IBAN")

    output = tmp_path / "sdd.xml"
    result = runner.invoke(cli, ["payments", "sepa-export", "--collect-on", collect_on.isoformat(), "--output",
                                 str(output)], env=env)
    assert result.exit_code == 0, result.output
    assert f"{output}: 1 direct debits" in result.output and output.exists()
    root, ns = parse(output)
    assert list(debits_in(root, ns)) == ["INV-2026-000001"]
    exists = runner.invoke(cli, ["payments", "sepa-export", "--collect-on", collect_on.isoformat(), "--output",
                                 str(output)], env=env)
    assert exists.exit_code == 2 and "already exists" in exists.output
    again = runner.invoke(cli, ["payments", "sepa-export", "--collect-on", collect_on.isoformat(), "--output",
                                str(tmp_path / "again.xml")], env=env)
    assert again.exit_code == 0 and again.output.startswith("nothing to collect")
    past = runner.invoke(cli, ["payments", "sepa-export", "--collect-on", "2020-01-01"], env=env)
    assert past.exit_code == 2 and "is before today" in past.output

    listed = runner.invoke(cli, ["payments", "mandate", "list"], env=env)
    assert f"1  RUM-A1  {customers[0]}  {iban(7)}  signed 2026-10-15  RCUR  active" in listed.output
    returned = runner.invoke(cli, ["payments", "sepa-return", "INV-2026-000001", "--reason", "MS02", "--on",
                                   collect_on.isoformat()], env=env)
    assert returned.exit_code == 0, returned.output
    assert "returned (MS02 refused by the debtor): invoice INV-2026-000001 is open again; its mandate is revoked" \
        in returned.output
    revoked = runner.invoke(cli, ["payments", "mandate", "revoke", "1"], env=env)
    assert revoked.exit_code == 2 and "was already revoked" in revoked.output


def test_the_schema_can_be_pain_008_001_02(database_url, tmp_path):
    services = build_services(load_settings({"DATABASE_URL": database_url, "SEPA_SCHEMA": "pain.008.001.02",
                                             **CREDITOR}))
    customers = invoiced_customers(services.engine, 2)
    add_mandates(services.engine, customers)
    report = export_sepa(services, DUE_ON, tmp_path / "old.xml", now=NOW)
    document = (tmp_path / "old.xml").read_text()
    assert xmlschema.XMLSchema(str(XSD / "pain.008.001.02.xsd")).is_valid(document)
    root, ns = parse(tmp_path / "old.xml", "pain.008.001.02")
    assert root.find("p:CstmrDrctDbtInitn/p:PmtInf/p:CdtrAgt/p:FinInstnId/p:BIC", ns).text == "AGRIFRPP"
    assert sum(debits_in(root, ns).values()) == report.result.total
