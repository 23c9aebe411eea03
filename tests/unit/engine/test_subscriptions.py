"""Subscriptions, amendments, history and customers: bad input is refused naming the field and the
reason, and "what was this subscription on date D" has one answer (docs/billing-rules.md §9 Amendments)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import pytest

from billing_engine.catalog import make_price, make_product
from billing_engine.customers import Address, Customer
from billing_engine.errors import ConflictError, CurrencyMismatchError, InvalidInputError
from billing_engine.subscriptions import (
    Amendment,
    AmendmentAction,
    SubscriptionItem,
    SubscriptionStatus,
    make_subscription,
)

A = AmendmentAction
SEAT = make_price("pr-seat", make_product("p-seat", "SEAT", "Seats"), currency="EUR", model="per_unit",
                  unit_price="10")
USD_SEAT = make_price("pr-seat-usd", make_product("p-seat", "SEAT", "Seats"), currency="USD", model="per_unit",
                      unit_price="12")


def sub(**kw):
    kw.setdefault("term_months", 12)
    return make_subscription("sub-1", "cust-1", "EUR", date(2026, 1, 31), [SubscriptionItem("seat", SEAT, D(5))], **kw)


def amend(s, action, on, **kw):
    return s.amend(Amendment(s.next_amendment_id(), 0, action, on, **kw))


def test_negative_quantity_is_refused_naming_the_field():
    """A negative quantity is refused, naming the field (docs/billing-rules.md §9 Amendments)."""
    with pytest.raises(InvalidInputError) as err:
        SubscriptionItem("seat", SEAT, D(-1))
    assert err.value.field == "quantity" and "negative" in err.value.reason
    with pytest.raises(InvalidInputError) as err:
        amend(sub(), A.CHANGE_QUANTITY, date(2026, 3, 1), item_id="seat", quantity=D(-2))
    assert err.value.field == "quantity"


def test_an_amendment_before_the_start_is_refused():
    """An amendment dated before the start is refused (docs/billing-rules.md §9 Amendments)."""
    with pytest.raises(InvalidInputError) as err:
        amend(sub(), A.CHANGE_QUANTITY, date(2026, 1, 30), item_id="seat", quantity=D(2))
    assert err.value.field == "effective_on" and "before the subscription starts on 2026-01-31" in err.value.reason


def test_cancelling_twice_is_a_conflict():
    """A subscription is cancelled at most once (docs/billing-rules.md §10 Cancellations)."""
    once = amend(sub(), A.CANCEL, date(2026, 3, 1))
    with pytest.raises(ConflictError) as err:
        amend(once, A.CANCEL, date(2026, 4, 1), immediate=True)
    assert "already cancelled" in err.value.reason


def test_a_price_in_another_currency_cannot_join_the_subscription():
    """docs/billing-rules.md §1 Money and rounding: a clear error when currencies are mixed."""
    with pytest.raises(CurrencyMismatchError) as err:
        amend(sub(), A.ADD_ITEM, date(2026, 3, 1), item=SubscriptionItem("usd", USD_SEAT))
    assert err.value.field == "item.price" and "USD" in err.value.reason
    with pytest.raises(CurrencyMismatchError):
        make_subscription("s", "c", "EUR", date(2026, 1, 1), [SubscriptionItem("x", USD_SEAT)])


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"discount_percent": D(120)}, "discount_percent"),
    ({"discount_amount": D(-1)}, "discount_amount"),
    ({"discount_percent": D(5), "discount_amount": D(5)}, "discount_amount"),
    ({"contract_unit_price": D(-3)}, "contract_unit_price"),
    ({"quantity": 1.5}, "quantity"),
])
def test_bad_items_name_the_field(kwargs, field):
    """Items carry a quantity, a contract price and a discount % or amount, each checked
    (docs/billing-rules.md §6 Contract prices, §7 Discounts)."""
    kwargs.setdefault("quantity", D(1))
    with pytest.raises(InvalidInputError) as err:
        SubscriptionItem("seat", SEAT, **kwargs)
    assert err.value.field == field


def test_changing_an_item_that_is_not_there_names_it():
    """Changing the quantity of, or removing, an item not on the subscription is refused
    (docs/billing-rules.md §9 Amendments)."""
    with pytest.raises(InvalidInputError) as err:
        amend(sub(), A.REMOVE_ITEM, date(2026, 3, 1), item_id="ghost")
    assert err.value.field == "item_id" and "ghost" in err.value.reason


def test_a_past_dated_change_that_contradicts_later_history_is_refused():
    """docs/billing-rules.md §9 Amendments: history has one answer; removing an item before a later change
    to it conflicts."""
    later = amend(sub(), A.CHANGE_QUANTITY, date(2026, 5, 1), item_id="seat", quantity=D(7))
    with pytest.raises(InvalidInputError, match="no item 'seat' on the subscription on 2026-05-01"):
        amend(later, A.REMOVE_ITEM, date(2026, 3, 1), item_id="seat")


def test_nothing_changes_after_the_end():
    """docs/billing-rules.md §10 Cancellations: an immediate cancellation ends the subscription; later
    amendments conflict."""
    ended = amend(sub(), A.CANCEL, date(2026, 3, 1), immediate=True)
    with pytest.raises(ConflictError, match="nothing can change"):
        amend(ended, A.CHANGE_QUANTITY, date(2026, 4, 1), item_id="seat", quantity=D(1))


def test_what_the_subscription_was_on_any_date():
    """docs/billing-rules.md §9 Amendments: versions with effective dates; the day's last change wins
    (§3 Proration)."""
    s = amend(sub(), A.CHANGE_QUANTITY, date(2026, 3, 1), item_id="seat", quantity=D(8))
    s = amend(s, A.CHANGE_QUANTITY, date(2026, 3, 1), item_id="seat", quantity=D(9))
    s = amend(s, A.CHANGE_QUANTITY, date(2026, 2, 10), item_id="seat", quantity=D(6))  # recorded late
    quantities = {day: s.version_on(day).items["seat"].quantity
                  for day in (date(2026, 1, 31), date(2026, 2, 10), date(2026, 2, 28), date(2026, 3, 1))}
    assert quantities == {date(2026, 1, 31): D(5), date(2026, 2, 10): D(6), date(2026, 2, 28): D(6),
                          date(2026, 3, 1): D(9)}
    assert s.version_on(date(2026, 1, 30)) is None
    assert [v.version_id for v in s.versions(date(2026, 12, 31))] == ["start", "a3", "a2"]


def test_terms_renewal_and_status():
    """docs/billing-rules.md §11 Terms and renewals: a term with auto-renew or not; explicit renewal starts
    a new term."""
    fixed = sub(auto_renew=False)
    assert fixed.ends_before == date(2027, 1, 31)
    assert fixed.status_on(date(2027, 1, 31)) is SubscriptionStatus.ENDED
    renewed = amend(fixed, A.RENEW, date(2027, 1, 31))
    assert renewed.ends_before == date(2028, 1, 31)
    with pytest.raises(InvalidInputError, match="when the term ends"):
        amend(fixed, A.RENEW, date(2026, 12, 1))
    with pytest.raises(ConflictError, match="renews automatically"):
        amend(sub(), A.RENEW, date(2027, 1, 31))
    cancelled = amend(sub(), A.CANCEL, date(2026, 6, 1))
    assert cancelled.status_on(date(2026, 7, 1)) is SubscriptionStatus.CANCELLED
    evergreen = sub(term_months=None)
    assert amend(evergreen, A.CANCEL, date(2026, 6, 10)).ends_before == date(2026, 6, 30)


def test_customers_validate_currency_timezone_terms_and_tax():
    """A customer has a currency, a timezone, payment terms, and a tax rate or an exemption with its reason
    (docs/billing-rules.md §2 Periods, anchors and dates, §13 Invoices, §14 Tax)."""
    customer = Customer("cust-1", "ACME", "EUR", "Europe/Paris", Address(country="FR"), 30, D("20"),
                        vat_id="FR123", salesforce_account_id="001000000000001AAA")
    assert customer.tax_rate(D("19")) == D("20")
    exempt = Customer("cust-2", "Exporter", "EUR", tax_exempt_reason="Reverse charge (art. 196 VAT directive)")
    assert exempt.tax_rate(D("20")) == D(0) and exempt.is_tax_exempt
    cases = [
        (dict(currency="ZZZ"), "currency"),
        (dict(timezone="Europe/Atlantis"), "timezone"),
        (dict(payment_terms_days=-5), "payment_terms_days"),
        (dict(tax_rate_percent=D("120")), "tax_rate_percent"),
        (dict(tax_exempt_reason=" "), "tax_exempt_reason"),
    ]
    for overrides, field in cases:
        args = dict(customer_id="c", name="n", currency="EUR") | overrides
        with pytest.raises(InvalidInputError) as err:
            Customer(**args)
        assert err.value.field == field
    with pytest.raises(InvalidInputError) as err:
        Address(country="France")
    assert err.value.field == "billing_address.country"
