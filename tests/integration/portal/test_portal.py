"""The customer portal through the app: links, the session, quantity changes and cancellation
previewed then confirmed (and billed as previewed), refusals (docs/self-service.md)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import update
from sqlmodel import select

from billing_engine.money import round_money
from billing_engine.use_cases import audit, invoices, subscriptions
from billing_engine.use_cases.billing import bill_customers
from connector.database import transaction
from connector.portal.tables import PortalChangeRow
from tests.integration.portal.conftest import csrf_token
from tests.support.portal import new_link

SID = re.compile(r'href="/portal/subscriptions/([^"]+)"')
CHANGE = re.compile(r"/portal/changes/([A-Za-z0-9_-]+)$")


def text(response) -> str:
    return response.get_data(as_text=True)


def engine_of(app):
    return app.extensions["billsync"].engine


def subscription_path(client) -> str:
    return "/portal/subscriptions/" + SID.search(text(client.get("/portal/"))).group(1)


def preview(client, action: str, **form) -> str:
    """Post a change's form from the subscription page; the preview's path."""
    page = subscription_path(client)
    response = client.post(f"{page}/{action}", data={"csrf_token": csrf_token(client, page), **form})
    assert response.status_code == 303, text(response)
    return response.headers["Location"]


def confirm(client, change_path: str):
    return client.post(f"{change_path}/confirm", data={"csrf_token": csrf_token(client, change_path)})


def figures(app, change_path: str) -> dict:
    from connector.portal.changes import figures_of

    public_id = CHANGE.search(change_path).group(1)
    with transaction(engine_of(app)) as session:
        row = session.exec(select(PortalChangeRow).where(PortalChangeRow.public_id == public_id)).one()
        return figures_of(row)


def invoice_lines(app, customer_id: str, on) -> list[tuple[str, Decimal]]:
    with transaction(engine_of(app)) as session:
        page = invoices.list_invoices(session, as_of=on, filters=invoices.InvoiceFilters(
            customer_id=customer_id, issued_from=on, issued_before=on + timedelta(days=1)))
        return sorted((line.description, line.net.amount) for item in page.items
                      for line in invoices.get_invoice(session, item.invoice_id, as_of=on).lines)


def quantity_on(app, subscription_id: str, on) -> Decimal:
    with transaction(engine_of(app)) as session:
        version = subscriptions.get_subscription(session, subscription_id).version_on(on)
        return next(iter(version.items.values())).quantity


# ---------------------------------------------------------------- links and the session


def test_a_link_opens_the_portal_once(app, seeded):
    from connector.wiring import logged_path

    path = new_link(engine_of(app), seeded.customer_a)
    token = path.rsplit("/", 1)[1]
    assert token not in logged_path(app, path)  # the request log hides it
    client = app.test_client()
    assert "Open my portal" in text(client.get(path))
    opened = client.post(path, data={"csrf_token": csrf_token(client, path)})
    assert opened.status_code == 303
    assert "Alpha SAS" in text(client.get("/portal/"))
    again = app.test_client()
    reused = again.post(path, data={"csrf_token": csrf_token(again, path)})
    assert reused.status_code == 410 and "already used" in text(reused)
    assert again.get("/portal/").status_code == 401


def test_an_expired_or_unknown_link_is_refused(app, seeded):
    path = new_link(engine_of(app), seeded.customer_a, minutes=5, now=datetime.now(UTC) - timedelta(minutes=6))
    client = app.test_client()
    expired = client.post(path, data={"csrf_token": csrf_token(client, path)})
    assert expired.status_code == 410 and "expired" in text(expired)
    unknown = "/portal/open/" + "x" * 43
    assert client.post(unknown, data={"csrf_token": csrf_token(client, unknown)}).status_code == 404
    assert client.get("/portal/").status_code == 401


def test_the_session_ends_after_its_minutes(app, seeded, customer_a):
    with customer_a.session_transaction() as session:
        session["portal_until"] = datetime.now(UTC).timestamp() - 1
    ended = customer_a.get("/portal/")
    assert ended.status_code == 401 and "session has ended" in text(ended)


def test_a_form_without_its_csrf_token_is_refused(app, customer_a):
    page = subscription_path(customer_a)
    refused = customer_a.post(f"{page}/quantity", data={"item": "cus-portal-a-seats", "quantity": "15"})
    assert refused.status_code == 400 and "The form has expired" in text(refused)
    path = new_link(engine_of(app), "cus-portal-b")
    assert app.test_client().post(path).status_code == 400


# ---------------------------------------------------------------- changes


def test_an_upgrade_is_billed_today_exactly_as_previewed(app, seeded, customer_a):
    change = preview(customer_a, "quantity", item="cus-portal-a-seats", quantity="15")
    shown = text(customer_a.get(change))
    assert "Takes effect on" in shown and "€1,950.00 → €2,250.00" in shown
    previewed = figures(app, change)
    assert previewed["today"]["on"] == seeded.today.isoformat()
    assert confirm(customer_a, change).status_code == 303
    assert quantity_on(app, "sub-cus-portal-a", seeded.today) == 15

    bill_customers(engine_of(app), seeded.today)
    billed = invoice_lines(app, seeded.customer_a, seeded.today)
    assert billed == sorted((ln["description"], Decimal(ln["amount"])) for ln in previewed["today"]["lines"])
    assert sum(amount for _, amount in billed) == Decimal(previewed["today"]["subtotal"]) > 0

    next_on = datetime.fromisoformat(previewed["next"]["on"]).date()
    bill_customers(engine_of(app), next_on)
    assert invoice_lines(app, seeded.customer_a, next_on) == sorted(
        (ln["description"], Decimal(ln["amount"])) for ln in previewed["next"]["lines"])
    assert Decimal(previewed["next"]["subtotal"]) == Decimal("2250.00")  # 5 × 200 + 5 × 150 + 5 × 100

    with transaction(engine_of(app)) as session:
        [entry] = [e for e in audit.list_actions(session, limit=10, target_id="sub-cus-portal-a")
                   if e.action == "portal.quantity_changed"]
    assert entry.actor == "portal:cus-portal-a" and entry.after["quantity"] == "15"


def test_an_upgrade_on_a_period_s_first_day_before_its_bill_run_shows_what_it_adds(app):
    from tests.integration.portal.conftest import open_portal
    from tests.support.portal import portal_today, seed_portal

    today = portal_today()
    seed_portal(engine_of(app), starts_on=today, billed=False)  # 12 seats owed today: 1,950.00, not billed yet
    client = app.test_client()
    assert open_portal(client, engine_of(app), "cus-portal-a").status_code == 303
    change = preview(client, "quantity", item="cus-portal-a-seats", quantity="15")
    previewed = figures(app, change)
    assert Decimal(previewed["today"]["subtotal"]) == Decimal("300.00")  # 2,250.00 now owed instead of 1,950.00
    assert "€300.00" in text(client.get(change))
    assert confirm(client, change).status_code == 303

    bill_customers(engine_of(app), today)
    billed = sum(amount for _, amount in invoice_lines(app, "cus-portal-a", today))
    assert billed == Decimal("1950.00") + Decimal(previewed["today"]["subtotal"])


def test_a_downgrade_takes_effect_at_the_end_of_the_period(app, seeded, customer_a):
    change = preview(customer_a, "quantity", item="cus-portal-a-seats", quantity="10")
    previewed = figures(app, change)
    next_on = datetime.fromisoformat(previewed["next"]["on"]).date()
    assert previewed["today"]["lines"] == []
    assert confirm(customer_a, change).status_code == 303
    assert quantity_on(app, "sub-cus-portal-a", seeded.today) == 12
    assert quantity_on(app, "sub-cus-portal-a", next_on) == 10
    assert "quantity becomes 10" in text(customer_a.get(subscription_path(customer_a)))
    bill_customers(engine_of(app), next_on)
    billed = invoice_lines(app, seeded.customer_a, next_on)
    assert sum(amount for _, amount in billed) == Decimal(previewed["next"]["subtotal"]) == Decimal("1750.00")


def test_the_timing_rule_is_a_setting(app, seeded, customer_a):
    app.extensions["billsync"].settings = app.extensions["billsync"].settings.replace(
        portal_downgrade_timing="now")
    change = preview(customer_a, "quantity", item="cus-portal-a-seats", quantity="10")
    previewed = figures(app, change)
    today = previewed["today"]
    assert today["on"] == seeded.today.isoformat()
    # The rest of the period: 10 seats charged (1,750.00 a month), 12 credited (1,950.00), prorated by day.
    next_on = datetime.fromisoformat(previewed["next"]["on"]).date()
    share = Decimal((next_on - seeded.today).days) / Decimal((next_on - seeded.starts_on).days)
    assert [ln["amount"] for ln in today["lines"]] == [str(round_money(Decimal(1750) * share, "EUR"))]
    assert [ln["amount"] for ln in today["credit_lines"]] == [str(round_money(Decimal(1950) * share, "EUR"))]
    assert Decimal(today["credit_note_total"]) == Decimal(today["credit_lines"][0]["amount"]) * Decimal("1.2")  # VAT
    assert "Credit note" in text(customer_a.get(change))


def test_a_cancellation_keeps_the_subscription_to_the_end_of_the_period_with_its_reason(app, seeded, customer_a):
    page = subscription_path(customer_a)
    missing = customer_a.post(f"{page}/cancel", data={"csrf_token": csrf_token(customer_a, page), "reason": ""})
    assert missing.status_code == 422 and "choose a reason" in text(missing)
    change = preview(customer_a, "cancel", reason="too_expensive", details="Budget cut for next year")
    previewed = figures(app, change)
    assert confirm(customer_a, change).status_code == 303
    with transaction(engine_of(app)) as session:
        sub = subscriptions.get_subscription(session, "sub-cus-portal-a")
        entries = audit.list_actions(session, limit=10, target_id="sub-cus-portal-a")
    assert sub.ends_before.isoformat() == previewed["ends_before"] == previewed["next"]["on"]
    assert sub.status_on(seeded.today).value == "cancelled"
    [entry] = [e for e in entries if e.action == "portal.cancelled"]
    assert entry.after["reason"] == "too_expensive" and entry.after["details"] == "Budget cut for next year"
    assert "too_expensive: Budget cut" in sub.cancellation.reason


def test_a_stale_expired_or_confirmed_preview_is_refused(app, seeded, customer_a):
    first = preview(customer_a, "quantity", item="cus-portal-a-seats", quantity="15")
    second = preview(customer_a, "quantity", item="cus-portal-a-seats", quantity="20")
    assert confirm(customer_a, first).status_code == 303
    again = confirm(customer_a, first)
    assert again.status_code == 409 and "already confirmed" in text(again)
    stale = confirm(customer_a, second)
    assert stale.status_code == 409 and "changed since this preview" in text(stale)
    third = preview(customer_a, "quantity", item="cus-portal-a-seats", quantity="18")
    with transaction(engine_of(app)) as session:
        session.execute(update(PortalChangeRow).where(PortalChangeRow.public_id == CHANGE.search(third).group(1))
                        .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    expired = confirm(customer_a, third)
    assert expired.status_code == 409 and "expired" in text(expired)
    assert quantity_on(app, "sub-cus-portal-a", seeded.today) == 15


def test_a_preview_whose_prices_changed_is_refused_at_confirmation(app, seeded, customer_a):
    from dataclasses import replace

    from billing_engine.catalog import Product
    from billing_engine.tax import ProductTax, TaxCategory
    from billing_engine.use_cases.catalog import upsert_product
    from billing_engine.use_cases.customers import get_customer, upsert_customer

    change = preview(customer_a, "quantity", item="cus-portal-a-seats", quantity="15")
    switch = preview(customer_a, "plan", item="cus-portal-a-seats", plan="pr-business")
    with transaction(engine_of(app)) as session:  # VAT at 10 %; the Business plan leaves the self-service pages
        upsert_customer(session, replace(get_customer(session, seeded.customer_a), tax_rate_percent=Decimal(10)))
        upsert_product(session, Product("p-business", "BUSINESS", "Business plan",
                                        tax=ProductTax(TaxCategory.STANDARD)))
    for path in (change, switch):
        refused = confirm(customer_a, path)
        assert refused.status_code == 409 and "Prices changed since the preview" in text(refused)
    assert quantity_on(app, "sub-cus-portal-a", seeded.today) == 12
    again = preview(customer_a, "quantity", item="cus-portal-a-seats", quantity="15")
    assert confirm(customer_a, again).status_code == 303
    assert quantity_on(app, "sub-cus-portal-a", seeded.today) == 15


def test_a_bad_quantity_is_a_message(app, customer_a):
    page = subscription_path(customer_a)
    for quantity, message in (("abc", "is not a number"), ("0", "whole number from 1"), ("2.5", "whole number"),
                              ("12", "is already 12")):
        response = customer_a.post(f"{page}/quantity", data={
            "csrf_token": csrf_token(customer_a, page), "item": "cus-portal-a-seats", "quantity": quantity})
        assert response.status_code == 422 and message in text(response), quantity


def test_the_portal_speaks_the_browser_s_language_and_has_a_switch(app, seeded):
    from tests.integration.portal.conftest import open_portal

    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "fr-FR,fr;q=0.9"
    assert open_portal(client, engine_of(app), seeded.customer_a).status_code == 303
    home = text(client.get("/portal/"))
    assert "Abonnements" in home and "1\u202f950,00\xa0€" in home
    change = preview(client, "quantity", item="cus-portal-a-seats", quantity="15")
    shown = text(client.get(change))
    assert "Prend effet le" in shown and "Dû aujourd'hui" in shown and "Prochaine facture" in shown
    switched = client.post("/language", data={"locale": "en", "next": change,
                                              "csrf_token": csrf_token(client, change)})
    assert switched.status_code == 303 and switched.headers["Location"].endswith(change)
    assert "Takes effect on" in text(client.get(change))


def test_billing_details_are_edited_with_a_checked_vat_number(app, seeded, customer_a):
    from billing_engine.use_cases.customers import get_customer

    page = "/portal/billing-details"
    form = {"line1": "12 quai Saint-Antoine", "line2": "", "postal_code": "69002", "city": "Lyon", "country": "FR"}
    bad = customer_a.post(page, data={**form, "vat_id": "FR 12 345", "csrf_token": csrf_token(customer_a, page)})
    assert bad.status_code == 422 and "is not a valid VAT number" in text(bad)
    saved = customer_a.post(page, data={**form, "vat_id": "FR 40 303 265 045",
                                        "csrf_token": csrf_token(customer_a, page)})
    assert saved.status_code == 303
    assert "Your billing details are saved" in text(customer_a.get(page))
    with transaction(engine_of(app)) as session:
        customer = get_customer(session, seeded.customer_a)
        [entry] = [e for e in audit.list_actions(session, limit=10, target_id=seeded.customer_a)
                   if e.action == "portal.billing_details_changed"]
    assert customer.vat_id == "FR40303265045" and customer.billing_address.line1 == "12 quai Saint-Antoine"
    assert entry.actor == "portal:cus-portal-a" and entry.after["vat_id"] == "FR40303265045"


def test_saving_billing_details_keeps_the_region(app, seeded, customer_a):
    from dataclasses import replace

    from billing_engine.use_cases.customers import get_customer, upsert_customer

    with transaction(engine_of(app)) as session:
        customer = get_customer(session, seeded.customer_a)
        upsert_customer(session, replace(customer, billing_address=replace(customer.billing_address,
                                                                           region="Auvergne-Rhône-Alpes")))
    page = "/portal/billing-details"
    saved = customer_a.post(page, data={"line1": "12 quai Saint-Antoine", "line2": "", "postal_code": "69002",
                                        "city": "Lyon", "country": "FR", "vat_id": "",
                                        "csrf_token": csrf_token(customer_a, page)})
    assert saved.status_code == 303
    with transaction(engine_of(app)) as session:
        address = get_customer(session, seeded.customer_a).billing_address
    assert (address.line1, address.region) == ("12 quai Saint-Antoine", "Auvergne-Rhône-Alpes")


def test_a_change_that_cannot_be_previewed_is_a_message_on_the_subscription_page(app, seeded, customer_a):
    page = subscription_path(customer_a)
    for action, form in (("quantity", {"item": "no-such-item", "quantity": "15"}),
                         ("plan", {"item": "no-such-item", "plan": "pr-business"})):
        response = customer_a.post(f"{page}/{action}", data={"csrf_token": csrf_token(customer_a, page), **form})
        assert response.status_code == 422 and "Not found" in text(response)
        assert "Team plan" in text(response)  # the subscription's page, with its items


def test_a_contract_price_is_kept_through_a_portal_change(app, seeded, customer_b):
    change = preview(customer_b, "quantity", item="cus-portal-b-seats", quantity="5")
    previewed = figures(app, change)
    assert previewed["next"]["subtotal"] == "600.00"  # 5 × 120.00, not the catalog's 5 × 200.00
    assert confirm(customer_b, change).status_code == 303
    with transaction(engine_of(app)) as session:
        version = subscriptions.get_subscription(session, "sub-cus-portal-b").version_on(seeded.today)
    assert version.items["cus-portal-b-seats"].contract_unit_price == Decimal(120)
    assert version.items["cus-portal-b-seats"].quantity == 5


def test_a_switch_to_another_self_service_plan_is_billed_as_previewed(app, seeded, customer_a):
    page = text(customer_a.get(subscription_path(customer_a)))
    offered = re.findall(r'<option value="(pr-[a-z-]+)">', page)
    assert offered == ["pr-business"]  # not the USD plan, not a plan off the self-service pages, not its own
    change = preview(customer_a, "plan", item="cus-portal-a-seats", plan="pr-business")
    previewed = figures(app, change)
    assert previewed["today"]["on"] == seeded.today.isoformat()  # 2,100.00 a month > 1,950.00: an upgrade, now
    assert (previewed["mrr_before"], previewed["mrr_after"]) == ("1950.00", "2100.00")
    assert confirm(customer_a, change).status_code == 303
    with transaction(engine_of(app)) as session:
        version = subscriptions.get_subscription(session, "sub-cus-portal-a").version_on(seeded.today)
    [item] = version.items.values()
    assert (item.price.price_id, item.quantity) == ("pr-business", 12)
    bill_customers(engine_of(app), seeded.today)
    assert invoice_lines(app, seeded.customer_a, seeded.today) == sorted(
        (ln["description"], Decimal(ln["amount"])) for ln in previewed["today"]["lines"])
    refused = customer_a.post(f"{subscription_path(customer_a)}/plan", data={
        "item": item.item_id, "plan": "pr-custom", "csrf_token": csrf_token(customer_a, subscription_path(customer_a))})
    assert refused.status_code == 422 and "choose one of the plans offered" in text(refused)


def test_a_plan_switch_to_come_is_shown_in_words(app, seeded, customer_a):
    app.extensions["billsync"].settings = app.extensions["billsync"].settings.replace(
        portal_upgrade_timing="next_period")
    change = preview(customer_a, "plan", item="cus-portal-a-seats", plan="pr-business")
    assert confirm(customer_a, change).status_code == 303
    page = subscription_path(customer_a)
    upcoming = text(customer_a.get(page)).split('data-testid="upcoming"')[1].split("</ul>")[0]
    assert "plan Team plan ends" in upcoming and "plan Business plan starts" in upcoming
    assert "_item" not in upcoming
    french = text(customer_a.get(page, headers={"Accept-Language": "fr"})).split('data-testid="upcoming"')[1]
    assert "fin de la formule Team plan" in french and "début de la formule Business plan" in french


def test_a_usage_plan_shows_the_usage_so_far_against_its_allowance(app, seeded):
    from billing_engine.catalog import Product, make_price
    from billing_engine.customers import Customer
    from billing_engine.subscriptions import SubscriptionItem, make_subscription
    from billing_engine.tax import ProductTax, TaxCategory
    from billing_engine.use_cases.catalog import upsert_price, upsert_product
    from billing_engine.use_cases.customers import upsert_customer
    from billing_engine.use_cases.subscriptions import start_subscription
    from billing_engine.use_cases.usage import record_usage
    from tests.integration.portal.conftest import open_portal

    data = make_price("pr-data", Product("p-data", "DATA", "Data transfer", tax=ProductTax(TaxCategory.STANDARD)),
                      currency="EUR", model="allowance", charge_type="usage", unit_price="50", included_units="1000",
                      overage_unit_price="0.02")
    with transaction(engine_of(app)) as session:
        upsert_product(session, data.product)
        upsert_price(session, data)
        upsert_customer(session, Customer("cus-portal-c", "Gamma SA", "EUR"))
        start_subscription(session, make_subscription("sub-cus-portal-c", "cus-portal-c", "EUR", seeded.starts_on,
                                                      [SubscriptionItem("c-data", data)], term_months=None))
        for n, (days_ago, quantity) in enumerate(((10, "300"), (1, "450"))):
            record_usage(session, subscription_id="sub-cus-portal-c", item_id="c-data", quantity=quantity,
                         occurred_at=datetime.now(UTC) - timedelta(days=days_ago), source="test",
                         idempotency_key=f"u{n}")
    client = app.test_client()
    assert open_portal(client, engine_of(app), "cus-portal-c").status_code == 303
    page = text(client.get(subscription_path(client)))
    assert re.search(r'data-testid="usage-c-data">750 used of 1,000 included<', page)
