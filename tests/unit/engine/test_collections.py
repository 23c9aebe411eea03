"""Collections, the pure rules: overdue dates, invoice numbers in remittance text, mandate fields,
the dunning schedule and late charges (docs/payments.md)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from billing_engine.collections import (
    check_creditor_identifier,
    check_email,
    check_mandate_reference,
    check_return_reason,
    describe_return,
    find_invoice_numbers,
    language_for,
    late_charges,
    overdue_on,
    parse_dunning_schedule,
    step_due,
)
from billing_engine.errors import InvalidInputError


def test_an_invoice_is_overdue_from_the_day_after_its_due_date():
    assert overdue_on(date(2026, 1, 31)) == date(2026, 2, 1)
    assert overdue_on(date(2028, 2, 28)) == date(2028, 2, 29)


@pytest.mark.parametrize(("text", "numbers"), [
    ("INV-2026-000123", ["INV-2026-000123"]),
    ("inv 2026 123", ["INV-2026-000123"]),
    ("Virement facture inv-2026-000045 merci", ["INV-2026-000045"]),
    ("INV/2026/88", ["INV-2026-000088"]),
    ("inv2026000077", ["INV-2026-000077"]),
    ("Invoice INV-2026-000012", ["INV-2026-000012"]),
    ("invoice no. 2026-55", ["INV-2026-000055"]),
    ("INV-2026-000012 + INV-2026-000013, INV-2026-000012 again", ["INV-2026-000012", "INV-2026-000013"]),
    ("INV-2026-0001234", []),  # seven digits: not one of our numbers
    ("XINV-2026-1 or SINV20261", []),
    ("order 2026-000123", []),
])
def test_invoice_numbers_are_found_in_any_form_of_remittance_text(text, numbers):
    assert find_invoice_numbers(text) == numbers


def test_mandate_references_use_the_sepa_character_set():
    assert check_mandate_reference(" RUM-2026/0001 ") == "RUM-2026/0001"
    for bad in ("", "x" * 36, "RUM_0001", "/RUM", "RUM/", "RUM//1", "RUMé"):
        with pytest.raises(InvalidInputError):
            check_mandate_reference(bad)


def test_creditor_identifiers_carry_mod_97_check_digits():
    assert check_creditor_identifier("fr72 zzz 123456") == "FR72ZZZ123456"
    assert check_creditor_identifier("DE98ZZZ09999999999") == "DE98ZZZ09999999999"
    with pytest.raises(InvalidInputError, match="wrong check digits"):
        check_creditor_identifier("FR73ZZZ123456")
    with pytest.raises(InvalidInputError, match="not a SEPA creditor identifier"):
        check_creditor_identifier("123456")


def test_return_reasons_are_four_character_codes_with_their_meaning():
    assert check_return_reason(" am04 ") == "AM04"
    assert describe_return("AM04") == "AM04 insufficient funds"
    assert describe_return("ZZ99") == "ZZ99"
    with pytest.raises(InvalidInputError):
        check_return_reason("AM4")


def test_the_dunning_schedule_is_days_after_the_due_date_in_order():
    schedule = parse_dunning_schedule("3:reminder, 15:second ,30:final")
    assert [(s.days, s.step) for s in schedule] == [(3, "reminder"), (15, "second"), (30, "final")]
    assert str(schedule) == "3:reminder,15:second,30:final"
    assert str(parse_dunning_schedule("")) == "none"
    for bad, reason in (("3:reminder,2:second", "increase"), ("3:remind", "one of"), ("0:reminder", "between"),
                        ("3:reminder,9:reminder", "twice"), ("reminder", "DAYS:STEP")):
        with pytest.raises(InvalidInputError, match=reason):
            parse_dunning_schedule(bad)


def test_the_step_due_is_the_latest_reached_and_each_is_sent_once():
    schedule = parse_dunning_schedule("3:reminder,15:second,30:final")
    due = date(2026, 1, 31)

    def on(day, sent=()):
        stage = step_due(schedule, due, day, sent)
        return stage.step if stage else None

    assert on(date(2026, 2, 2)) is None  # 2 days late
    assert on(date(2026, 2, 3)) == "reminder"
    assert on(date(2026, 2, 4), ["reminder"]) is None
    assert on(date(2026, 2, 15), ["reminder"]) == "second"
    assert on(date(2026, 3, 2), ["reminder", "second"]) == "final"
    # A clock that missed days sends the latest step only, never a burst of older ones.
    assert on(date(2026, 2, 20)) == "second"
    assert on(date(2026, 2, 25), ["second"]) is None


def test_the_language_is_chosen_else_french_for_french_speaking_countries():
    assert language_for(None, "FR") == "fr" and language_for(None, "be") == "fr"
    assert language_for(None, "DE") == language_for(None, "") == "en"
    assert language_for("en", "FR") == "en"


def test_email_addresses_are_checked():
    assert check_email(" compta@client.fr ") == "compta@client.fr"
    for bad in ("compta", "a@b", "a b@c.fr", "<a@b.fr>"):
        with pytest.raises(InvalidInputError):
            check_email(bad)


def test_late_charges_are_interest_by_the_day_and_the_fixed_indemnity():
    # 1,000.00 due Jan 31, seen on Mar 2 (30 days late) at 12.15 % a year:
    # 1,000 × 12.15 % × 30/365 = 9.986… → 9.99, plus the 40.00 indemnity.
    charges = late_charges(balance=Decimal("1000.00"), currency="EUR", due_on=date(2026, 1, 31),
                           as_of=date(2026, 3, 2), annual_rate_percent=Decimal("12.15"))
    assert (charges.days_late, charges.interest, charges.indemnity, charges.total) == (
        30, Decimal("9.99"), Decimal("40.00"), Decimal("49.99"))
    assert charges.explanation == ("1000.00 × 12.15 % × 30/365 days = 9.99 EUR; "
                                   "fixed recovery indemnity 40.00 EUR")
    # Not late yet, or nothing left to pay: nothing is due.
    on_time = late_charges(balance=Decimal("1000.00"), currency="EUR", due_on=date(2026, 1, 31),
                           as_of=date(2026, 1, 31), annual_rate_percent=Decimal("12.15"))
    assert (on_time.interest, on_time.indemnity, on_time.total) == (Decimal("0.00"), Decimal("0.00"), Decimal("0.00"))
    # The fixed indemnity is in euros: a USD invoice owes interest only.
    usd = late_charges(balance=Decimal("500.00"), currency="USD", due_on=date(2026, 1, 31), as_of=date(2026, 4, 1),
                       annual_rate_percent=Decimal("10"))
    assert (usd.days_late, usd.interest, usd.indemnity) == (60, Decimal("8.22"), Decimal("0.00"))
    with pytest.raises(InvalidInputError):
        late_charges(balance=Decimal(1), currency="EUR", due_on=date(2026, 1, 1), as_of=date(2026, 2, 1),
                     annual_rate_percent=Decimal("-1"))
