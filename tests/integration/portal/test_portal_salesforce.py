"""What customers do in the portal reaches Salesforce (the sandbox): each confirmed change is one
Closed Won deal (Amendment or Cancellation, LeadSource Self-Service) naming the subscription, sent
through the outbox exactly once; the pull does not apply those deals again; a message to sales is
a task for the Account's owner."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import update
from sqlmodel import Session, select

from billing_engine.storage.outbox import OutboxRow
from billing_engine.use_cases import subscriptions
from connector import create_app
from connector.sync.pull import pull_changes
from tests.integration.portal.conftest import TOKEN, csrf_token, open_portal
from tests.integration.portal.test_portal import confirm, preview, text
from tests.integration.sync.test_pull import salesforce
from tests.integration.sync.test_subscription_records import drain
from tests.support.portal import seed_connected

pytestmark = pytest.mark.timeout(180)

SUBMISSION = re.compile(r'name="submission" value="([0-9a-f]{32})"')

DEALS = ("SELECT Id, Name, AccountId, StageName, Type, LeadSource, Subscription_Reference__c, Service_Start_Date__c, "
         "Amount, CurrencyIsoCode, Cancellation_Mode__c, Description, Billsync_Change_Id__c FROM Opportunity "
         "WHERE LeadSource = 'Self-Service' ORDER BY CreatedDate")


@pytest.fixture
def connected(org, services, connected_settings):
    """An Account owned by a rep in the sandbox, pulled, and its customer's subscription seeded."""
    sf = salesforce(org)
    connected = seed_connected(sf, services.engine)
    pull_changes(services)
    client = create_app(connected_settings).test_client()
    assert open_portal(client, services.engine, connected.seeded.customer_a).status_code == 303
    return sf, client, connected.seeded, connected.rep, connected.account


def test_each_portal_change_is_one_self_service_deal_and_is_not_applied_again(connected, services):
    sf, client, seeded, _rep, account = connected
    upgrade = preview(client, "quantity", item="cus-portal-a-seats", quantity="15")
    assert confirm(client, upgrade).status_code == 303
    cancel = preview(client, "cancel", reason="switching", details="Moving to an in-house tool")
    assert confirm(client, cancel).status_code == 303
    drain(services, seeded.today)

    amendment, cancellation = sf.query(DEALS)["records"]
    assert (amendment["Type"], amendment["StageName"], amendment["AccountId"]) == ("Amendment", "Closed Won", account)
    assert amendment["Subscription_Reference__c"] == "sub-cus-portal-a"
    assert amendment["Service_Start_Date__c"] == seeded.today.isoformat()
    assert Decimal(str(amendment["Amount"])) == Decimal("300.00")  # MRR 1,950.00 → 2,250.00
    assert "quantity 12 → 15" in amendment["Description"]
    assert cancellation["Type"] == "Cancellation" and cancellation["Cancellation_Mode__c"] == "end_of_term"
    assert "switching: Moving to an in-house tool" in cancellation["Description"]
    assert Decimal(str(cancellation["Amount"])) == Decimal("-2250.00")
    [shown] = sf.query(f"SELECT MRR__c FROM Account WHERE Id = '{account}'")["records"]
    assert Decimal(str(shown["MRR__c"])) == Decimal("2250.00")

    # Sent again (a worker died before settling its row): the same deals, updated in place.
    with Session(services.engine) as session:
        session.execute(update(OutboxRow).where(OutboxRow.topic == "subscription.self_service_changed")
                        .values(status="pending", next_attempt_at=datetime.combine(seeded.today, time(5), UTC)))
        session.commit()
    drain(services, seeded.today)
    assert len(sf.query(DEALS)["records"]) == 2

    # The pull reads the won deals and leaves these out: no second amendment, no error.
    report = pull_changes(services)
    with Session(services.engine) as session:
        sub = subscriptions.get_subscription(session, "sub-cus-portal-a")
    assert len(sub.amendments) == 2
    [opportunities] = [o for o in report.objects if o.object_name == "Opportunity"]
    assert (opportunities.fetched, opportunities.applied, opportunities.failed, opportunities.flagged) == (0, 0, 0, 0)
    assert opportunities.error is None


def test_talk_to_sales_is_a_task_for_the_account_owner(connected, services):
    sf, client, seeded, rep, account = connected
    empty = client.post("/portal/contact", data={"message": " ", "csrf_token": csrf_token(client, "/portal/contact")})
    assert empty.status_code == 422 and "write a few words" in text(empty)
    page = text(client.get("/portal/contact"))
    form = {"message": "We open a second office: 20 more seats?",
            "csrf_token": TOKEN.search(page).group(1), "submission": SUBMISSION.search(page).group(1)}
    for _ in range(2):  # a double click
        assert client.post("/portal/contact", data=form).status_code == 303
    drain(services, seeded.today)
    [task] = sf.query("SELECT Subject, Description, WhatId, OwnerId, Status, Billsync_Message_Id__c FROM Task")[
        "records"]
    assert (task["OwnerId"], task["WhatId"], task["Status"]) == (rep, account, "Not Started")
    assert "Alpha SAS" in task["Subject"] and "20 more seats" in task["Description"]
    with Session(services.engine) as session:
        assert {row.status for row in session.exec(select(OutboxRow).where(
            OutboxRow.topic == "customer.sales_requested"))} == {"done"}


def test_billing_details_edited_in_the_portal_are_written_to_the_account(connected, services):
    sf, client, seeded, _rep, account = connected
    page = "/portal/billing-details"
    saved = client.post(page, data={"line1": "12 quai Saint-Antoine", "line2": "", "postal_code": "69002",
                                    "city": "Lyon", "country": "FR", "vat_id": "FR40303265045",
                                    "csrf_token": csrf_token(client, page)})
    assert saved.status_code == 303
    drain(services, seeded.today)
    [shown] = sf.query(f"SELECT BillingStreet, BillingCity, BillingPostalCode, BillingCountry, VAT_Id__c FROM Account "
                       f"WHERE Id = '{account}'")["records"]
    assert (shown["BillingStreet"], shown["BillingCity"], shown["BillingCountry"], shown["VAT_Id__c"]) == (
        "12 quai Saint-Antoine", "Lyon", "FR", "FR40303265045")
    pull_changes(services)  # the Account read back says the same: the customer keeps what it entered
    with Session(services.engine) as session:
        from billing_engine.use_cases.customers import get_customer

        assert get_customer(session, seeded.customer_a).vat_id == "FR40303265045"


def test_a_change_made_while_salesforce_is_down_arrives_once_when_it_is_back(connected, org, connected_settings):
    from connector.sync.push import push_outbox
    from connector.wiring import build_services
    from sfsandbox.server import AdminClient

    sf, client, seeded, _rep, _account = connected
    change = preview(client, "quantity", item="cus-portal-a-seats", quantity="15")
    assert confirm(client, change).status_code == 303
    quick = build_services(connected_settings.replace(sf_retry_max_seconds=1))
    admin = AdminClient(org.url, org.admin_token, org.ca_path)
    at = datetime.combine(seeded.today, time(6), UTC)
    admin.faults(error_rate_5xx="1")
    try:
        push_outbox(quick, worker_id="w1", batch_size=200, now=at)
    finally:
        admin.faults(error_rate_5xx="0")
    assert sf.query(DEALS)["records"] == []
    for _ in range(6):
        at += timedelta(hours=1)
        push_outbox(quick, worker_id="w1", batch_size=200, now=at)
    [deal] = sf.query(DEALS)["records"]
    assert deal["Type"] == "Amendment"
    with Session(quick.engine) as session:
        row = session.exec(select(OutboxRow).where(OutboxRow.topic == "subscription.self_service_changed")).one()
    assert row.status == "done"
    quick.engine.dispose()
