"""The checkout over HTTP, with the sandbox standing in for the org: an order exists in billsync
at once and reaches Salesforce with the push, exactly once, whatever happens in between."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from billing_engine.customers import Customer
from billing_engine.storage.audit import AuditRow
from billing_engine.storage.catalog import CustomerRow
from billing_engine.storage.outbox import OutboxRow
from billing_engine.storage.subscriptions import SubscriptionRow
from billing_engine.use_cases.customers import upsert_customer
from billing_engine.use_cases.exports import subscriptions_for_export
from billing_engine.use_cases.preview import preview_subscription_change
from billing_engine.use_cases.self_service import Order, place_order, quote_order
from connector import create_app
from connector.queue import MAX_ATTEMPTS
from connector.settings import load_settings
from connector.sync.deals import DealError
from connector.sync.pull import pull_changes
from connector.sync.push import push_outbox
from connector.wiring import build_services
from sfsandbox.server import AdminClient
from tests.support.sandbox import sandbox_environment
from tests.support.selfservice import csrf_token, form_key, plan_id, seed_catalog

BUYER = {"company_name": "Zephyr Analytics SAS", "contact_email": "billing@zephyr-analytics.example",
         "country": "FR", "vat_id": "FR 40 303 265 045", "quantity": "12"}


@pytest.fixture
def shop(org, services, connected_settings):
    seed_catalog(org, services)
    app = create_app(connected_settings)
    return app.test_client(), services


def open_form(client, plan: str) -> dict[str, str]:
    page = client.get(f"/buy/checkout?plan={plan}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    return {"csrf_token": csrf_token(html), "key": form_key(html), "plan": plan, **BUYER}


def counts(engine) -> tuple[int, int, int]:
    with Session(engine) as session:
        return (session.scalar(select(func.count()).select_from(CustomerRow)),
                session.scalar(select(func.count()).select_from(SubscriptionRow)),
                session.scalar(select(func.count()).select_from(AuditRow)))


def deals_in_salesforce(sf, company: str) -> tuple[list[dict], list[dict], list[dict]]:
    accounts = list(sf.query_all(f"SELECT Id, Name, VAT_Id__c, Billsync_Customer_Id__c FROM Account WHERE Name = '{company}'"))
    deals = list(sf.query_all("SELECT Id, AccountId, StageName, LeadSource, IsWon, Amount, Billsync_Subscription_Id__c "
                         "FROM Opportunity WHERE LeadSource = 'Self-Service'"))
    lines = list(sf.query_all("SELECT Id, OpportunityId, Quantity, TotalPrice, ProductCode FROM OpportunityLineItem"))
    return accounts, deals, lines


def test_an_order_exists_at_once_and_the_push_writes_its_account_and_won_deal_once(shop):
    client, services = shop
    plan = plan_id(services.engine)
    form = open_form(client, plan)
    preview = client.post("/buy/checkout", data=form)
    assert preview.status_code == 200
    text = preview.get_data(as_text=True)
    assert "€1,950.00" in text
    assert counts(services.engine)[:2] == (0, 0)  # a preview keeps nothing

    placed = client.post("/buy/order", data=form)
    assert placed.status_code == 303
    done = client.get(placed.headers["Location"])
    assert "is active" in done.get_data(as_text=True)
    assert counts(services.engine) == (1, 1, 1)

    report = push_outbox(services, worker_id="w1")
    assert report.dead == 0
    sf = services.salesforce()
    accounts, deals, lines = deals_in_salesforce(sf, BUYER["company_name"])
    assert len(accounts) == 1 and accounts[0]["VAT_Id__c"] == "FR40303265045"
    assert len(deals) == 1
    [deal] = deals
    assert (deal["StageName"], deal["IsWon"], deal["AccountId"]) == ("Closed Won", True, accounts[0]["Id"])
    assert Decimal(str(deal["Amount"])) == Decimal("1950.00")
    assert [(ln["ProductCode"], Decimal(str(ln["Quantity"]))) for ln in lines if ln["OpportunityId"] == deal["Id"]] \
        == [("LIC", Decimal(12))]

    pull_changes(services)
    push_outbox(services, worker_id="w1")
    pull_changes(services)
    assert counts(services.engine)[:2] == (1, 1)
    with Session(services.engine) as session:
        [row] = session.exec(select(SubscriptionRow)).all()
        assert row[0].external_key == deal["Id"]
    assert len(deals_in_salesforce(sf, BUYER["company_name"])[1]) == 1


def test_a_double_submit_places_one_order(shop):
    client, services = shop
    form = open_form(client, plan_id(services.engine))
    first = client.post("/buy/order", data=form)
    second = client.post("/buy/order", data=form)
    assert (first.status_code, second.status_code) == (303, 303)
    assert first.headers["Location"] == second.headers["Location"]
    assert counts(services.engine) == (1, 1, 1)


def test_an_order_without_its_csrf_token_is_refused_and_nothing_is_written(shop):
    client, services = shop
    form = open_form(client, plan_id(services.engine))
    del form["csrf_token"]
    refused = client.post("/buy/order", data=form)
    assert refused.status_code == 400
    assert "The form has expired" in refused.get_data(as_text=True)
    assert counts(services.engine) == (0, 0, 0)


def test_a_bad_vat_number_is_shown_next_to_its_field(shop):
    client, services = shop
    form = {**open_form(client, plan_id(services.engine)), "vat_id": "FR40303265046", "contact_email": "nope"}
    page = client.post("/buy/checkout", data=form)
    assert page.status_code == 422
    html = page.get_data(as_text=True)
    assert 'id="vat_id-error"' in html and "is not a valid VAT number" in html
    assert 'id="contact_email-error"' in html
    assert client.post("/buy/order", data=form).status_code == 422
    assert counts(services.engine) == (0, 0, 0)


def test_orders_beyond_the_rate_limit_get_429(shop):
    client, services = shop
    plan = plan_id(services.engine)
    statuses = [client.post("/buy/order", data=open_form(client, plan)).status_code for _ in range(6)]
    assert statuses == [303] * 5 + [429]
    assert counts(services.engine)[:2] == (5, 5)


@pytest.fixture
def fragile(org, database_url, monkeypatch):
    """A billsync that gives up quickly on an unavailable Salesforce."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    settings = load_settings(sandbox_environment(org, database_url, SF_RETRY_MAX_SECONDS="1"))
    services = build_services(settings)
    seed_catalog(org, services)
    yield create_app(settings).test_client(), services, AdminClient(org.url, org.admin_token, org.ca_path)
    services.engine.dispose()


def test_with_salesforce_down_the_order_completes_and_reaches_it_once_after_recovery(fragile):
    client, services, admin = fragile
    form = open_form(client, plan_id(services.engine))
    admin.faults(error_rate_5xx="1")
    assert client.post("/buy/order", data=form).status_code == 303
    assert counts(services.engine)[:2] == (1, 1)
    report = push_outbox(services, worker_id="w1")
    assert report.stop_reason and report.done == 0
    admin.faults(error_rate_5xx="0")

    later = datetime.now(UTC) + timedelta(minutes=10)
    push_outbox(services, worker_id="w1", now=later)
    sf = services.salesforce()
    accounts, deals, lines = deals_in_salesforce(sf, BUYER["company_name"])
    assert (len(accounts), len(deals), len(lines)) == (1, 1, 1)
    with Session(services.engine) as session:  # sent again (a worker that died before settling): still once
        session.execute(OutboxRow.__table__.update().where(OutboxRow.topic == "subscription.sold_online")
                        .values(status="pending", next_attempt_at=later))
        session.commit()
    push_outbox(services, worker_id="w2", now=later + timedelta(minutes=10))
    assert tuple(map(len, deals_in_salesforce(sf, BUYER["company_name"]))) == (1, 1, 1)


def records(sf, soql: str) -> list[dict]:
    return list(sf.query_all(soql))


def place(client, engine) -> None:
    assert client.post("/buy/order", data=open_form(client, plan_id(engine))).status_code == 303


@pytest.mark.parametrize("prospect", [
    {"Name": "Zephyr (prospect)", "VAT_Id__c": "FR40303265045"},
    {"Name": BUYER["company_name"], "Website": "https://www.zephyr-analytics.example"},
], ids=["same-vat-number", "same-name-and-domain"])
def test_an_existing_account_like_the_buyer_is_left_untouched_and_a_new_account_holds_the_order(shop, prospect):
    client, services = shop
    sf = services.salesforce()
    existing = sf.upsert("Account", "Billsync_Customer_Id__c", "placeholder", {**prospect, "Type": "Prospect"}).id
    sf.update("Account", existing, {"Billsync_Customer_Id__c": None})
    before = records(sf, f"SELECT Name, Type, VAT_Id__c, Website, LastModifiedDate, Billsync_Customer_Id__c "
                          f"FROM Account WHERE Id = '{existing}'")[0]
    place(client, services.engine)
    assert push_outbox(services, worker_id="w1").dead == 0
    after = records(sf, f"SELECT Name, Type, VAT_Id__c, Website, LastModifiedDate, Billsync_Customer_Id__c "
                         f"FROM Account WHERE Id = '{existing}'")[0]
    assert after == before and after["Billsync_Customer_Id__c"] is None
    [deal] = records(sf, "SELECT AccountId, Description FROM Opportunity WHERE LeadSource = 'Self-Service'")
    [own] = records(sf, f"SELECT Id, Name, Billsync_Customer_Id__c FROM Account WHERE Id = '{deal['AccountId']}'")
    assert own["Id"] != existing and own["Name"] == BUYER["company_name"]
    assert own["Billsync_Customer_Id__c"].startswith("cus-web-")
    assert f"Possible duplicate of Account {existing}" in deal["Description"]
    with Session(services.engine) as session:
        [customer] = session.exec(select(CustomerRow)).all()
    assert customer[0].salesforce_account_id == own["Id"]


def place_with_the_deal_refused(client, services, monkeypatch) -> dict:
    """Place an order and push it while Salesforce refuses its Opportunity; the Account it created."""
    def refused(*args, **kwargs):
        raise DealError("Opportunity: FIELD_CUSTOM_VALIDATION_EXCEPTION: refused")

    place(client, services.engine)
    with monkeypatch.context() as m:
        m.setattr("connector.sync.deals.write_deal", refused)
        push_outbox(services, worker_id="w1")
    [account] = records(services.salesforce(), "SELECT Id, Billing_Language__c FROM Account")
    return account


def _sold_online_row(engine) -> OutboxRow:
    with Session(engine) as session:
        return session.exec(select(OutboxRow).where(OutboxRow.topic == "subscription.sold_online")).one()[0]


def test_a_retry_after_a_refused_deal_leaves_the_account_as_the_rep_edited_it(shop, monkeypatch):
    client, services = shop
    sf = services.salesforce()
    account = place_with_the_deal_refused(client, services, monkeypatch)
    refused = _sold_online_row(services.engine)
    assert (refused.status, refused.attempts) == ("pending", 1) and "refused" in refused.last_error
    edited = {"Name": "Zephyr Analytics (HQ)", "Type": "Customer - Channel", "BillingCountry": "DE",
              "CurrencyIsoCode": "USD", "VAT_Id__c": "DE136695976",
              "Billing_Language__c": "fr" if account["Billing_Language__c"] != "fr" else "en"}
    sf.update("Account", account["Id"], edited)

    assert push_outbox(services, worker_id="w1", now=datetime.now(UTC) + timedelta(hours=1)).dead == 0
    assert _sold_online_row(services.engine).status == "done"
    [again] = records(sf, f"SELECT Id, {', '.join(edited)} FROM Account")
    assert (again["Id"], {k: again[k] for k in edited}) == (account["Id"], edited)
    [deal] = records(sf, "SELECT AccountId FROM Opportunity WHERE LeadSource = 'Self-Service'")
    assert deal["AccountId"] == account["Id"]


@pytest.mark.parametrize("race", [False, True], ids=["linked-before", "linked-meanwhile"])
def test_an_account_another_customer_holds_fails_the_row_with_the_reason(shop, monkeypatch, race):
    client, services = shop
    account = place_with_the_deal_refused(client, services, monkeypatch)
    with Session(services.engine) as session, session.begin():  # the pull billed that Account meanwhile
        upsert_customer(session, Customer(f"cus-{account['Id']}", "Zephyr Analytics", "EUR",
                                          salesforce_account_id=account["Id"]))
    if race:  # linked between the check and the write: the database's unique key refuses it
        monkeypatch.setattr("billing_engine.use_cases.customers.store.customer_id_of_account", lambda *a: None)

    report = push_outbox(services, worker_id="w1", now=datetime.now(UTC) + timedelta(hours=1))
    row = _sold_online_row(services.engine)
    assert (report.done, row.status, row.attempts) == (0, "pending", 2)  # failed: retried later
    assert account["Id"] in row.last_error
    assert ("not linked" if race else f"already belongs to customer cus-{account['Id']}") in row.last_error
    with Session(services.engine) as session:
        web = session.exec(select(CustomerRow).where(CustomerRow.id.startswith("cus-web-"))).one()[0]
    assert web.salesforce_account_id is None
    with Session(services.engine) as session:  # the last attempt: a dead letter
        session.execute(OutboxRow.__table__.update().values(attempts=MAX_ATTEMPTS - 1))
        session.commit()
    push_outbox(services, worker_id="w1", now=datetime.now(UTC) + timedelta(days=2))
    assert _sold_online_row(services.engine).status == "dead"


def test_the_pull_knows_the_deal_by_the_ids_written_on_it_even_if_the_link_was_not_recorded(shop):
    client, services = shop
    place(client, services.engine)
    push_outbox(services, worker_id="w1")
    with Session(services.engine) as session:  # as if billsync stopped before recording the link
        session.execute(SubscriptionRow.__table__.update().values(external_key=None))
        session.execute(CustomerRow.__table__.update().values(salesforce_account_id=None))
        session.commit()
    report = pull_changes(services)
    assert (report.failed_records, report.object_errors) == (0, [])
    [deal] = deals_in_salesforce(services.salesforce(), BUYER["company_name"])[1]
    with Session(services.engine) as session:
        [subscription] = session.exec(select(SubscriptionRow)).all()
        [customer] = session.exec(select(CustomerRow)).all()
    assert subscription[0].external_key == deal["Id"]
    assert customer[0].salesforce_account_id == deal["AccountId"]
    assert customer[0].id.startswith("cus-web-")


def test_the_live_price_is_the_engines_and_keeps_nothing(shop):
    client, services = shop
    form = {**open_form(client, plan_id(services.engine)), "company_name": "", "contact_email": ""}
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        statements.append(" ".join(statement.split()[:2]).upper())

    event.listen(Engine, "before_cursor_execute", seen)
    try:
        answer = client.post("/buy/quote", data=form)
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
    verbs = {statement.split()[0] for statement in statements}
    assert statements and not {"INSERT", "UPDATE", "DELETE"} & verbs  # not even rolled back
    assert "BEGIN IMMEDIATE" not in statements  # nor SQLite's write lock taken: a buyer never waits for the bill run
    assert answer.status_code == 200
    assert answer.get_json() == {"ok": True, "subtotal": "€1,950.00", "tax": "€0.00", "total": "€1,950.00",
                                 "recurring": "€1,950.00 per month"}
    unpriced = client.post("/buy/quote", data={**form, "quantity": "twelve"})
    assert unpriced.status_code == 422 and set(unpriced.get_json()["errors"]) == {"quantity"}
    assert counts(services.engine) == (0, 0, 0)


@pytest.mark.parametrize(("code", "country", "vat_id"), [("LIC", "FR", None), ("LIC-Y", "DE", "DE136695976")])
def test_the_price_shown_before_the_order_is_what_the_placed_order_bills(shop, code, country, vat_id):
    _, services = shop
    order = Order(key="ab" * 16, company_name="Zephyr Analytics SAS", contact_email="billing@zephyr.example",
                  country=country, price_id=plan_id(services.engine, code), quantity=Decimal(12), vat_id=vat_id)
    now = datetime.now(UTC)
    today = now.date()
    with Session(services.engine) as session:
        quote = quote_order(session, order, on=today, default_tax_percent=Decimal(20), seller_country="FR")
        placed = place_order(session, order, on=today, now=now)
        stored = preview_subscription_change(session, placed.subscription_id, [], today, first_invoice=True,
                                             default_tax_percent=Decimal(20), seller_country="FR")
        export = subscriptions_for_export(session, [placed.subscription_id], today)[placed.subscription_id]
        session.rollback()
    assert quote.preview == stored
    assert quote.next_invoice_on == export.next_invoice_on
