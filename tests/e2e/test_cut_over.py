"""Going live on an org with history: the first bill run invoices only this month, MRR history
stays true, and without a cut-over the bill run refuses (docs/salesforce-setup.md, Going live).

The sandbox org gets four EUR accounts (20 % VAT) and one Closed Won deal each, made through
its REST API as a rep would; M is the first day of the current month (UTC):

- Acme, closed 4 years ago (M − 48 months): Seats 12 × 25 = 300.00 a month, and Onboarding
  1,500.00 once, on its start;
- Globex, closed 1 year ago (M − 12 months): Platform fee (yearly) 1,200.00 a year;
- Hooli, closed this month (M): Seats 4 × 25 = 100.00 a month and Onboarding 1,500.00;
- Initech, closed 2 years ago (M − 24 months): Seats 2 × 25 = 50.00 a month, with
  Billed_Through__c on the last day of this month (invoiced elsewhere until then).

Without the cut-over, Acme alone would be 49 months × 300.00 + 1,500.00 = 16,200.00 net.
With BILLING_STARTS_ON = M and the bill run as of today (a day of this month):

- Acme: this month only, [M, M + 1 month) 300.00 + 20 % = 360.00 (the 2022 onboarding is not billed);
- Globex: its yearly period that starts this month, [M, M + 1 year) 1,200.00 + 20 % = 1,440.00;
- Hooli: 100.00 + 1,500.00 = 1,600.00 + 20 % = 1,920.00;
- Initech: nothing (billed through the end of this month).

MRR keeps each deal's true start: 300.00 new 48 months ago, 50.00 new 24 months ago, 100.00
(1,200 / 12) new 12 months ago, 100.00 new this month; 550.00 closing this month.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from click.testing import CliRunner
from simple_salesforce import Salesforce
from sqlmodel import Session, select

from billing_engine.periods import add_months
from billing_engine.storage.invoices import Invoice, invoice_lines
from billing_engine.use_cases.subscriptions import get_subscription
from connector.cli import cli
from tests.support.billing import snapshot
from tests.support.sandbox import sandbox_environment

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

D = Decimal
TODAY = datetime.now(UTC).date()
M = TODAY.replace(day=1)


def rep(org) -> Salesforce:
    """A sales rep's own connection to the org."""
    return Salesforce(instance_url=org.url, session_id=org.issue_token()["access_token"],
                      session=org.requests_session(), version="59.0", parse_float=Decimal)


def catalogue(sf: Salesforce) -> dict[str, str]:
    """Three products with their standard EUR price book entries: code → PricebookEntry id."""
    book = sf.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true")["records"][0]["Id"]
    entries = {}
    for code, name, model, charge, interval, price in (
            ("SEATS", "Seats", "per_unit", "recurring", "month", "25"),
            ("PLATFORM-Y", "Platform fee (yearly)", "flat", "recurring", "year", "1200"),
            ("ONBOARD", "Onboarding", "flat", "one_time", None, "1500")):
        product = sf.Product2.create({"Name": name, "ProductCode": code, "IsActive": True, "Pricing_Model__c": model,
                                      "Charge_Type__c": charge, "Billing_Interval__c": interval})["id"]
        entries[code] = sf.PricebookEntry.create({"Pricebook2Id": book, "Product2Id": product, "IsActive": True,
                                                  "CurrencyIsoCode": "EUR", "UnitPrice": price})["id"]
    return entries


def won_deal(sf: Salesforce, entries: dict[str, str], account: str, starts_on: date,
             lines: list[tuple[str, int, str]], **extra) -> str:
    """An Account and a New Business deal starting on ``starts_on``, closed won: the Opportunity id."""
    book = sf.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true")["records"][0]["Id"]
    account_id = sf.Account.create({"Name": account, "CurrencyIsoCode": "EUR", "Tax_Rate__c": 20,
                                    "Payment_Terms_Days__c": 30})["id"]
    deal = sf.Opportunity.create({"Name": f"{account} - New subscription", "AccountId": account_id,
                                  "StageName": "Negotiation", "CloseDate": starts_on.isoformat(),
                                  "Service_Start_Date__c": starts_on.isoformat(), "Type": "New Business",
                                  "Pricebook2Id": book, "CurrencyIsoCode": "EUR", **extra})["id"]
    for code, quantity, price in lines:
        sf.OpportunityLineItem.create({"OpportunityId": deal, "PricebookEntryId": entries[code],
                                       "Quantity": quantity, "UnitPrice": price})
    sf.Opportunity.update(deal, {"StageName": "Closed Won"})
    return deal


def run(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    return result.exit_code, result.output


def month(day: date) -> str:
    return day.isoformat()[:7]


def test_going_live_bills_only_this_month_and_keeps_mrr_history(org, services, connected_settings):
    from connector.sync.pull import pull_changes

    sf = rep(org)
    entries = catalogue(sf)
    deals = {
        "Acme": won_deal(sf, entries, "Acme", add_months(M, -48), [("SEATS", 12, "25"), ("ONBOARD", 1, "1500")]),
        "Globex": won_deal(sf, entries, "Globex", add_months(M, -12), [("PLATFORM-Y", 1, "1200")]),
        "Hooli": won_deal(sf, entries, "Hooli", M, [("SEATS", 4, "25"), ("ONBOARD", 1, "1500")]),
        "Initech": won_deal(sf, entries, "Initech", add_months(M, -24), [("SEATS", 2, "25")],
                            Billed_Through__c=(add_months(M, 1) - timedelta(days=1)).isoformat()),
    }
    report = pull_changes(services)
    assert report.failed_records == 0, report.object_errors
    with Session(services.engine) as session:
        subs = {name: get_subscription(session, f"sub-{deal}") for name, deal in deals.items()}
    # Subscriptions keep their true start; only Initech carries its own floor (the day after Billed_Through__c).
    assert {name: sub.starts_on for name, sub in subs.items()} == {
        "Acme": add_months(M, -48), "Globex": add_months(M, -12), "Hooli": M, "Initech": add_months(M, -24)}
    assert {name: sub.bills_from for name, sub in subs.items()} == {
        "Acme": None, "Globex": None, "Hooli": None, "Initech": add_months(M, 1)}

    # Without BILLING_STARTS_ON, the connected org's bill run refuses in one line and writes nothing.
    before = snapshot(services.engine)
    code, output = run(["bill-run", "--as-of", TODAY.isoformat()],
                       sandbox_environment(org, connected_settings.database_url, BILLING_STARTS_ON=""))
    assert code != 0
    [line] = output.splitlines()
    assert line.startswith("error: set BILLING_STARTS_ON to the first day billsync bills (e.g. ")
    assert line.endswith("): without it, every won deal would be billed from its start date")
    assert snapshot(services.engine) == before

    # With the cut-over on the first of this month: only this month's periods.
    env = sandbox_environment(org, connected_settings.database_url, BILLING_STARTS_ON=M.isoformat())
    code, output = run(["bill-run", "--as-of", TODAY.isoformat()], env)
    assert code == 0, output
    assert f"bill run as of {TODAY}: 3 invoices created, 3 finalized" in output
    customer_of = {name: sub.customer_id for name, sub in subs.items()}
    with Session(services.engine) as session:
        invoices = {inv.customer_id: inv for inv in session.exec(select(Invoice)).all()}
        lines = {cid: [(ln.product_code, ln.kind, ln.starts_on, ln.ends_before, ln.net)
                       for ln in invoice_lines(session, inv.id)] for cid, inv in invoices.items()}
    assert set(invoices) == {customer_of[name] for name in ("Acme", "Globex", "Hooli")}
    totals = {name: (invoices[customer_of[name]].net, invoices[customer_of[name]].tax,
                     invoices[customer_of[name]].total) for name in ("Acme", "Globex", "Hooli")}
    assert totals == {"Acme": (D("300.00"), D("60.00"), D("360.00")),
                      "Globex": (D("1200.00"), D("240.00"), D("1440.00")),
                      "Hooli": (D("1600.00"), D("320.00"), D("1920.00"))}
    next_month = add_months(M, 1)
    assert lines[customer_of["Acme"]] == [("SEATS", "recurring", M, next_month, D("300.00"))]
    assert lines[customer_of["Globex"]] == [("PLATFORM-Y", "recurring", M, add_months(M, 12), D("1200.00"))]
    assert sorted(lines[customer_of["Hooli"]]) == sorted([
        ("SEATS", "recurring", M, next_month, D("100.00")),
        ("ONBOARD", "one_time", M, M + timedelta(days=1), D("1500.00"))])
    # Every invoiced day is on or after the cut-over.
    assert all(start >= M for invoice_lines_ in lines.values() for _, _, start, _, _ in invoice_lines_)

    # MRR history is still right: each deal counts from its true start.
    code, output = run(["metrics", "mrr", "--from", month(add_months(M, -48)), "--to", month(M), "--csv"], env)
    assert code == 0, output
    rows = {row["month"]: row for row in csv.DictReader(io.StringIO(output))}
    new = {m: D(row["new"]) for m, row in rows.items() if D(row["new"])}
    assert new == {month(add_months(M, -48)): D("300.00"), month(add_months(M, -24)): D("50.00"),
                   month(add_months(M, -12)): D("100.00"), month(M): D("100.00")}
    assert D(rows[month(add_months(M, -48))]["closing"]) == D("300.00")
    assert D(rows[month(add_months(M, -1))]["closing"]) == D("450.00")
    assert (D(rows[month(M)]["closing"]), D(rows[month(M)]["arr"])) == (D("550.00"), D("6600.00"))

    # The same day again bills nothing more.
    code, output = run(["bill-run", "--as-of", TODAY.isoformat()], env)
    assert code == 0 and f"bill run as of {TODAY}: 0 invoices created" in output
