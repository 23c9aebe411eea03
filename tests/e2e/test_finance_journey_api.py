"""Finance's month through /api/v1 only, then Salesforce and reconcile agree to the cent.

The sandbox's small org is pulled and billed with ``HOLD_INVOICES_FOR_REVIEW=true``: every
invoice waits as a draft. With a write key, and nothing but HTTP, finance then

- finalizes three EUR drafts (A, B, C) and voids a fourth (D: the deal was lost);
- records a partial payment of A without a reference (the bank statement had none);
- records an overpayment of B with its bank reference: what is left becomes B's credit;
- refunds part of B's payment (it comes out of that credit);
- credits one line of A in full (a credit note with one line, at A's tax rate).

The push then brings Salesforce to exactly what the API answers: each ``Invoice__c`` (total,
paid net of refunds, credited, balance, status, payment status) and its lines, each
``Payment__c`` (a readable Name: the reference, else ``PAY-<year>-<id>``), the ``Refund__c``,
the ``Credit_Note__c`` with its line pointing at the invoice line it credits, and each Account's
summary (balance net of credit, MRR, billing status); the drafts never reach Salesforce.
``billsync reconcile`` for the month exits 0.

Rules: docs/billing-rules.md §13 Invoices, §15 Credit notes and customer credit, §16 Payments
and refunds, §18 The account billing summary.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import pytest
import requests
from click.testing import CliRunner

from connector import create_app
from connector.billing_jobs import run_bill_run
from connector.cli import cli
from sfsandbox.server import AdminClient
from tests.support.api import bearer, live_server, new_key
from tests.support.push import drain_outbox
from tests.support.sandbox import client as sandbox_client
from tests.support.sandbox import sandbox_environment

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]

D = Decimal
CENT = D("0.01")


class Api:
    """The API over HTTP with one key: every answer checked for its status."""

    def __init__(self, base: str, key: str):
        self.base, self.http = f"{base}/api/v1", requests.Session()
        self.http.headers.update(bearer(key))

    def get(self, path: str, **params) -> dict:
        response = self.http.get(f"{self.base}{path}", params=params, timeout=60)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, path: str, body: dict | None = None, status: int = 201, key: str | None = None) -> dict:
        headers = {"Idempotency-Key": key} if key else {}
        response = self.http.post(f"{self.base}{path}", json=body, headers=headers, timeout=60)
        assert response.status_code == status, response.text
        return response.json()


def eur(amount: Decimal) -> dict:
    return {"amount": str(amount), "currency": "EUR"}


def dec(money: dict) -> Decimal:
    """A Money object's amount: a decimal string, never a JSON number."""
    assert isinstance(money["amount"], str), money
    return D(money["amount"])


def records(sf, soql: str) -> list[dict]:
    return list(sf.query_all(soql)["records"])


@pytest.fixture
def held(org, services, connected_settings):
    """The small org pulled and billed as of today, every invoice held as a draft; pushed."""
    from connector.sync.pull import pull_changes

    AdminClient(org.url, org.admin_token, org.ca_path).reset("small")
    assert pull_changes(services).failed_records == 0
    services = dataclasses.replace(services, settings=services.settings.replace(hold_invoices_for_review=True))
    today = datetime.now(ZoneInfo(services.settings.billsync_timezone)).date()
    run = run_bill_run(services, today)
    assert run.failures == {}
    assert run.invoices_finalized == 0 and run.invoices_created >= 4
    drain_outbox(services)
    return services


def test_a_month_of_finance_through_the_api_reaches_salesforce_to_the_cent(org, held, connected_settings):
    app = create_app(connected_settings)
    key = new_key(app, "finance", "write")
    sf = sandbox_client(org)
    with live_server(app) as base:
        api = Api(base, key)
        assert {inv["status"] for inv in api.get("/invoices", limit=200)["data"]} == {"draft"}  # all held
        drafts = api.get("/invoices", status="draft", currency="EUR", limit=200)["data"]
        assert len(drafts) >= 4 and {d["number"] for d in drafts} == {None}
        a, b, c, d = sorted(drafts, key=lambda inv: inv["customer_name"])[:4]

        # ---- the drafts: three finalized (numbered, issued today), one voided without a credit note
        finalized = {}
        for draft in (a, b, c):
            done = api.post(f"/invoices/{draft['id']}/finalize", status=200, key=f"finalize-{draft['id']}")
            assert (done["status"], done["payment_status"], done["total"]) == ("open", "unpaid", draft["total"])
            assert done["number"].startswith("INV-") and done["amount_due"] == done["total"]
            finalized[draft["id"]] = done
        issued_on = finalized[a["id"]]["issued_on"]
        assert {inv["issued_on"] for inv in finalized.values()} == {issued_on}
        period = issued_on[:7]
        voided = api.post(f"/invoices/{d['id']}/void", {"reason": "deal lost"}, status=200)
        assert (voided["status"], voided["number"], voided["credit_notes"]) == ("void", None, [])

        # ---- A: a partial payment, without a reference
        a_total = dec(finalized[a["id"]]["total"])
        partial = (a_total / 3).quantize(CENT)
        paid_a = api.post("/payments", {"customer_id": a["customer_id"], "amount": eur(partial),
                                        "received_on": issued_on, "invoice_ids": [a["id"]]}, key="pay-a-1")
        assert [(x["invoice_id"], dec(x["amount"])) for x in paid_a["allocations"]] == [(a["id"], partial)]
        inv_a = api.get(f"/invoices/{a['id']}")
        assert (inv_a["payment_status"], dec(inv_a["amount_due"])) == ("partially_paid", a_total - partial)

        # ---- B: an overpayment; what is left becomes B's credit
        b_total = dec(finalized[b["id"]]["total"])
        over = D("250.00")
        paid_b = api.post("/payments", {"customer_id": b["customer_id"], "amount": eur(b_total + over),
                                        "received_on": issued_on, "reference": "SEPA 2026-4711",
                                        "method": "bank_transfer", "source": "bank"})
        assert [(x["invoice_id"], dec(x["amount"])) for x in paid_b["allocations"]] == [(b["id"], b_total)]
        assert dec(paid_b["unapplied"]) == over
        [balance_b] = api.get(f"/customers/{b['customer_id']}")["balances"]
        assert (dec(balance_b["balance_due"]), dec(balance_b["credit"]), dec(balance_b["net"])) == (0, over, -over)
        assert api.get(f"/invoices/{b['id']}")["status"] == "paid"

        # ---- a refund of part of B's payment: out of the credit it left
        refund = api.post(f"/payments/{paid_b['id']}/refunds",
                          {"amount": eur(D("100.00")), "reason": "returned the surplus", "refunded_on": issued_on},
                          key="refund-b-1")
        assert (dec(refund["amount"]), dec(refund["from_credit"]), refund["reopened"]) == (D("100.00"), D("100.00"),
                                                                                            [])
        [balance_b] = api.get(f"/customers/{b['customer_id']}")["balances"]
        assert dec(balance_b["credit"]) == over - D("100.00")

        # ---- a credit note on one line of A, in full
        line = next(ln for ln in inv_a["lines"] if dec(ln["net"]) > 0)
        note = api.post(f"/invoices/{a['id']}/credit-notes",
                        {"reason": "seats never used", "lines": [{"line": line["line"]}]}, key="credit-a-1")
        rate = D(inv_a["tax_percent"])
        line_tax = (dec(line["net"]) * rate / 100).quantize(CENT, rounding=ROUND_HALF_UP)  # §1, §14
        assert [(ln["line"], ln["net"]) for ln in note["lines"]] == [(line["line"], line["net"])]
        assert (dec(note["net"]), dec(note["tax"]), dec(note["total"])) == (
            dec(line["net"]), line_tax, dec(line["net"]) + line_tax)
        assert dec(note["applied_to_invoice"]) == dec(note["total"]) and dec(note["to_credit_balance"]) == 0

        # ---- push, then what the API answers now
        drain_outbox(held)
        invoices = {i: api.get(f"/invoices/{i}") for i in finalized}
        payments = {p["id"]: api.get(f"/payments/{p['id']}") for p in (paid_a, paid_b)}
        customers = {inv["customer_id"]: api.get(f"/customers/{inv['customer_id']}") for inv in (a, b, c, d)}
        mrr = {cid: sum((dec(s["mrr"]) for s in api.get("/subscriptions", customer_id=cid, limit=200)["data"]),
                        D(0)) for cid in customers}
        remaining_drafts = api.get("/invoices", status="draft", limit=200)["data"]
        log = api.get("/audit-log", limit=200)["data"]

    inv_a, inv_b = invoices[a["id"]], invoices[b["id"]]
    assert (inv_a["status"], inv_a["payment_status"]) == ("open", "partially_paid")
    assert dec(inv_a["amount_due"]) == a_total - partial - dec(note["total"])
    assert dec(inv_a["amount_credited"]) == dec(note["total"])
    assert (inv_b["status"], inv_b["payment_status"], dec(inv_b["amount_due"])) == ("paid", "paid", 0)
    assert [e["action"] for e in reversed(log)] == [
        "invoice.finalize", "invoice.finalize", "invoice.finalize", "invoice.void", "payment.record",
        "payment.record", "payment.refund", "invoice.credit"]

    # ---------------------------------------------------------------- Invoice__c and its lines
    sf_invoices = {r["Name"]: r for r in records(sf, (
        "SELECT Id, Name, Account__c, Status__c, Payment_Status__c, Issue_Date__c, CurrencyIsoCode, Total__c, "
        "Amount_Paid__c, Amount_Credited__c, Balance__c FROM Invoice__c"))}
    # Only finalized invoices reach Salesforce: neither the voided draft nor those still held.
    assert set(sf_invoices) == {inv["number"] for inv in invoices.values()}
    assert len(remaining_drafts) > 0 and all(r["number"] is None for r in remaining_drafts)
    for inv in invoices.values():
        rec = sf_invoices[inv["number"]]
        assert rec["Id"] == inv["salesforce_id"]
        assert rec["Account__c"] == customers[inv["customer_id"]]["salesforce_account_id"]
        assert (rec["Status__c"], rec["Payment_Status__c"], rec["Issue_Date__c"], rec["CurrencyIsoCode"]) == (
            inv["status"], inv["payment_status"], inv["issued_on"], inv["currency"])
        assert (rec["Total__c"], rec["Amount_Paid__c"], rec["Amount_Credited__c"], rec["Balance__c"]) == (
            dec(inv["total"]), dec(inv["amount_paid"]) - dec(inv["amount_refunded"]), dec(inv["amount_credited"]),
            dec(inv["amount_due"])), inv["number"]
        sf_lines = records(sf, "SELECT Description__c, Amount__c, Period_Start__c, Period_End__c FROM "
                               f"Invoice_Line__c WHERE Invoice__c = '{rec['Id']}'")
        assert sorted((r["Description__c"], r["Amount__c"], r["Period_Start__c"], r["Period_End__c"])
                      for r in sf_lines) == sorted((ln["description"], dec(ln["net"]), ln["starts_on"],
                                                    ln["ends_before"]) for ln in inv["lines"]), inv["number"]

    # ---------------------------------------------------------------- Payment__c and Refund__c
    sf_payments = {r["Id"]: r for r in records(sf, "SELECT Id, Name, Account__c, Amount__c, Unapplied_Amount__c, "
                                                   "Payment_Date__c, Reference__c, Status__c FROM Payment__c")}
    assert set(sf_payments) == {p["salesforce_id"] for p in payments.values()}
    year = issued_on[:4]
    for payment_id, name, status in ((paid_a["id"], f"PAY-{year}-{paid_a['id']:06d}", "succeeded"),
                                     (paid_b["id"], "SEPA 2026-4711", "partially_refunded")):
        payment = payments[payment_id]
        rec = sf_payments[payment["salesforce_id"]]
        from_credit = sum((dec(r["from_credit"]) for r in payment["refunds"]), D(0))
        assert (rec["Name"], rec["Status__c"], rec["Payment_Date__c"]) == (name, status, payment["received_on"])
        assert rec["Account__c"] == customers[payment["customer_id"]]["salesforce_account_id"]
        assert (rec["Amount__c"], rec["Unapplied_Amount__c"]) == (dec(payment["amount"]),
                                                                 dec(payment["unapplied"]) - from_credit)
    assert sf_payments[payments[paid_a["id"]]["salesforce_id"]]["Reference__c"] is None
    assert sf_payments[payments[paid_b["id"]]["salesforce_id"]]["Reference__c"] == "SEPA 2026-4711"

    [sf_refund] = records(sf, "SELECT Name, Payment__c, Account__c, Amount__c, From_Credit__c, Refund_Date__c, "
                              "Reason__c FROM Refund__c")
    [refund] = payments[paid_b["id"]]["refunds"]
    assert (sf_refund["Name"], sf_refund["Payment__c"], sf_refund["Account__c"]) == (
        f"RFD-{year}-{refund['id']:06d}", payments[paid_b["id"]]["salesforce_id"],
        customers[b["customer_id"]]["salesforce_account_id"])
    assert (sf_refund["Amount__c"], sf_refund["From_Credit__c"], sf_refund["Refund_Date__c"], sf_refund["Reason__c"]) \
        == (dec(refund["amount"]), dec(refund["from_credit"]), refund["refunded_on"], refund["reason"])

    # ---------------------------------------------------------------- Credit_Note__c and its line
    [api_note] = inv_a["credit_notes"]
    [sf_note] = records(sf, "SELECT Id, Name, Account__c, Invoice__c, Issue_Date__c, Net__c, Tax__c, Total__c, "
                            "Applied_To_Invoice__c, To_Credit_Balance__c, Reason__c, Status__c FROM Credit_Note__c")
    assert (sf_note["Name"], sf_note["Invoice__c"], sf_note["Account__c"], sf_note["Issue_Date__c"]) == (
        api_note["number"], inv_a["salesforce_id"], customers[a["customer_id"]]["salesforce_account_id"],
        api_note["issued_on"])
    assert [sf_note[f] for f in ("Net__c", "Tax__c", "Total__c", "Applied_To_Invoice__c", "To_Credit_Balance__c")] \
        == [dec(api_note[f]) for f in ("net", "tax", "total", "applied_to_invoice", "to_credit_balance")]
    assert (sf_note["Reason__c"], sf_note["Status__c"]) == ("seats never used", "applied")
    [sf_note_line] = records(sf, "SELECT Credit_Note__c, Amount__c, Tax_Rate__c, Tax__c, Invoice_Line__r.Description__c,"
                                 " Invoice_Line__r.Amount__c, Invoice_Line__r.Period_Start__c FROM Credit_Note_Line__c")
    [api_note_line] = api_note["lines"]
    credited = next(ln for ln in inv_a["lines"] if ln["line"] == api_note_line["line"])
    assert (sf_note_line["Credit_Note__c"], sf_note_line["Amount__c"], sf_note_line["Tax_Rate__c"]) == (
        sf_note["Id"], dec(api_note_line["net"]), D(api_note_line["tax_percent"]))
    assert sf_note_line["Tax__c"] == dec(api_note["tax"])  # its only line carries all its tax
    assert (sf_note_line["Invoice_Line__r"]["Description__c"], sf_note_line["Invoice_Line__r"]["Amount__c"],
            sf_note_line["Invoice_Line__r"]["Period_Start__c"]) == (credited["description"], dec(credited["net"]),
                                                                    credited["starts_on"])
    assert dec(credited["credited"]) == dec(credited["net"])

    # ---------------------------------------------------------------- each Account's summary
    accounts = {r["Id"]: r for r in records(sf, "SELECT Id, Balance__c, MRR__c, Billing_Status__c FROM Account")}
    for cid, customer in customers.items():
        rec = accounts[customer["salesforce_account_id"]]
        [balance] = [x for x in customer["balances"] if x["currency"] == customer["currency"]] or [None]
        owed = max(dec(balance["net"]), D(0)) if balance else D(0)
        assert (rec["Balance__c"], rec["MRR__c"]) == (owed, mrr[cid]), cid
        overdue = balance["overdue_invoices"] if balance else 0
        assert (overdue, rec["Billing_Status__c"]) == (0, "active"), cid
    assert accounts[customers[a["customer_id"]]["salesforce_account_id"]]["Balance__c"] == \
        a_total - partial - dec(note["total"])
    assert accounts[customers[b["customer_id"]]["salesforce_account_id"]]["Balance__c"] == 0  # credit, nothing owed

    # ---------------------------------------------------------------- reconcile agrees for the month
    env = sandbox_environment(org, connected_settings.database_url)
    result = CliRunner().invoke(cli, ["reconcile", "--period", period], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"billsync and Salesforce agree for {period}" in result.output
