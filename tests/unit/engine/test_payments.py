"""Payment allocation, refunds, derived status and aging (docs/billing-rules.md §16 Payments and refunds)."""

from datetime import date
from decimal import Decimal as D

import pytest

from billing_engine.errors import ConflictError, CurrencyMismatchError, InvalidInputError
from billing_engine.payments import (
    OpenItem,
    aging,
    aging_bucket,
    allocate_amounts,
    allocate_payment,
    check_payment,
    invoice_balance,
    payment_name,
    payment_status,
    plan_refund,
)

A = OpenItem(1, "EUR", "open", date(2026, 1, 1), D("100.00"), "INV-2026-000001")
B = OpenItem(2, "EUR", "open", date(2026, 2, 1), D("50.00"), "INV-2026-000002")
VOID = OpenItem(3, "EUR", "void", date(2025, 12, 1), D("0.00"), "INV-2025-000009")


def test_oldest_open_invoice_is_paid_first_and_partial_payments_work():
    # 120 → A (older) 100 in full, B 20 of 50; nothing unapplied
    assert allocate_payment(D("120.00"), "EUR", [B, A]).applied == ((1, D("100.00")), (2, D("20.00")))


def test_overpayment_becomes_unapplied_credit():
    # 200 − 100 − 50 = 50 unapplied; the void invoice is skipped
    result = allocate_payment(D("200.00"), "EUR", [A, B, VOID])
    assert result.applied == ((1, D("100.00")), (2, D("50.00"))) and result.unapplied == D("50.00")


def test_named_invoices_take_the_payment_and_the_rest_is_credit():
    # 60 named to B: B 50, 10 unapplied (A, though older, gets nothing)
    result = allocate_payment(D("60.00"), "EUR", [A, B], named=[2])
    assert result.applied == ((2, D("50.00")),) and result.unapplied == D("10.00")


def test_amounts_per_invoice_are_applied_as_given_and_the_rest_is_credit():
    # 60 with 30 to B and 20 to A: exactly that, 10 unapplied
    result = allocate_amounts(D("60.00"), "EUR", [A, B], [(2, "30.00"), (1, D("20.00"))])
    assert result.applied == ((2, D("30.00")), (1, D("20.00"))) and result.unapplied == D("10.00")


@pytest.mark.parametrize(("amounts", "error", "match"), [
    ([(2, "50.01")], InvalidInputError, "more than the balance of invoice INV-2026-000002"),
    ([(1, "40.00"), (2, "30.00")], InvalidInputError, "add up to 70.00, more than the payment"),
    ([(1, "10.00"), (1, "10.00")], InvalidInputError, "named twice"),
    ([(3, "10.00")], ConflictError, "void"),
    ([(9, "10.00")], InvalidInputError, "not this customer's"),
    ([(1, "0")], InvalidInputError, "positive"),
    ([(4, "10.00")], InvalidInputError, "invoice INV-2026-000004 is in USD, the payment in EUR"),
])
def test_bad_amounts_per_invoice_are_refused(amounts, error, match):
    with pytest.raises(error, match=match):
        allocate_amounts(D("60.00"), "EUR", [A, B, VOID, OpenItem(4, "USD", "open", date(2026, 2, 1), D("10.00"),
                                                             "INV-2026-000004")], amounts)


def test_bad_payments_are_refused_with_a_clear_error():
    with pytest.raises(ConflictError, match="void"):
        allocate_payment(D("10.00"), "EUR", [A, VOID], named=[3])
    with pytest.raises(CurrencyMismatchError):
        allocate_payment(D("10.00"), "USD", [A], named=[1])
    with pytest.raises(InvalidInputError, match="positive"):
        check_payment(D("-5.00"), "EUR")
    with pytest.raises(CurrencyMismatchError, match="USD"):
        check_payment(D("5.00"), "USD", ["EUR"])
    with pytest.raises(InvalidInputError, match="decimals"):
        check_payment(D("5.5"), "JPY")
    assert check_payment("1500", "JPY", ["JPY"]) == D(1500)


def test_zuora_refund_reopens_the_balance():
    # invoice 1,000, payment 800, refund 300 → balance 1,000 − 800 + 300 = 500
    plan = plan_refund(D(300), payment_amount=D(800), already_refunded=D(0), unapplied_available=D(0),
                       allocations_newest_first=[(1, D(800))])
    assert plan.from_credit == 0 and plan.reopened == ((1, D(300)),)
    assert invoice_balance(D(1000), D(800), D(0), D(300)) == D(500)


def test_refund_takes_unapplied_credit_first():
    # payment 1,200 on a 1,000 invoice leaves 200 credit; refund 300 = 200 from credit + 100 reopened
    plan = plan_refund(D(300), payment_amount=D(1200), already_refunded=D(0), unapplied_available=D(200),
                       allocations_newest_first=[(1, D(1000))])
    assert plan.from_credit == D(200) and plan.reopened == ((1, D(100)),)


def test_refund_larger_than_the_payment_is_refused():
    # 800 paid, 600 already refunded: at most 200 left
    with pytest.raises(InvalidInputError, match="200"):
        plan_refund(D(300), payment_amount=D(800), already_refunded=D(600), unapplied_available=D(0),
                    allocations_newest_first=[(1, D(200))])


@pytest.mark.parametrize(
    ("paid", "credited", "refunded", "as_of", "expected"),
    [
        (D(0), D(0), D(0), date(2026, 1, 31), "unpaid"),
        (D(40), D(0), D(0), date(2026, 1, 31), "partially_paid"),
        (D(40), D(0), D(0), date(2026, 2, 1), "overdue"),  # due Jan 31, one day past
        (D(100), D(0), D(0), date(2026, 3, 1), "paid"),
        (D(0), D(100), D(0), date(2026, 3, 1), "credited"),
        (D(100), D(0), D(30), date(2026, 1, 15), "partially_paid"),  # refund reopened 30
        (D(0), D(12), D(0), date(2026, 1, 15), "partially_credited"),  # a credit note, nothing paid
        (D(0), D(12), D(0), date(2026, 2, 1), "overdue"),  # still owed past its due date
        (D(40), D(12), D(0), date(2026, 1, 15), "partially_paid"),  # paid part of it after a credit note
        (D(40), D(12), D(40), date(2026, 1, 15), "partially_credited"),  # the payment refunded in full
        (D(40), D(60), D(0), date(2026, 3, 1), "paid"),  # settled by payment and credit together
    ],
)
def test_payment_status_is_derived(paid, credited, refunded, as_of, expected):
    assert payment_status(status="open", total=D(100), paid=paid, credited=credited, refunded=refunded,
                          due_on=date(2026, 1, 31), as_of=as_of) == expected


def test_drafts_and_voids_have_no_payment_status():
    for status in ("draft", "void"):
        assert payment_status(status=status, total=D(100), paid=D(0), credited=D(0), refunded=D(0),
                              due_on=None, as_of=date(2026, 1, 1)) is None


def test_aging_buckets_by_days_past_due():
    as_of = date(2026, 6, 30)
    assert aging_bucket(date(2026, 7, 10), as_of) == "current"
    assert aging_bucket(date(2026, 6, 30), as_of) == "0-30"  # due today: 0 days
    assert aging_bucket(date(2026, 5, 31), as_of) == "0-30"  # 30 days
    assert aging_bucket(date(2026, 5, 30), as_of) == "31-60"  # 31 days
    assert aging_bucket(date(2026, 4, 1), as_of) == "61-90"  # 29 + 31 + 30 = 90 days
    assert aging_bucket(date(2026, 3, 31), as_of) == "90+"  # 91 days
    buckets = aging([(date(2026, 6, 1), D("10.00")), (date(2026, 6, 15), D("5.50")),
                     (date(2026, 1, 1), D("99.99"))], as_of)
    assert buckets == {"current": 0, "0-30": D("15.50"), "31-60": 0, "61-90": 0, "90+": D("99.99")}


@pytest.mark.parametrize(("reference", "name"), [
    ("SEPA-2026-1187", "SEPA-2026-1187"),
    ("  TRX 0042  ", "TRX 0042"),
    ("x" * 81, "PAY-2026-000042"),  # longer than a name holds
    ("unreferenced:3f2a9c1d0b7e4a55", "PAY-2026-000042"),  # recorded without a reference
    (None, "PAY-2026-000042"),
])
def test_a_payment_is_named_by_its_reference_else_by_a_readable_id(reference, name):
    assert payment_name(42, date(2026, 3, 5), reference) == name
