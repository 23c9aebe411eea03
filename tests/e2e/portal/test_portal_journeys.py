"""A customer's journeys through the portal in a browser: a link opens it; 12 → 15 seats mid-period
is previewed and billed by the next bill run exactly as previewed; 15 → 10 takes effect at the
period's end; a cancellation with its reason; a message to sales; each change a Self-Service deal
in the sandbox after a push, the message a task for the Account's owner; and the same in French."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from babel.dates import format_date
from babel.numbers import format_currency
from sqlmodel import Session

from billing_engine.use_cases import invoices
from billing_engine.use_cases.billing import bill_customers
from tests.e2e.portal.conftest import screenshot, spaces
from tests.integration.sync.test_subscription_records import drain

pytestmark = pytest.mark.timeout(300)

DEALS = ("SELECT Type, StageName, LeadSource, AccountId, Subscription_Reference__c, Service_Start_Date__c "
         "FROM Opportunity WHERE LeadSource = 'Self-Service' ORDER BY CreatedDate")


def open_portal(page, portal, button: str = "Open my portal") -> None:
    page.goto(portal.link())
    page.get_by_role("button", name=button).click()
    page.wait_for_load_state()


def preview_quantity(page, quantity: int, button: str = "Preview") -> None:
    page.locator("a", has_text="Team plan").first.click()
    page.fill("#quantity-1", str(quantity))
    page.get_by_role("button", name=button, exact=True).click()
    page.wait_for_load_state()


def billed_lines(portal, on) -> list[Decimal]:
    with Session(portal.engine) as session:
        page = invoices.list_invoices(session, as_of=on, filters=invoices.InvoiceFilters(
            customer_id=portal.seeded.customer_a, issued_from=on, issued_before=on + timedelta(days=1)))
        return sorted(line.net.amount for item in page.items
                      for line in invoices.get_invoice(session, item.invoice_id, as_of=on).lines)


def test_a_customer_changes_seats_cancels_and_writes_to_sales(page, portal):
    today = portal.seeded.today
    open_portal(page, portal)
    assert "Alpha SAS" in page.inner_text("main")

    preview_quantity(page, 15)
    assert page.inner_text("[data-testid=effective]") == f"Takes effect on {format_date(today, 'medium', 'en')}."
    shown = page.locator("[data-testid=invoice-today] [data-testid=line-amount]").all_inner_texts()
    assert "€1,950.00 → €2,250.00" in page.inner_text("main")
    screenshot(page, "portal-upgrade-preview")
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_load_state()
    assert "Your change is recorded." in page.inner_text("main")
    assert page.inner_text("[data-testid=quantity-cus-portal-a-seats]") == "15"
    # The next bill run invoices exactly the previewed lines, to the cent.
    bill_customers(portal.engine, today)
    assert sorted(shown) == sorted(format_currency(a, "EUR", locale="en") for a in billed_lines(portal, today))
    assert len(shown) == 2

    page.locator("a", has_text="Subscriptions").first.click()
    preview_quantity(page, 10)
    next_start = page.inner_text("[data-testid=effective]")
    assert next_start != f"Takes effect on {format_date(today, 'medium', 'en')}."
    assert page.inner_text("[data-testid=invoice-today]").endswith("Nothing.")
    assert page.inner_text("[data-testid=invoice-next] [data-testid=subtotal]") == "€1,750.00"
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_load_state()
    assert page.inner_text("[data-testid=quantity-cus-portal-a-seats]") == "15"  # until the period's end
    assert "quantity becomes 10" in page.inner_text("[data-testid=upcoming]")

    page.select_option("#reason", "switching")
    page.fill("#details", "Moving to an in-house tool")
    page.get_by_role("button", name="Preview the cancellation").click()
    page.wait_for_load_state()
    assert "The subscription ends on" in page.inner_text("[data-testid=effective]")
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_load_state()
    assert "Your subscription is cancelled" in page.inner_text("main")
    assert "Cancelled: runs until its end" in page.inner_text("main")

    page.locator("a", has_text="Talk to sales").click()
    page.fill("#message", "We open a second office: could we talk about 20 more seats?")
    page.get_by_role("button", name="Send").click()
    page.wait_for_load_state()
    assert "Your message is on its way" in page.inner_text("main")
    screenshot(page, "portal-after-changes")

    drain(portal.app.extensions["billsync"], today)
    deals = portal.sf.query(DEALS)["records"]
    assert [d["Type"] for d in deals] == ["Amendment", "Amendment", "Cancellation"]
    assert {(d["StageName"], d["AccountId"], d["Subscription_Reference__c"]) for d in deals} == {
        ("Closed Won", portal.account, "sub-cus-portal-a")}
    [task] = portal.sf.query("SELECT OwnerId, WhatId, Description FROM Task")["records"]
    assert (task["OwnerId"], task["WhatId"]) == (portal.rep, portal.account)
    assert "20 more seats" in task["Description"]


def test_the_same_upgrade_in_french(french_page, portal):
    page, today = french_page, portal.seeded.today
    open_portal(page, portal, "Ouvrir mon espace")
    assert "Abonnements" in page.inner_text("nav")
    preview_quantity(page, 15, "Aperçu")
    assert page.inner_text("[data-testid=effective]") == f"Prend effet le {format_date(today, 'medium', 'fr')}."
    assert "Dû aujourd'hui" in page.inner_text("[data-testid=invoice-today]")
    shown = [spaces(t) for t in page.locator("[data-testid=invoice-today] [data-testid=line-amount]").all_inner_texts()]
    page.get_by_role("button", name="Confirmer").click()
    page.wait_for_load_state()
    assert "Votre changement est enregistré." in page.inner_text("main")
    bill_customers(portal.engine, today)
    assert sorted(shown) == sorted(spaces(format_currency(a, "EUR", locale="fr")) for a in billed_lines(portal, today))
    drain(portal.app.extensions["billsync"], today)
    [deal] = portal.sf.query(DEALS)["records"]
    assert (deal["Type"], deal["LeadSource"], deal["Service_Start_Date__c"]) == ("Amendment", "Self-Service",
                                                                                  today.isoformat())
