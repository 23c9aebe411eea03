"""A new customer buys online: the pricing page, the checkout with the engine's preview, the order
in billsync at once, then in Salesforce after one push (the Account, a Closed Won Opportunity and
its line), and after the next pull still one subscription; in English and in French."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select
from sqlmodel import Session

from billing_engine.storage.catalog import CustomerRow
from billing_engine.storage.subscriptions import SubscriptionRow
from connector.sync.pull import pull_changes
from connector.sync.push import push_outbox
from tests.e2e.console.conftest import spaces
from tests.e2e.selfservice.conftest import screenshot


def held(engine) -> tuple[int, int]:
    with Session(engine) as session:
        return (session.scalar(select(func.count()).select_from(CustomerRow)),
                session.scalar(select(func.count()).select_from(SubscriptionRow)))


def buy_twelve_licences(page, shop, *, choose: str, see_price: str, confirm: str, company: str) -> None:
    page.goto(shop.url + "/buy")
    assert page.locator("#plan-" + _plan_id(shop) + " table.tiers tbody tr").count() == 3
    page.click(f"#plan-{_plan_id(shop)} >> text={choose}")
    page.fill("#quantity", "12")
    page.fill("#company_name", company)
    page.fill("#contact_email", "billing@" + company.split()[0].lower() + ".example")
    page.select_option("#country", "FR")
    page.fill("#vat_id", "FR40303265045")
    page.wait_for_selector("#live-price:not([hidden])")  # the live price beside the form
    live = page.inner_text("#live-subtotal")
    page.click(f"text={see_price}")
    page.wait_for_selector("#preview-subtotal")
    assert spaces(live) == spaces(page.inner_text("#preview-subtotal"))


def _plan_id(shop) -> str:
    from tests.support.selfservice import plan_id

    return plan_id(shop.services.engine)


def salesforce_deal(sf, company: str) -> tuple[list, list, list]:
    accounts = list(sf.query_all(f"SELECT Id FROM Account WHERE Name = '{company}'"))
    deals = list(sf.query_all("SELECT Id, AccountId, StageName, IsWon, LeadSource, Amount FROM Opportunity "
                              "WHERE LeadSource = 'Self-Service'"))
    lines = list(sf.query_all("SELECT OpportunityId, ProductCode, Quantity, TotalPrice FROM OpportunityLineItem"))
    return accounts, deals, lines


def test_a_new_customer_buys_twelve_seats_and_the_deal_reaches_salesforce_once(page, shop):
    buy_twelve_licences(page, shop, choose="Choose Licences", see_price="See the price", confirm="Confirm the order",
                        company="Borealis Robotics SAS")
    assert page.inner_text("#preview-subtotal") == "€1,950.00"  # the live price said the same
    assert page.inner_text("#preview-tax") == "€390.00"
    assert page.inner_text("#preview-total") == "€2,340.00"
    assert "€1,950.00" in page.inner_text("#preview-recurring")
    screenshot(page, "preview-en")
    assert held(shop.services.engine) == (0, 0)

    page.click("#confirm")
    assert "is active" in page.inner_text("#order-placed")
    assert held(shop.services.engine) == (1, 1)

    push_outbox(shop.services, worker_id="w1")
    accounts, deals, lines = salesforce_deal(shop.services.salesforce(), "Borealis Robotics SAS")
    assert len(accounts) == 1
    [deal] = deals
    assert (deal["AccountId"], deal["StageName"], deal["IsWon"], deal["LeadSource"]) == (
        accounts[0]["Id"], "Closed Won", True, "Self-Service")
    assert [(ln["ProductCode"], Decimal(str(ln["Quantity"])), Decimal(str(ln["TotalPrice"])))
            for ln in lines if ln["OpportunityId"] == deal["Id"]] == [("LIC", Decimal(12), Decimal("1950.00"))]

    pull_changes(shop.services)
    assert held(shop.services.engine) == (1, 1)


def test_the_same_journey_in_french(french_page, shop):
    page = french_page
    page.goto(shop.url + "/buy")
    assert page.inner_text("h1") == "Offres et tarifs"
    buy_twelve_licences(page, shop, choose="Choisir Licences", see_price="Voir le prix",
                        confirm="Confirmer la commande", company="Mistral Logiciels SARL")
    assert spaces(page.inner_text("#preview-subtotal")) == "1 950,00 €"
    assert spaces(page.inner_text("#preview-total")) == "2 340,00 €"
    assert "Votre première facture" in page.inner_text("main")
    screenshot(page, "preview-fr")
    page.click("text=Confirmer la commande")
    assert "est actif" in page.inner_text("#order-placed")
    assert held(shop.services.engine) == (1, 1)
    push_outbox(shop.services, worker_id="w1")
    pull_changes(shop.services)
    assert held(shop.services.engine) == (1, 1)
    assert len(salesforce_deal(shop.services.salesforce(), "Mistral Logiciels SARL")[1]) == 1


def test_the_language_switch_turns_the_pages_french(page, shop):
    page.goto(shop.url + "/buy")
    assert page.inner_text("h1") == "Plans and prices"
    screenshot(page, "pricing-en")
    page.click("a[lang=fr]")
    assert page.inner_text("h1") == "Offres et tarifs"
    page.click("a[lang=en]")
    assert page.inner_text("h1") == "Plans and prices"
