"""The invoice list and detail, credit notes per line, payments with amounts per invoice, customer
balances with aging, and the customer statement, against a real database.

Rules: docs/billing-rules.md §13 Invoices, §15 Credit notes and customer credit, §16 Payments and refunds.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal as D

import pytest
from sqlmodel import Session

from billing_engine.charges import ChargeLine
from billing_engine.errors import ConflictError, InvalidInputError, NotFoundError
from billing_engine.money import Money
from billing_engine.use_cases.accounts import customer_statement, find_customers, get_customer, list_customers
from billing_engine.use_cases.billing import credit_invoice, finalize_invoice, run_billing, void_invoice
from billing_engine.use_cases.collections import set_collection_profile
from billing_engine.use_cases.invoices import (
    InvoiceCursor,
    InvoiceFilters,
    find_invoice_id,
    get_invoice,
    list_invoices,
    overdue_invoices,
)
from billing_engine.use_cases.payments import get_payment, record_payment, refund_payment
from connector.database import transaction
from tests.support.billing import StaticSource, account, seed_source, snapshot

JAN, FEB, MAR = date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)


def eur(amount: str) -> Money:
    return Money(D(amount), "EUR")


def charge(key, amount, *, sub="sub-a", item="seats", starts_on=JAN, ends_before=FEB, currency="EUR",
           kind="recurring", explanation="", description="Seats"):
    return ChargeLine(key, sub, item, item.upper(), item.title(), kind, starts_on, ends_before, D(1), D(amount),
                      D(amount), D(0), currency, explanation, description)


@pytest.fixture
def billed(engine):
    """cus-a (20 %): Jan 179.99 (two lines), Feb 120.00; cus-b (10 %): Jan 11.00 EUR and 1,100 JPY,
    Feb 11.00 EUR held as a draft; cus-c: nothing."""
    source = StaticSource(
        [account("cus-a"), account("cus-b", "10"), account("cus-c")],
        {"cus-a": [charge("a:1", "100.00", explanation="Seats 10 × 10.00"),
                   charge("a:2", "49.99", item="support", description="Support", explanation="Support flat 49.99"),
                   charge("a:3", "100.00", starts_on=FEB, ends_before=MAR)],
         "cus-b": [charge("b:1", "10.00", sub="sub-b"), charge("b:2", "1000", sub="sub-b2", currency="JPY"),
                   charge("b:3", "10.00", sub="sub-b", starts_on=FEB, ends_before=MAR)]},
    )
    seed_source(engine, source)
    run_billing(engine, JAN, source=source)
    source.accounts = [a for a in source.accounts if a.customer_id != "cus-b"]
    run_billing(engine, FEB, source=source)
    source.accounts = [account("cus-b", "10")]
    run_billing(engine, FEB, source=source, hold_for_review=True)
    return engine


def ids_by_number(engine):
    with Session(engine) as s:
        page = list_invoices(s, as_of=FEB, limit=100)
    return {inv.number: inv.invoice_id for inv in page.items}


def test_the_list_shows_drafts_first_then_the_newest_issued(billed):
    with Session(billed) as s:
        page = list_invoices(s, as_of=date(2026, 2, 15), limit=100)
    rows = [(i.number, i.customer_id, i.status, i.payment_status, i.total, i.amount_due) for i in page.items]
    assert rows == [
        (None, "cus-b", "draft", None, eur("11.00"), eur("11.00")),
        ("INV-2026-000004", "cus-a", "open", "unpaid", eur("120.00"), eur("120.00")),
        ("INV-2026-000003", "cus-b", "open", "overdue", Money(D(1100), "JPY"), Money(D(1100), "JPY")),
        ("INV-2026-000002", "cus-b", "open", "overdue", eur("11.00"), eur("11.00")),
        ("INV-2026-000001", "cus-a", "open", "overdue", eur("179.99"), eur("179.99")),
    ]
    assert page.next is None
    assert page.items[1].customer_name == "cus-a"


def test_every_page_walks_each_invoice_once(billed):
    seen, after, pages = [], None, 0
    with Session(billed) as s:
        while True:
            page = list_invoices(s, as_of=FEB, after=after, limit=2)
            seen.extend(i.invoice_id for i in page.items)
            pages += 1
            if page.next is None:
                break
            after = InvoiceCursor.parse(page.next.token())  # through its text form, as a URL carries it
    assert pages == 3 and len(seen) == 5 and len(set(seen)) == 5
    with Session(billed) as s:
        assert seen == [i.invoice_id for i in list_invoices(s, as_of=FEB).items]


@pytest.mark.parametrize(("filters", "numbers"), [
    (InvoiceFilters(statuses=("draft",)), [None]),
    (InvoiceFilters(statuses=("open",), customer_id="cus-b"), ["INV-2026-000003", "INV-2026-000002"]),
    (InvoiceFilters(currency="JPY"), ["INV-2026-000003"]),
    (InvoiceFilters(issued_from=FEB, issued_before=MAR), ["INV-2026-000004"]),
    (InvoiceFilters(issued_before=FEB, customer_id="cus-a"), ["INV-2026-000001"]),
    (InvoiceFilters(number="INV-2026-00000"), [f"INV-2026-00000{n}" for n in (4, 3, 2, 1)]),
    (InvoiceFilters(number="INV-2026-000002"), ["INV-2026-000002"]),
    (InvoiceFilters(number="INV_2026"), []),  # a wildcard character is a character
    (InvoiceFilters(customer_id="cus-c"), []),
])
def test_filters(billed, filters, numbers):
    with Session(billed) as s:
        assert [i.number for i in list_invoices(s, as_of=FEB, filters=filters).items] == numbers


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"filters": InvoiceFilters(statuses=("unpaid",))}, "status"),
    ({"filters": InvoiceFilters(currency="eur")}, "currency"),
    ({"filters": InvoiceFilters(issued_from=FEB, issued_before=FEB)}, "issued_before"),
    ({"limit": 0}, "limit"),
    ({"limit": 1001}, "limit"),
])
def test_bad_list_requests_name_the_field(billed, kwargs, field):
    with Session(billed) as s, pytest.raises(InvalidInputError) as err:
        list_invoices(s, as_of=FEB, **kwargs)
    assert err.value.field == field


@pytest.mark.parametrize("token", ["", "x.1", "2026-02-30.4", "2026-01-01", "draft.0", "draft.99999999999"])
def test_a_cursor_that_no_page_printed_is_refused(token):
    with pytest.raises(InvalidInputError, match="cursor"):
        InvoiceCursor.parse(token)


def test_an_invoice_in_full(billed):
    ids = ids_by_number(billed)
    inv_id = ids["INV-2026-000001"]
    with transaction(billed) as s:
        paid = record_payment(s, customer_id="cus-a", amount="100.00", currency="EUR", received_on=date(2026, 1, 10),
                              method="bank_transfer", source="bank", external_reference="TX-1")
        credit_invoice(s, inv_id, lines=[(2, D("10.00"))], reason="support outage", on=date(2026, 1, 12))
        refund_payment(s, paid.payment_id, amount="30.00", refunded_on=date(2026, 1, 20), reason="goodwill")
    with Session(billed) as s:
        assert find_invoice_id(s, "INV-2026-000001") == find_invoice_id(s, str(inv_id)) == inv_id
        detail = get_invoice(s, inv_id, as_of=date(2026, 1, 25))
    assert (detail.number, detail.status, detail.payment_status, detail.customer_name) == (
        "INV-2026-000001", "open", "partially_paid", "cus-a")
    assert [(ln.position, ln.description, ln.explanation, ln.net, ln.credited) for ln in detail.lines] == [
        (1, "Seats", "Seats 10 × 10.00", eur("100.00"), eur("0")),
        (2, "Support", "Support flat 49.99", eur("49.99"), eur("10.00"))]
    assert [(t.percent, t.net, t.tax) for t in detail.taxes] == [(D(20), eur("149.99"), eur("30.00"))]
    assert [(p.reference, p.amount) for p in detail.payments] == [("TX-1", eur("100.00"))]
    assert [(r.reason, r.amount) for r in detail.refunds] == [("goodwill", eur("30.00"))]
    [note] = detail.credit_notes
    assert (note.number, note.reason, note.net, note.tax, note.total, note.applied_to_invoice) == (
        "CN-2026-000001", "support outage", eur("10.00"), eur("2.00"), eur("12.00"), eur("12.00"))
    assert [(ln.description, ln.net, ln.line_position) for ln in note.lines] == [("Support", eur("10.00"), 2)]
    # 179.99 − 100.00 paid − 12.00 credited + 30.00 refunded
    assert (detail.amount_paid, detail.amount_credited, detail.amount_refunded, detail.amount_due) == (
        eur("100.00"), eur("12.00"), eur("30.00"), eur("97.99"))


@pytest.mark.parametrize("key", ["INV-2099-000001", "999999", "0", "99999999999", ""])
def test_an_unknown_invoice_is_not_found(billed, key):
    with Session(billed) as s, pytest.raises(NotFoundError):
        find_invoice_id(s, key)


def test_credit_whole_lines_then_what_is_left(billed):
    inv_id = ids_by_number(billed)["INV-2026-000001"]
    with transaction(billed) as s:
        credit_invoice(s, inv_id, lines=[(1, None)], reason="seats never used", on=date(2026, 1, 5))
    with Session(billed) as s:
        detail = get_invoice(s, inv_id, as_of=date(2026, 1, 5))
        # 100.00 + 20 % = 120.00 off 179.99
        assert (detail.credit_notes[0].total, detail.amount_due) == (eur("120.00"), eur("59.99"))
    before = snapshot(billed)
    with pytest.raises(ConflictError, match="credited in full"), transaction(billed) as s:
        credit_invoice(s, inv_id, lines=[(1, D("1.00"))], reason="again", on=date(2026, 1, 6))
    with pytest.raises(InvalidInputError, match="more than is left") as err, transaction(billed) as s:
        credit_invoice(s, inv_id, lines=[(2, D("50.00"))], reason="too much", on=date(2026, 1, 6))
    assert err.value.field == "lines[0].amount"
    with pytest.raises(InvalidInputError, match="no line 3"), transaction(billed) as s:
        credit_invoice(s, inv_id, lines=[(3, None)], reason="no such line", on=date(2026, 1, 6))
    with pytest.raises(InvalidInputError, match="reason"), transaction(billed) as s:
        credit_invoice(s, inv_id, reason=" ", on=date(2026, 1, 6))
    assert snapshot(billed) == before
    with transaction(billed) as s:  # the whole of what is left: line 2, 49.99 + 10.00 tax
        credit_invoice(s, inv_id, reason="contract ended", on=date(2026, 1, 7))
    with Session(billed) as s:
        detail = get_invoice(s, inv_id, as_of=date(2026, 1, 7))
    assert [(n.total, [ln.line_position for ln in n.lines]) for n in detail.credit_notes] == [
        (eur("120.00"), [1]), (eur("59.99"), [2])]
    assert (detail.status, detail.payment_status, detail.amount_due) == ("paid", "credited", eur("0"))


@pytest.mark.parametrize(("amount", "invoice_tax", "line_taxes"), [
    ("10.02", "6.01", ["2.00", "2.00", "2.01"]),  # 2.004 a line rounds down: the last credit takes the cent left
    ("10.04", "6.02", ["2.01", "2.01", "2.00"]),  # 2.008 a line rounds up: the last credit takes one cent less
])
def test_crediting_every_line_one_by_one_credits_the_invoice_exactly(engine, amount, invoice_tax, line_taxes):
    """Three lines at 20 %: the invoice's tax is rounded once on their sum (§14), each credit note's
    on its own line (§15); the credit that completes the invoice takes the tax left on it."""
    source = StaticSource([account("cus-t")], {"cus-t": [
        charge(f"t:{n}", amount, sub="sub-t", item=f"item{n}", description=f"Item {n}") for n in (1, 2, 3)]})
    seed_source(engine, source)
    run_billing(engine, JAN, source=source)
    inv_id = ids_by_number(engine)["INV-2026-000001"]
    with Session(engine) as s:
        detail = get_invoice(s, inv_id, as_of=JAN)
    assert (detail.net, detail.tax, detail.total) == (eur(str(3 * D(amount))), eur(invoice_tax),
                                                      eur(str(3 * D(amount) + D(invoice_tax))))
    for position in (1, 2, 3):
        with transaction(engine) as s:
            credit_invoice(s, inv_id, lines=[(position, None)], reason="not delivered", on=date(2026, 1, 5))
    with Session(engine) as s:
        detail = get_invoice(s, inv_id, as_of=date(2026, 1, 5))
        customer = get_customer(s, "cus-t", as_of=date(2026, 1, 5))
    assert (detail.status, detail.payment_status, detail.amount_credited, detail.amount_due) == (
        "paid", "credited", detail.total, eur("0"))
    assert [n.tax for n in detail.credit_notes] == [eur(t) for t in line_taxes]
    assert sum(n.total.amount for n in detail.credit_notes) == detail.total.amount
    assert [n.applied_to_invoice for n in detail.credit_notes] == [n.total for n in detail.credit_notes]
    # Nothing is left owed, and no cent became customer credit.
    assert [(b.balance_due.amount, b.credit.amount) for b in customer.balances if b.balance_due.amount or
            b.credit.amount] == []


def test_crediting_a_draft_or_a_void_invoice_is_a_conflict(billed):
    draft_id = ids_by_number(billed)[None]
    with pytest.raises(ConflictError, match="draft"), transaction(billed) as s:
        credit_invoice(s, draft_id, reason="x", on=FEB)


def test_a_held_draft_is_finalized_or_voided(billed):
    ids = ids_by_number(billed)
    draft_id, b_eur = ids[None], ids["INV-2026-000002"]
    with transaction(billed) as s:
        done = finalize_invoice(s, draft_id, issued_on=date(2026, 2, 3))
    assert done.number == "INV-2026-000005"
    with transaction(billed) as s:
        void_invoice(s, b_eur, on=date(2026, 2, 3), reason="duplicate")
    with Session(billed) as s:
        assert get_invoice(s, draft_id, as_of=date(2026, 2, 3)).status == "open"
        voided = get_invoice(s, b_eur, as_of=date(2026, 2, 3))
    assert (voided.status, voided.payment_status, voided.amount_due) == ("void", None, eur("0"))
    assert voided.credit_notes[0].total == eur("11.00")


def test_a_payment_allocated_by_amount_leaves_the_rest_as_credit(billed):
    ids = ids_by_number(billed)
    jan, feb = ids["INV-2026-000001"], ids["INV-2026-000004"]
    with transaction(billed) as s:
        result = record_payment(s, customer_id="cus-a", amount="200.00", currency="EUR", received_on=FEB,
                                method="bank_transfer", source="bank", external_reference="TX-9",
                                allocations=[(feb, "120.00"), (jan, "50.00")])
    assert result.applied == ((feb, D("120.00")), (jan, D("50.00"))) and result.unapplied == D("30.00")
    with Session(billed) as s:
        payment = get_payment(s, result.payment_id)
        assert [(a.number, a.amount) for a in payment.allocations] == [("INV-2026-000004", eur("120.00")),
                                                                      ("INV-2026-000001", eur("50.00"))]
        assert (payment.unapplied, payment.refundable) == (eur("30.00"), eur("200.00"))
        [balance] = get_customer(s, "cus-a", as_of=FEB).balances
        assert (balance.balance_due, balance.credit, balance.net) == (eur("129.99"), eur("30.00"), eur("99.99"))


@pytest.mark.parametrize(("allocations", "field", "match"), [
    ([("feb", "120.01")], "allocations[0].amount", "more than the balance"),
    ([("feb", "120.00"), ("feb", "1.00")], "allocations[1].invoice_id", "named twice"),
    ([("feb", "120.00"), ("jan", "90.00")], "allocations", "more than the payment"),
    ([("b", "1.00")], "allocations[0].invoice_id", "not this customer's"),
    ([("feb", "0.001")], "allocations[0].amount", "more decimals"),
])
def test_bad_allocations_record_nothing(billed, allocations, field, match):
    ids = ids_by_number(billed)
    named = {"feb": ids["INV-2026-000004"], "jan": ids["INV-2026-000001"], "b": ids["INV-2026-000002"]}
    before = snapshot(billed)
    with pytest.raises(InvalidInputError, match=match) as err, transaction(billed) as s:
        record_payment(s, customer_id="cus-a", amount="200.00", currency="EUR", received_on=FEB,
                       method="bank_transfer", source="bank", external_reference="TX-bad",
                       allocations=[(named[k], a) for k, a in allocations])
    assert err.value.field == field
    assert snapshot(billed) == before


def test_customers_with_balances_credit_and_aging_on_a_fixed_date(billed):
    ids = ids_by_number(billed)
    with transaction(billed) as s:
        record_payment(s, customer_id="cus-a", amount="200.00", currency="EUR", received_on=FEB,
                       method="card", source="stripe", external_reference="ch_1",
                       allocations=[(ids["INV-2026-000001"], "179.99")])
    with Session(billed) as s:
        # As of Apr 15 2026: cus-a's Feb invoice (due Mar 3) is 43 days late; cus-b's Jan ones
        # (due Jan 31) are 74 days late.
        a = get_customer(s, "cus-a", as_of=date(2026, 4, 15))
        b = get_customer(s, "cus-b", as_of=date(2026, 4, 15))
        page1 = list_customers(s, as_of=date(2026, 4, 15), limit=2)
        page2 = list_customers(s, as_of=date(2026, 4, 15), after=page1.next, limit=2)
        with pytest.raises(NotFoundError):
            get_customer(s, "cus-x", as_of=FEB)
    [ab] = a.balances
    assert (ab.balance_due, ab.credit, ab.open_invoices, ab.overdue_invoices) == (eur("120.00"), eur("20.01"), 1, 1)
    assert ab.aging == {"current": eur("0"), "0-30": eur("0"), "31-60": eur("120.00"), "61-90": eur("0"),
                        "90+": eur("0")}
    assert [(x.currency, x.balance_due, x.aging["61-90"]) for x in b.balances] == [
        ("EUR", eur("11.00"), eur("11.00")), ("JPY", Money(D(1100), "JPY"), Money(D(1100), "JPY"))]
    assert [c.customer_id for c in page1.items] == ["cus-a", "cus-b"] and page1.next == "cus-b"
    assert [c.customer_id for c in page2.items] == ["cus-c"] and page2.next is None
    assert page2.items[0].balances == ()


def test_customers_are_found_by_a_part_of_their_id_name_or_collection_email_in_any_case(billed):
    with transaction(billed) as s:
        set_collection_profile(s, "cus-b", email="AP_team@b-example.com", now=datetime(2026, 2, 1, tzinfo=UTC))
    with Session(billed) as s:
        listed = {c.customer_id: c for c in list_customers(s, as_of=FEB).items}

        def found(text, limit=20):
            return [c.customer_id for c in find_customers(s, text, as_of=FEB, limit=limit)]

        assert found("CUS-") == ["cus-a", "cus-b", "cus-c"] and found("cus-", limit=2) == ["cus-a", "cus-b"]
        assert found(" ap_TEAM@ ") == ["cus-b"] and found("b-example") == ["cus-b"]
        assert found("%") == [] and found("ap%team") == [] and found("_") == ["cus-b"]
        assert find_customers(s, "cus-a", as_of=FEB) == (listed["cus-a"],)
        for text in ("", "   ", "x" * 255):
            with pytest.raises(InvalidInputError) as err:
                find_customers(s, text, as_of=FEB)
            assert err.value.field == "text"


def test_overdue_invoices_are_the_open_ones_past_due_with_a_balance_oldest_due_first(billed):
    ids = ids_by_number(billed)
    with transaction(billed) as s:
        record_payment(s, customer_id="cus-b", amount="11.00", currency="EUR", received_on=FEB,
                       method="card", source="stripe", external_reference="ch_b",
                       allocations=[(ids["INV-2026-000002"], "11.00")])
    with Session(billed) as s:
        listed = list_invoices(s, as_of=date(2026, 3, 10), limit=100).items
        overdue = overdue_invoices(s, as_of=date(2026, 3, 10))
        of_a = overdue_invoices(s, as_of=date(2026, 3, 10), customer_id="cus-a", limit=1)
        before_due = overdue_invoices(s, as_of=date(2026, 1, 31))
    assert [i.number for i in overdue.items] == ["INV-2026-000001", "INV-2026-000003", "INV-2026-000004"]
    assert overdue.count == 3
    assert set(overdue.items) == {i for i in listed if i.payment_status == "overdue"}
    assert [i.number for i in of_a.items] == ["INV-2026-000001"] and of_a.count == 2
    assert (before_due.items, before_due.count) == ((), 0)


def test_the_statement_runs_a_balance_through_every_movement(billed):
    ids = ids_by_number(billed)
    jan = ids["INV-2026-000001"]
    with transaction(billed) as s:
        p = record_payment(s, customer_id="cus-a", amount="200.00", currency="EUR", received_on=date(2026, 1, 20),
                           method="bank_transfer", source="bank", external_reference="TX-1")
        credit_invoice(s, ids["INV-2026-000004"], lines=[(1, D("10.00"))], reason="late start", on=date(2026, 2, 2))
        refund_payment(s, p.payment_id, amount="15.00", refunded_on=date(2026, 2, 5), reason="overpaid")
    with Session(billed) as s:
        statement = customer_statement(s, "cus-a", starts_on=date(2026, 1, 15), through=date(2026, 2, 28))
        full = customer_statement(s, "cus-a", starts_on=JAN, through=date(2026, 2, 28))
        balance = get_customer(s, "cus-a", as_of=date(2026, 2, 28)).balances[0]
    [eur_part] = statement.currencies
    assert eur_part.opening == eur("179.99")  # the Jan invoice, before the first day
    assert [(e.on, e.kind, e.reference, e.amount, e.balance) for e in eur_part.entries] == [
        (date(2026, 1, 20), "payment", "TX-1", eur("-200.00"), eur("-20.01")),
        (FEB, "invoice", "INV-2026-000004", eur("120.00"), eur("99.99")),
        (date(2026, 2, 2), "credit_note", "CN-2026-000001", eur("-12.00"), eur("87.99")),
        (date(2026, 2, 5), "refund", "TX-1", eur("15.00"), eur("102.99")),
    ]
    assert (eur_part.invoiced, eur_part.credited, eur_part.paid, eur_part.refunded, eur_part.closing) == (
        eur("120.00"), eur("12.00"), eur("200.00"), eur("15.00"), eur("102.99"))
    # The closing balance is what is due less the credit, whatever the first day.
    assert full.currencies[0].closing == eur_part.closing == balance.net
    assert full.currencies[0].opening == eur("0") and full.currencies[0].entries[0].reference == "INV-2026-000001"
    assert jan in {e.record_id for e in full.currencies[0].entries}


def test_a_void_appears_with_its_credit_note_and_nets_to_zero(billed):
    b_eur = ids_by_number(billed)["INV-2026-000002"]
    with transaction(billed) as s:
        void_invoice(s, b_eur, on=date(2026, 1, 3), reason="duplicate order")
    with Session(billed) as s:
        statement = customer_statement(s, "cus-b", starts_on=JAN, through=date(2026, 1, 31))
    eur_part, jpy_part = statement.currencies
    assert [(e.kind, e.description, e.balance) for e in eur_part.entries] == [
        ("invoice", "Invoice, due 2026-01-31 (void)", eur("11.00")),
        ("credit_note", "Credit note on INV-2026-000002: duplicate order", eur("0.00"))]
    assert jpy_part.closing == Money(D(1100), "JPY")


def test_a_statement_ending_before_it_starts_is_refused(billed):
    with Session(billed) as s, pytest.raises(InvalidInputError) as err:
        customer_statement(s, "cus-a", starts_on=FEB, through=JAN)
    assert err.value.field == "to"
