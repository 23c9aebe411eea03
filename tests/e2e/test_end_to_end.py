"""Salesforce deals in, correct invoices out: the whole path against the sandbox.

The sandbox's small org (20 accounts, 30 opportunities of which 12 won, every pricing model)
is pulled; three monthly bill runs (5 June, 5 July, 5 August 2026) bill it, with a sales rep
amending one deal and then cancelling it in Salesforce between the runs; the push writes
everything back. Salesforce must then hold exactly the engine's invoices, lines and account
summaries, to the cent, and ``billsync reconcile`` must agree for each month.

Hand-computed anchors (Acme Corp, EUR, 19 % VAT, 45 days' terms; the deal started 5 Jan
with Licences ×12 graduated 5×200 + 5×150 + 2×100 = 1,950.00, Platform 500.00 and Support
10 % of Licences = 195.00, so 2,645.00 a month, billed in advance from the 5th):

- 5 Jun: six periods (5 Jan … 5 Jul) × 2,645.00 = 15,870.00 + 19 % 3,015.30 = 18,885.30.
- Amendment effective 20 Jun: Licences 12 → 15 (5×200 + 5×150 + 5×100 = 2,250.00); 15 of the
  30 days of 5 Jun – 5 Jul left: Licences −975.00 / +1,125.00, Support follows as one line
  (225.00 − 195.00) × 15/30 = +15.00, net +165.00.
  5 Jul: 2,250.00 + 500.00 + 225.00 = 2,975.00 + 165.00 = 3,140.00 + 19 % 596.60 = 3,736.60.
- Cancellation, immediate, effective 20 Jul: 16 of the 31 days of 5 Jul – 5 Aug are credited:
  Licences 2,250 × 16/31 = 1,161.29, Platform 500 × 16/31 = 258.06, Support 225 × 16/31 =
  116.13: −1,535.48 net, −291.74 VAT = −1,827.22. Nothing is billed for 5 Aug – 5 Sep, so the
  5 Aug invoice is 0.00 and the credit (1,827.22) goes to Acme's balance.
- Acme's Account: Balance 18,885.30 + 3,736.60 − 1,827.22 = 20,794.68; MRR 0 (cancelled).

Wayne Corp (EUR, 20 %, the same deal shape, untouched): MRR 2,645.00, ARR 31,740.00.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from click.testing import CliRunner
from simple_salesforce import Salesforce
from sqlmodel import Session, func, select

from billing_engine.storage.invoices import Invoice, InvoiceLine
from billing_engine.storage.outbox import OutboxRow
from connector.billing_jobs import run_bill_run
from connector.cli import cli
from connector.sync.installation import keys_of
from sfsandbox.server import AdminClient
from tests.support.sandbox import sandbox_environment

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

D = Decimal
RUNS = (date(2026, 6, 5), date(2026, 7, 5), date(2026, 8, 5))


def drain(services):
    from connector.sync.push import push_outbox

    for _ in range(20):
        push_outbox(services, worker_id="e2e", batch_size=200)
        with Session(services.engine) as session:
            left = session.exec(select(func.count()).select_from(OutboxRow)
                                .where(OutboxRow.status.in_(("pending", "in_flight")))).one()
        if left == 0:
            return
    raise AssertionError(f"{left} outbox rows still pending")


def rep(org) -> Salesforce:
    """A sales rep's own connection to the org (not billsync's)."""
    return Salesforce(instance_url=org.url, session_id=org.issue_token()["access_token"],
                      session=org.requests_session(), version="59.0", parse_float=Decimal)


def close_won(sf: Salesforce, account_id: str, kind: str, reference: str, starts_on: str, **extra) -> str:
    book = sf.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true")["records"][0]["Id"]
    created = sf.Opportunity.create({"Name": f"Acme - {kind}", "AccountId": account_id, "StageName": "Negotiation",
                                     "CloseDate": starts_on, "Type": kind, "Pricebook2Id": book,
                                     "Subscription_Reference__c": reference, "Service_Start_Date__c": starts_on,
                                     **extra})
    return created["id"]


def query(sf: Salesforce, soql: str) -> list[dict]:
    return sf.query_all(soql)["records"]


def test_deals_to_invoices_in_salesforce_to_the_cent(org, services, connected_settings):
    from connector.sync.pull import pull_changes

    AdminClient(org.url, org.admin_token, org.ca_path).reset("small")
    sf = rep(org)
    assert len(query(sf, "SELECT Id FROM Account")) == 20
    assert len(query(sf, "SELECT Id FROM Opportunity")) == 30
    models = {r["Pricing_Model__c"] for r in query(sf, "SELECT Pricing_Model__c FROM Product2")}
    assert models == {"flat", "per_unit", "graduated", "volume", "package", "allowance", "percent_of"}

    report = pull_changes(services)
    assert report.failed_records == 0, report.object_errors
    acme = query(sf, "SELECT Id, AccountId FROM Opportunity WHERE Name = 'Acme Corp - New subscription'")[0]
    acme_sub = f"sub-{acme['Id']}"
    wayne_account = query(sf, "SELECT Id FROM Account WHERE Name = 'Wayne Corp'")[0]["Id"]

    # The seeded deals back-bill up to 11 months: finalize them all rather than hold them for review.
    services = dataclasses.replace(services, settings=services.settings.replace(bill_run_max_periods=24))

    # ---- 5 June
    first = run_bill_run(services, RUNS[0])
    assert (first.invoices_finalized, first.failures) == (12, {})
    drain(services)

    # A rep wins an amendment: Licences 12 → 15 from 20 June.
    amendment = close_won(sf, acme["AccountId"], "Amendment", acme_sub, "2026-06-20")
    lic = query(sf, "SELECT Id, UnitPrice FROM PricebookEntry WHERE Product2.ProductCode = 'LIC' "
                    "AND CurrencyIsoCode = 'EUR' AND Pricebook2.IsStandard = true")[0]
    assert lic["UnitPrice"] == 0  # graduated: the tiers price it, the list price is 0
    sf.OpportunityLineItem.create({"OpportunityId": amendment, "PricebookEntryId": lic["Id"], "Quantity": 15,
                                   "UnitPrice": 0})
    sf.Opportunity.update(amendment, {"StageName": "Closed Won"})
    assert pull_changes(services).failed_records == 0

    # ---- 5 July
    second = run_bill_run(services, RUNS[1])
    # The two deals billed yearly (Licences and Platform per year) owe nothing in July.
    assert (second.invoices_finalized, second.failures) == (10, {})
    drain(services)

    # Then cancels it, immediately, from 20 July.
    cancellation = close_won(sf, acme["AccountId"], "Cancellation", acme_sub, "2026-07-20",
                             Cancellation_Mode__c="immediate")
    sf.Opportunity.update(cancellation, {"StageName": "Closed Won"})
    assert pull_changes(services).failed_records == 0

    # ---- 5 August
    third = run_bill_run(services, RUNS[2])
    assert third.failures == {}
    drain(services)

    # ---------------------------------------------------------------- what Salesforce holds
    keys = keys_of(services.engine)  # the external ids this installation writes
    with Session(services.engine) as session:
        invoices = {keys.invoice(inv.id): inv for inv in session.exec(select(Invoice)).all()}
        lines = {keys.line(ln.id): ln
                 for ln in session.exec(select(InvoiceLine).where(InvoiceLine.credit_note_id.is_(None)))}
    sf_invoices = {r["Billsync_Invoice_Id__c"]: r for r in query(
        sf, "SELECT Id, Billsync_Invoice_Id__c, Name, Account__c, Status__c, Issue_Date__c, CurrencyIsoCode, "
            "Subtotal__c, Discount__c, Tax__c, Total__c, Balance__c FROM Invoice__c")}
    assert set(sf_invoices) == set(invoices)
    for key, inv in invoices.items():
        rec = sf_invoices[key]
        assert inv.salesforce_id == rec["Id"], "the engine remembers each invoice's Salesforce record"
        assert (rec["Name"], rec["Status__c"], rec["Issue_Date__c"], rec["CurrencyIsoCode"]) == \
            (inv.number, inv.status, inv.issued_on.isoformat(), inv.currency), key
        assert (rec["Subtotal__c"], rec["Discount__c"], rec["Tax__c"], rec["Total__c"], rec["Balance__c"]) == \
            (inv.subtotal, inv.discount, inv.tax, inv.total, inv.balance), key

    sf_lines = {r["Billsync_Line_Id__c"]: r for r in query(
        sf, "SELECT Billsync_Line_Id__c, Invoice__r.Billsync_Invoice_Id__c, Kind__c, Quantity__c, Amount__c, "
            "Period_Start__c, Period_End__c, Explanation__c FROM Invoice_Line__c")}
    assert set(sf_lines) == set(lines)
    for key, ln in lines.items():
        rec = sf_lines[key]
        assert rec["Invoice__r"]["Billsync_Invoice_Id__c"] == keys.invoice(ln.invoice_id)
        assert (rec["Kind__c"], rec["Quantity__c"], rec["Amount__c"]) == (ln.kind, ln.quantity, ln.net), key
        assert (rec["Period_Start__c"], rec["Period_End__c"]) == (ln.starts_on.isoformat(),
                                                                  ln.ends_before.isoformat())
        # A rep sees why the amount is what it is.
        assert rec["Explanation__c"] and rec["Explanation__c"] == ln.explanation, key

    # Acme, by hand (module docstring).
    acme_invoices = sorted((r for r in sf_invoices.values() if r["Account__c"] == acme["AccountId"]),
                           key=lambda r: r["Issue_Date__c"])
    assert [(r["Issue_Date__c"], r["Subtotal__c"], r["Tax__c"], r["Total__c"]) for r in acme_invoices] == [
        ("2026-06-05", D("15870.00"), D("3015.30"), D("18885.30")),
        ("2026-07-05", D("3140.00"), D("596.60"), D("3736.60")),
        ("2026-08-05", D("0.00"), D("0.00"), D("0.00")),
    ]
    july = acme_invoices[1]["Billsync_Invoice_Id__c"]
    july_lines = defaultdict(list)
    for rec in sf_lines.values():
        if rec["Invoice__r"]["Billsync_Invoice_Id__c"] == july:
            july_lines[rec["Kind__c"]].append(rec["Amount__c"])
    july_explanations = sorted(rec["Explanation__c"] for rec in sf_lines.values()
                               if rec["Invoice__r"]["Billsync_Invoice_Id__c"] == july)
    assert any("days" in text for text in july_explanations), july_explanations  # e.g. "Unused time 16/30 days"
    assert {k: sorted(v) for k, v in july_lines.items()} == {
        "recurring": [D("225.00"), D("500.00"), D("2250.00")],
        "proration_credit": [D("-975.00")],
        "proration_charge": [D("15.00"), D("1125.00")],
    }

    accounts = {r["Id"]: r for r in query(sf, "SELECT Id, Billsync_Customer_Id__c, MRR__c, ARR__c, Balance__c, "
                                              "Last_Invoice_Date__c, Billing_Status__c FROM Account")}
    acme_account, wayne = accounts[acme["AccountId"]], accounts[wayne_account]
    assert (acme_account["MRR__c"], acme_account["Balance__c"], acme_account["Last_Invoice_Date__c"]) == \
        (D("0.00"), D("20794.68"), "2026-08-05")
    assert (wayne["MRR__c"], wayne["ARR__c"]) == (D("2645.00"), D("31740.00"))
    # Every billed customer's summary is the engine's, to the cent.
    from connector.sync.records import load_account_summaries

    today = datetime.now(UTC).date()
    with Session(services.engine) as session:
        customers = {inv.customer_id for inv in invoices.values()}
        summaries = load_account_summaries(session, customers, today)
    assert len(summaries) == 12
    for summary in summaries.values():
        rec = accounts[summary["salesforce_account_id"]]
        assert rec["Billsync_Customer_Id__c"] == summary["customer_id"]
        assert (rec["MRR__c"], rec["ARR__c"], rec["Balance__c"], rec["Billing_Status__c"]) == \
            (summary["mrr"], summary["arr"], summary["balance"], summary["billing_status"]), rec
        assert rec["Last_Invoice_Date__c"] == summary["last_invoice_on"].isoformat()

    # ---------------------------------------------------------------- reconcile agrees
    env = sandbox_environment(org, connected_settings.database_url)
    for period in ("2026-06", "2026-07", "2026-08"):
        result = CliRunner().invoke(cli, ["reconcile", "--period", period], env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert f"billsync and Salesforce agree for {period}" in result.output
