"""Credit notes, refunds and what they change on invoices and payments, pushed to the sandbox over HTTPS."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import update
from sqlmodel import Session, select

from billing_engine.storage.invoices import CreditNote, Invoice, InvoiceLine
from billing_engine.storage.outbox import OutboxRow
from billing_engine.storage.payments import Payment, Refund
from billing_engine.use_cases.billing import credit_invoice, issue_credit_note, void_invoice
from billing_engine.use_cases.payments import record_payment, refund_payment
from connector.database import transaction
from connector.salesforce.soql import build_soql
from connector.sync.installation import keys_of
from connector.sync.push import push_outbox
from tests.support.push import NOW, bill_customers, create_accounts

D = Decimal
LATER = NOW + timedelta(days=9)  # 2026-11-10


def one(client, soql: str, *args) -> dict:
    [record] = client.query_page(build_soql(soql, *args))["records"]
    return record


def count(client, sobject: str) -> int:
    return client.query_page(f"SELECT COUNT() FROM {sobject}")["totalSize"]


def dec(value) -> Decimal:
    return D(str(value))


@pytest.fixture
def billed(services, org):
    """Two customers with an Account each, billed for November (two lines each at 20 %) and pushed."""
    client = services.salesforce()
    accounts = create_accounts(client, 2)
    bill_customers(services.engine, accounts, lines=2)
    report = push_outbox(services, worker_id="w1", now=NOW)
    assert report.dead == report.retrying == 0
    with Session(services.engine) as session:
        invoices = [session.get(Invoice, 1), session.get(Invoice, 2)]
    return client, accounts, invoices


def test_a_credit_note_and_a_refund_reach_salesforce_with_the_figures_they_changed(services, billed):
    client, accounts, (invoice, _) = billed
    keys = keys_of(services.engine)
    with transaction(services.engine) as session:
        paid = record_payment(session, customer_id=invoice.customer_id, amount=D("10.00"), currency="EUR",
                              received_on=date(2026, 11, 5), method="transfer", source="bank",
                              external_reference="SEPA-2026-1187", now=NOW + timedelta(days=4))
        refund = refund_payment(session, paid.payment_id, amount=D("4.00"), refunded_on=date(2026, 11, 8),
                                reason="duplicate seat", now=NOW + timedelta(days=7))
        note_id = issue_credit_note(session, invoice.id, amount=D("5.00"), reason="SLA credit", on=date(2026, 11, 9),
                                    now=NOW + timedelta(days=8))

    report = push_outbox(services, worker_id="w1", now=LATER)
    assert report.dead == report.retrying == 0 and report.done >= 3

    sf_invoice = one(client, "SELECT Id, Amount_Paid__c, Amount_Credited__c, Balance__c, Payment_Status__c, Status__c "
                             "FROM Invoice__c WHERE Billsync_Invoice_Id__c = {}", keys.invoice(invoice.id))
    # 10.00 paid, 4.00 of it refunded, 6.00 credited (5.00 + 20 % tax): the rest is still owed.
    assert (dec(sf_invoice["Amount_Paid__c"]), dec(sf_invoice["Amount_Credited__c"])) == (D("6.00"), D("6.00"))
    assert dec(sf_invoice["Balance__c"]) == invoice.total - D("6.00") - D("6.00") == D("13.36")
    assert (sf_invoice["Status__c"], sf_invoice["Payment_Status__c"]) == ("open", "partially_paid")

    with Session(services.engine) as session:
        number = session.get(CreditNote, note_id).number
    note = one(client, "SELECT Id, Name, Account__c, Invoice__c, Issue_Date__c, CurrencyIsoCode, Net__c, Tax__c, "
                       "Total__c, Applied_To_Invoice__c, To_Credit_Balance__c, Reason__c, Status__c "
                       "FROM Credit_Note__c WHERE Billsync_Credit_Note_Id__c = {}", keys.credit_note(note_id))
    assert (note["Name"], note["Account__c"], note["Invoice__c"]) == (number, accounts[0], sf_invoice["Id"])
    assert (note["Issue_Date__c"], note["CurrencyIsoCode"], note["Reason__c"], note["Status__c"]) == (
        "2026-11-09", "EUR", "SLA credit", "applied")
    assert [dec(note[f]) for f in ("Net__c", "Tax__c", "Total__c", "Applied_To_Invoice__c",
                                   "To_Credit_Balance__c")] == [D("5.00"), D("1.00"), D("6.00"), D("6.00"), 0]
    line = one(client, "SELECT Credit_Note__c, Invoice_Line__c, Description__c, Amount__c, Tax__c, CurrencyIsoCode "
                       "FROM Credit_Note_Line__c")
    assert (line["Credit_Note__c"], line["Invoice_Line__c"], line["Description__c"]) == (note["Id"], None,
                                                                                         "SLA credit")
    assert (dec(line["Amount__c"]), dec(line["Tax__c"]), line["CurrencyIsoCode"]) == (D("5.00"), D("1.00"), "EUR")

    payment = one(client, "SELECT Id, Name, Status__c, Amount__c FROM Payment__c WHERE Billsync_Payment_Id__c = {}",
                  keys.payment(paid.payment_id))
    assert (payment["Name"], payment["Status__c"], dec(payment["Amount__c"])) == (
        "SEPA-2026-1187", "partially_refunded", D("10.00"))
    sf_refund = one(client, "SELECT Id, Name, Payment__c, Account__c, Amount__c, From_Credit__c, Refund_Date__c, "
                            "Reason__c, CurrencyIsoCode FROM Refund__c WHERE Billsync_Refund_Id__c = {}",
                    keys.refund(refund.refund_id))
    assert (sf_refund["Name"], sf_refund["Payment__c"], sf_refund["Account__c"]) == (
        f"RFD-2026-{refund.refund_id:06d}", payment["Id"], accounts[0])
    assert (dec(sf_refund["Amount__c"]), dec(sf_refund["From_Credit__c"]), sf_refund["Refund_Date__c"],
            sf_refund["Reason__c"], sf_refund["CurrencyIsoCode"]) == (D("4.00"), 0, "2026-11-08", "duplicate seat",
                                                                      "EUR")
    # The engine keeps the Salesforce record of each.
    with Session(services.engine) as session:
        assert session.get(CreditNote, note_id).salesforce_id == note["Id"]
        assert session.get(Refund, refund.refund_id).salesforce_id == sf_refund["Id"]
        assert session.get(Payment, paid.payment_id).salesforce_id == payment["Id"]

    # Every row delivered: another push sends nothing. Replayed (a retry, a repair), the rows upsert the same
    # records: no second credit note, line or refund.
    assert push_outbox(services, worker_id="w1", now=LATER).claimed == 0
    with transaction(services.engine) as session:
        session.execute(update(OutboxRow).where(OutboxRow.coalesce_key.is_(None))
                        .values(status="pending", next_attempt_at=None))
    again = push_outbox(services, worker_id="w1", now=LATER + timedelta(hours=1))
    assert again.dead == again.retrying == 0 and again.claimed > 0
    assert [count(client, o) for o in ("Credit_Note__c", "Credit_Note_Line__c", "Refund__c", "Payment__c")] == [
        1, 1, 1, 1]
    assert one(client, "SELECT Id FROM Credit_Note__c")["Id"] == note["Id"]


def test_a_credited_invoice_reads_credited_not_paid(services, billed):
    client, _, (first, second) = billed
    keys = keys_of(services.engine)
    with transaction(services.engine) as session:
        issue_credit_note(session, first.id, amount=D("10.00"), reason="SLA credit", on=date(2026, 11, 9),
                          now=NOW + timedelta(days=8))
        issue_credit_note(session, second.id, amount=second.net, reason="cancelled in the trial",
                          on=date(2026, 11, 9), now=NOW + timedelta(days=8))
    assert push_outbox(services, worker_id="w1", now=LATER).dead == 0

    fields = "SELECT Status__c, Payment_Status__c, Amount_Paid__c, Amount_Credited__c, Balance__c FROM Invoice__c " \
             "WHERE Billsync_Invoice_Id__c = {}"
    partly = one(client, fields, keys.invoice(first.id))
    assert (partly["Status__c"], partly["Payment_Status__c"]) == ("open", "partially_credited")
    assert [dec(partly[f]) for f in ("Amount_Paid__c", "Amount_Credited__c", "Balance__c")] == [
        0, D("12.00"), first.total - D("12.00")]
    whole = one(client, fields, keys.invoice(second.id))
    assert (whole["Status__c"], whole["Payment_Status__c"]) == ("paid", "credited")
    assert [dec(whole[f]) for f in ("Amount_Paid__c", "Amount_Credited__c", "Balance__c")] == [0, second.total, 0]


def test_a_voided_invoice_is_credited_in_full_by_its_credit_note(services, billed):
    client, _, (invoice, _) = billed
    keys = keys_of(services.engine)
    with transaction(services.engine) as session:
        note_id = void_invoice(session, invoice.id, on=date(2026, 11, 3), reason="duplicate order",
                               now=NOW + timedelta(days=2))
    assert push_outbox(services, worker_id="w1", now=LATER).dead == 0
    sf_invoice = one(client, "SELECT Id, Status__c, Payment_Status__c, Amount_Credited__c, Balance__c FROM Invoice__c "
                             "WHERE Billsync_Invoice_Id__c = {}", keys.invoice(invoice.id))
    assert (sf_invoice["Status__c"], sf_invoice["Payment_Status__c"]) == ("void", None)
    assert (dec(sf_invoice["Amount_Credited__c"]), dec(sf_invoice["Balance__c"])) == (invoice.total, 0)
    note = one(client, "SELECT Invoice__c, Total__c, Applied_To_Invoice__c, Reason__c FROM Credit_Note__c "
                       "WHERE Billsync_Credit_Note_Id__c = {}", keys.credit_note(note_id))
    assert (note["Invoice__c"], dec(note["Total__c"]), dec(note["Applied_To_Invoice__c"]), note["Reason__c"]) == (
        sf_invoice["Id"], invoice.total, invoice.total, "duplicate order")


def test_a_credit_note_on_a_settled_invoice_becomes_customer_credit(services, billed):
    client, _, (invoice, _) = billed
    keys = keys_of(services.engine)
    with transaction(services.engine) as session:
        record_payment(session, customer_id=invoice.customer_id, amount=invoice.total, currency="EUR",
                       received_on=date(2026, 11, 5), method="card", source="stripe", external_reference="ch_3Nx",
                       now=NOW + timedelta(days=4))
        note_id = issue_credit_note(session, invoice.id, amount=D("10.00"), reason="goodwill", on=date(2026, 11, 9),
                                    now=NOW + timedelta(days=8))
    assert push_outbox(services, worker_id="w1", now=LATER).dead == 0
    note = one(client, "SELECT Status__c, Applied_To_Invoice__c, To_Credit_Balance__c FROM Credit_Note__c "
                       "WHERE Billsync_Credit_Note_Id__c = {}", keys.credit_note(note_id))
    assert (note["Status__c"], dec(note["Applied_To_Invoice__c"]), dec(note["To_Credit_Balance__c"])) == (
        "customer_credit", 0, D("12.00"))
    sf_invoice = one(client, "SELECT Payment_Status__c, Amount_Paid__c, Amount_Credited__c FROM Invoice__c "
                             "WHERE Billsync_Invoice_Id__c = {}", keys.invoice(invoice.id))
    assert (sf_invoice["Payment_Status__c"], dec(sf_invoice["Amount_Paid__c"]),
            dec(sf_invoice["Amount_Credited__c"])) == ("paid", invoice.total, 0)


def test_a_payment_is_named_by_its_reference_else_by_a_readable_id(services, billed):
    client, _, (invoice, _) = billed
    keys = keys_of(services.engine)
    long_reference = "bank-statement-2026-11/" + "x" * 80
    with transaction(services.engine) as session:
        short = record_payment(session, customer_id=invoice.customer_id, amount=D("1.00"), currency="EUR",
                               received_on=date(2026, 11, 5), method="transfer", source="bank",
                               external_reference="  TRX 0042  ", now=NOW + timedelta(days=4))
        long = record_payment(session, customer_id=invoice.customer_id, amount=D("2.00"), currency="EUR",
                              received_on=date(2026, 11, 6), method="transfer", source="bank",
                              external_reference=long_reference, now=NOW + timedelta(days=5))
    assert push_outbox(services, worker_id="w1", now=LATER).dead == 0
    names = {r["Billsync_Payment_Id__c"]: (r["Name"], r["Reference__c"])
             for r in client.query_all("SELECT Name, Reference__c, Billsync_Payment_Id__c FROM Payment__c")}
    assert names[keys.payment(short.payment_id)] == ("TRX 0042", "TRX 0042")
    assert names[keys.payment(long.payment_id)] == (f"PAY-2026-{long.payment_id:06d}", long_reference)


def test_a_credit_note_on_one_line_names_that_invoice_line(services, billed):
    client, accounts, (invoice, _) = billed
    keys = keys_of(services.engine)
    with Session(services.engine) as session:
        [first_line, second_line] = session.exec(select(InvoiceLine).where(InvoiceLine.invoice_id == invoice.id)
                                                 .order_by(InvoiceLine.position)).all()
    with transaction(services.engine) as session:
        note_id = credit_invoice(session, invoice.id, reason="seat removed", on=date(2026, 11, 9),
                                 lines=[(second_line.position, None)], now=NOW + timedelta(days=8))
    assert push_outbox(services, worker_id="w1", now=LATER).dead == 0

    tax = (second_line.net * D("0.20")).quantize(D("0.01"))
    note = one(client, "SELECT Id, Account__c, Invoice__r.Billsync_Invoice_Id__c, Net__c, Tax__c, Total__c "
                       "FROM Credit_Note__c WHERE Billsync_Credit_Note_Id__c = {}", keys.credit_note(note_id))
    assert (note["Account__c"], note["Invoice__r"]["Billsync_Invoice_Id__c"]) == (accounts[0],
                                                                                 keys.invoice(invoice.id))
    assert [dec(note[f]) for f in ("Net__c", "Tax__c", "Total__c")] == [second_line.net, tax, second_line.net + tax]
    line = one(client, "SELECT Credit_Note__c, Invoice_Line__r.Billsync_Line_Id__c, Amount__c, Tax__c "
                       "FROM Credit_Note_Line__c")
    assert line["Credit_Note__c"] == note["Id"]
    assert line["Invoice_Line__r"]["Billsync_Line_Id__c"] == keys.line(second_line.id) != keys.line(first_line.id)
    assert (dec(line["Amount__c"]), dec(line["Tax__c"])) == (second_line.net, tax)
    sf_invoice = one(client, "SELECT Amount_Credited__c, Balance__c, Payment_Status__c FROM Invoice__c "
                             "WHERE Billsync_Invoice_Id__c = {}", keys.invoice(invoice.id))
    assert (dec(sf_invoice["Amount_Credited__c"]), dec(sf_invoice["Balance__c"]), sf_invoice["Payment_Status__c"]) \
        == (second_line.net + tax, invoice.total - second_line.net - tax, "partially_credited")

    # The other line credited too: the invoice is credited in full and reads so.
    with transaction(services.engine) as session:
        credit_invoice(session, invoice.id, reason="seat removed", on=date(2026, 11, 9),
                       lines=[(first_line.position, None)], now=NOW + timedelta(days=8, hours=1))
    assert push_outbox(services, worker_id="w1", now=LATER + timedelta(hours=1)).dead == 0
    sf_invoice = one(client, "SELECT Status__c, Amount_Credited__c, Balance__c, Payment_Status__c FROM Invoice__c "
                             "WHERE Billsync_Invoice_Id__c = {}", keys.invoice(invoice.id))
    assert (sf_invoice["Status__c"], sf_invoice["Payment_Status__c"]) == ("paid", "credited")
    assert (dec(sf_invoice["Amount_Credited__c"]), dec(sf_invoice["Balance__c"])) == (invoice.total, 0)
    notes = list(client.query_all("SELECT Total__c FROM Credit_Note__c"))
    assert sum(dec(n["Total__c"]) for n in notes) == invoice.total and len(notes) == 2
