"""``billsync reconcile``: engine and Salesforce compared for a month, mismatches named, drift repaired."""

from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal

import pytest
from click.testing import CliRunner
from sqlmodel import Session, func, select

from billing_engine.storage.catalog import CustomerRow
from billing_engine.storage.invoices import CreditNote, Invoice
from billing_engine.storage.outbox import OutboxRow
from billing_engine.use_cases.billing import issue_credit_note
from billing_engine.use_cases.payments import record_payment, refund_payment
from connector.billing_jobs import run_bill_run
from connector.cli import cli
from connector.database import transaction
from connector.sync.installation import keys_of
from connector.sync.push import push_outbox
from connector.sync.reconcile import Side, compare
from sfsandbox.server import AdminClient
from tests.support.sandbox import sandbox_environment

pytestmark = pytest.mark.timeout(180)

AS_OF = date(2026, 11, 24)


def reconcile(env, *args):
    result = CliRunner().invoke(cli, ["reconcile", *args], env=env, catch_exceptions=False)
    return result.exit_code, result.output


def drain(services):
    """Push until nothing is due (what the clock does every PUSH_INTERVAL_SECONDS)."""
    for _ in range(10):
        push_outbox(services, worker_id="test", batch_size=200)
        with Session(services.engine) as session:
            left = session.exec(select(func.count()).select_from(OutboxRow)
                                .where(OutboxRow.status.in_(("pending", "in_flight")))).one()
        if left == 0:
            return
    raise AssertionError(f"{left} outbox rows still pending after 10 pushes")


@pytest.fixture
def billed(org, services, connected_settings):
    """The small org pulled, and billed as of 2026-11-24 (12 invoices issued that day)."""
    from connector.sync.pull import pull_changes

    AdminClient(org.url, org.admin_token, org.ca_path).reset("small")
    pull_changes(services)
    # The seeded deals back-bill up to 11 months: finalize them all rather than hold them for review.
    reviewed = dataclasses.replace(services, settings=services.settings.replace(bill_run_max_periods=24))
    result = run_bill_run(reviewed, AS_OF)
    assert result.invoices_finalized == 12
    with Session(services.engine) as session:
        invoices = session.exec(select(Invoice).order_by(Invoice.id)).all()
    return services, invoices, sandbox_environment(org, connected_settings.database_url)


# ---------------------------------------------------------------- the comparison itself (pure)


def side(ext, status="open", total="10.00", balance=None, payment="unpaid", currency="EUR"):
    total = Decimal(total)
    return Side("invoice", ext, f"INV-{ext}", currency, status, total,
                {"Status__c": status, "Payment_Status__c": payment, "Total__c": total,
                 "Balance__c": Decimal(balance) if balance is not None else total, "CurrencyIsoCode": currency})


FIELDS = (("Status__c", "status"), ("Payment_Status__c", "status"), ("Total__c", "amount"),
          ("Balance__c", "amount"), ("CurrencyIsoCode", "status"))


def test_compare_is_exact_to_the_cent():
    totals, mismatches = compare([side("1", total="10.00")], [side("1", total="10")], FIELDS)
    assert mismatches == [] and all(t.agrees for t in totals)

    _, mismatches = compare([side("1", total="10.00")], [side("1", total="10.01", balance="10.00")], FIELDS)
    assert [m.describe() for m in mismatches] == [
        "invoice INV-1 (billsync id 1): amount differs on Total__c: billsync 10.00, Salesforce 10.01"]


def test_compare_counts_and_sums_by_currency_and_status():
    engine = [side("1", total="10.00"), side("2", total="5.50"), side("3", status="paid", payment="paid",
                                                                       total="7", balance="0")]
    salesforce = [side("1", total="10.00"), side("3", status="open", total="7"), side("4", total="1.00")]
    totals, mismatches = compare(engine, salesforce, FIELDS)
    table = {(t.currency, t.status): (t.engine_count, t.engine_sum, t.salesforce_count, t.salesforce_sum)
             for t in totals}
    assert table == {("EUR", "open"): (2, Decimal("15.50"), 3, Decimal("18.00")),
                     ("EUR", "paid"): (1, Decimal("7"), 0, Decimal(0))}
    assert sorted((m.external_id, m.kind, m.field) for m in mismatches) == [
        ("2", "missing_in_salesforce", ""),
        ("3", "amount", "Balance__c"),
        ("3", "status", "Payment_Status__c"),
        ("3", "status", "Status__c"),
        ("4", "missing_in_engine", ""),
    ]


# ---------------------------------------------------------------- the command


@pytest.mark.parametrize("period", ["2026/11", "2026-13", "11-2026", "2026-1"])
def test_a_bad_period_is_one_clear_line(settings, period):
    code, output = reconcile({"DATABASE_URL": settings.database_url}, "--period", period)
    assert code == 2
    assert output == f"error: --period: {period!r} is not a month; use YYYY-MM, for example 2026-11\n"


def test_without_salesforce_it_says_so(settings):
    code, output = reconcile({"DATABASE_URL": settings.database_url}, "--period", "2026-11")
    assert code == 2
    assert output.startswith("error: reconcile 2026-11: Salesforce:")
    assert "not configured" in output


def test_invoices_not_pushed_yet_are_missing_in_salesforce(billed):
    services, invoices, env = billed
    code, output = reconcile(env, "--period", "2026-11")
    assert code == 1
    keys = keys_of(services.engine)
    for inv in invoices:
        assert f"mismatch: invoice {inv.number} (billsync id {keys.invoice(inv.id)}): missing in Salesforce" in output
    # Nor are the Account summaries of the customers (billed or not).
    with Session(services.engine) as session:
        customers = sorted(session.exec(select(CustomerRow.id).where(CustomerRow.salesforce_account_id.is_not(None))))
    assert {inv.customer_id for inv in invoices} < set(customers)
    for customer in customers:
        assert f"mismatch: account {customer}: missing in Salesforce" in output
    assert f"{12 + len(customers)} mismatches for 2026-11" in output
    # The per-status table: what billsync has, and nothing on the Salesforce side.
    eur = Decimal(0)
    for inv in invoices:
        if inv.currency == "EUR":
            eur += inv.total
    [row] = [line.split() for line in output.splitlines() if line.startswith("invoice  EUR")]
    assert row[2:7] == ["open", str(sum(1 for i in invoices if i.currency == "EUR")), str(eur), "0", "0"]
    # Another month has no invoice on either side; the Accounts are compared whatever the month.
    code, output = reconcile(env, "--period", "2026-10")
    assert code == 1
    assert not any(line.startswith("invoice") for line in output.splitlines())
    assert f"{len(customers)} mismatches for 2026-10" in output


def test_an_invoice_only_salesforce_has_cannot_be_repaired_by_a_push(billed):
    services, _, env = billed
    client = services.salesforce()
    [account] = list(client.query_all("SELECT Id FROM Account WHERE CurrencyIsoCode = 'EUR' LIMIT 1"))
    client.upsert("Invoice__c", "Billsync_Invoice_Id__c", "999999", {
        "Name": "INV-FAKE-1", "Account__c": account["Id"], "Status__c": "open", "Issue_Date__c": "2026-11-03",
        "Total__c": Decimal("12.34"), "CurrencyIsoCode": "EUR"})
    code, output = reconcile(env, "--period", "2026-11", "--repair")
    assert code == 1
    assert "mismatch: invoice INV-FAKE-1 (billsync id 999999): in Salesforce but not in billsync" in output
    assert "not repaired: invoice INV-FAKE-1: exists only in Salesforce: a person must decide" in output


def test_tampered_invoice_is_named_then_repaired_by_the_next_push(billed):
    services, invoices, env = billed
    drain(services)
    code, output = reconcile(env, "--period", "2026-11")
    assert code == 0, output
    assert "billsync and Salesforce agree for 2026-11" in output
    code, output = reconcile(env, "--period", "2026-10")  # nothing that month; the Accounts agree
    assert code == 0, output

    target = invoices[0]
    client = services.salesforce()
    key = keys_of(services.engine).invoice(target.id)
    client.upsert("Invoice__c", "Billsync_Invoice_Id__c", key, {"Total__c": target.total + Decimal("0.01")})
    code, output = reconcile(env, "--period", "2026-11")
    assert code == 1
    assert (f"mismatch: invoice {target.number} (billsync id {key}): amount differs on Total__c: "
            f"billsync {target.total}, Salesforce {target.total + Decimal('0.01')}") in output
    assert "1 mismatches for 2026-11" in output

    code, output = reconcile(env, "--period", "2026-11", "--repair")
    assert code == 1  # still differs until the push runs
    assert f"re-queued: invoice {target.number}" in output
    drain(services)
    code, output = reconcile(env, "--period", "2026-11")
    assert code == 0, output


def test_payments_are_reconciled_by_payment_date(billed):
    services, invoices, env = billed
    target = invoices[1]
    with transaction(services.engine) as session:
        payment = record_payment(session, customer_id=target.customer_id, amount=target.total,
                                    currency=target.currency, received_on=date(2026, 11, 26), method="transfer",
                                    source="bank", external_reference="BANK-REF-1")
    drain(services)
    code, output = reconcile(env, "--period", "2026-11")
    assert code == 0, output
    assert any(line.split()[:4] == ["payment", target.currency, "succeeded", "1"] for line in output.splitlines())
    # The invoice it paid reads paid on both sides.
    assert any(line.split()[:4] == ["invoice", target.currency, "paid", "1"] for line in output.splitlines())

    client = services.salesforce()
    key = keys_of(services.engine).payment(payment.payment_id)
    client.upsert("Payment__c", "Billsync_Payment_Id__c", key, {"Status__c": "refunded"})
    code, output = reconcile(env, "--period", "2026-11")
    assert code == 1
    assert (f"mismatch: payment BANK-REF-1 (billsync id {key}): status differs on Status__c: "
            "billsync succeeded, Salesforce refunded") in output


@pytest.fixture
def credited(billed):
    """A credit note on one invoice and a payment, partly refunded, on another: all pushed."""
    services, invoices, env = billed
    credited_invoice, paid_invoice = invoices[0], invoices[1]
    with transaction(services.engine) as session:
        note_id = issue_credit_note(session, credited_invoice.id, amount=Decimal("100.00"), reason="SLA credit",
                                    on=date(2026, 11, 25))
        payment = record_payment(session, customer_id=paid_invoice.customer_id, amount=paid_invoice.total,
                                 currency=paid_invoice.currency, received_on=date(2026, 11, 26), method="transfer",
                                 source="bank", external_reference="BANK-REF-2")
        refund = refund_payment(session, payment.payment_id, amount=Decimal("15.00"), refunded_on=date(2026, 11, 27),
                                reason="goodwill")
    drain(services)
    with Session(services.engine) as session:
        note = session.get(CreditNote, note_id)
    return services, env, note, refund, credited_invoice, paid_invoice


def table_row(output: str, *start: str) -> list[str]:
    [row] = [line.split() for line in output.splitlines() if line.split()[:len(start)] == list(start)]
    return row


def test_credit_notes_refunds_and_accounts_agree_once_pushed(credited):
    services, env, note, refund, credited_invoice, paid_invoice = credited
    code, output = reconcile(env, "--period", "2026-11")
    assert code == 0, output
    assert table_row(output, "credit_note", note.currency, "applied")[3:] == ["1", str(note.total), "1",
                                                                              str(note.total), "ok"]
    assert table_row(output, "refund", paid_invoice.currency, "refunded")[3:] == ["1", "15.00", "1", "15.00", "ok"]
    # The credited invoice reads the same on both sides: credited, partly, with nothing paid.
    assert table_row(output, "invoice", credited_invoice.currency, "open")[-1] == "ok"
    with Session(services.engine) as session:
        assert session.get(Invoice, credited_invoice.id).amount_credited == note.total


def test_a_tampered_credit_note_is_named_then_repaired(credited):
    services, env, note, _, _, _ = credited
    client = services.salesforce()
    key = keys_of(services.engine).credit_note(note.id)
    client.upsert("Credit_Note__c", "Billsync_Credit_Note_Id__c", key, {"Total__c": note.total - Decimal("1.00")})
    code, output = reconcile(env, "--period", "2026-11")
    assert code == 1
    assert (f"mismatch: credit note {note.number} (billsync id {key}): amount differs on Total__c: "
            f"billsync {note.total}, Salesforce {note.total - Decimal('1.00')}") in output
    assert table_row(output, "credit_note", note.currency, "applied")[-1] == "DIFFERS"
    code, output = reconcile(env, "--period", "2026-11", "--repair")
    assert f"re-queued: credit note {note.number}" in output
    drain(services)
    code, output = reconcile(env, "--period", "2026-11")
    assert code == 0, output


def test_a_deleted_credit_note_is_missing_in_salesforce_until_repaired(credited):
    services, env, note, _, _, _ = credited
    client = services.salesforce()
    key = keys_of(services.engine).credit_note(note.id)
    [record] = list(client.query_all(f"SELECT Id FROM Credit_Note__c WHERE Billsync_Credit_Note_Id__c = '{key}'"))
    client._call("DELETE", "sobjects/Credit_Note__c", lambda sf: sf.Credit_Note__c.delete(record["Id"]))
    code, output = reconcile(env, "--period", "2026-11", "--repair")
    assert code == 1
    assert f"mismatch: credit note {note.number} (billsync id {key}): missing in Salesforce" in output
    drain(services)
    code, output = reconcile(env, "--period", "2026-11")
    assert code == 0, output
    assert client.query_page("SELECT COUNT() FROM Credit_Note_Line__c")["totalSize"] == 1


def test_a_tampered_refund_is_named_then_repaired(credited):
    services, env, _, refund, _, _ = credited
    client = services.salesforce()
    key = keys_of(services.engine).refund(refund.refund_id)
    client.upsert("Refund__c", "Billsync_Refund_Id__c", key, {"Amount__c": Decimal("51.00")})
    code, output = reconcile(env, "--period", "2026-11", "--repair")
    assert code == 1
    name = f"RFD-2026-{refund.refund_id:06d}"
    assert (f"mismatch: refund {name} (billsync id {key}): amount differs on Amount__c: billsync 15.00, "
            "Salesforce 51.00") in output
    assert f"re-queued: refund {name}" in output
    drain(services)
    code, output = reconcile(env, "--period", "2026-11")
    assert code == 0, output


def test_a_tampered_account_summary_is_named_then_repaired(credited):
    services, env, _, _, credited_invoice, _ = credited
    client = services.salesforce()
    with Session(services.engine) as session:
        customer = session.get(CustomerRow, credited_invoice.customer_id)
    before = client.get("Account", customer.salesforce_account_id)
    client.upsert("Account", "Id", customer.salesforce_account_id, {
        "MRR__c": Decimal(str(before["MRR__c"])) + 1, "Billing_Status__c": "cancelled", "Balance__c": Decimal("0.01")})
    code, output = reconcile(env, "--period", "2026-11", "--repair")
    assert code == 1
    [line] = [ln for ln in output.splitlines() if ln.startswith(f"mismatch: account {customer.id}: amount differs "
                                                                  "on MRR__c: ")]
    engine_mrr, salesforce_mrr = line.split("billsync ")[1].split(", Salesforce ")
    assert Decimal(salesforce_mrr) == Decimal(engine_mrr) + 1 == Decimal(str(before["MRR__c"])) + 1
    assert (f"mismatch: account {customer.id}: status differs on Billing_Status__c: billsync "
            f"{before['Billing_Status__c']}, Salesforce cancelled") in output
    assert f"mismatch: account {customer.id}: amount differs on Balance__c: billsync " in output
    assert f"re-queued: account {customer.id}" in output
    drain(services)
    code, output = reconcile(env, "--period", "2026-11")
    assert code == 0, output


def test_credit_notes_and_refunds_switched_off_are_not_compared(credited, tmp_path):
    services, env, note, _, _, _ = credited
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    (mappings / "credit_note.yaml").write_text("")
    (mappings / "refund.yaml").write_text("")
    services.salesforce().upsert("Credit_Note__c", "Billsync_Credit_Note_Id__c",
                                 keys_of(services.engine).credit_note(note.id), {"Total__c": Decimal("0.01")})
    code, output = reconcile({**env, "MAPPINGS_DIR": str(mappings)}, "--period", "2026-11")
    assert code == 0, output
    assert "not compared: credit notes: not pushed to Salesforce (the credit_note mapping is switched off)" in output
    assert "not compared: refunds: not pushed to Salesforce (the refund mapping is switched off)" in output
    assert not any(line.startswith(("credit_note", "refund")) for line in output.splitlines())
