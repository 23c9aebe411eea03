"""Bill runs, invoices, credit notes, payments and the outbox against a real database.

Rules: docs/billing-rules.md §13 Invoices, §14 Tax, §15 Credit notes and customer credit,
§16 Payments and refunds.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal as D

import pytest
from sqlalchemy import select
from sqlmodel import Session

from billing_engine.errors import ConflictError, CurrencyMismatchError, InvalidInputError
from billing_engine.storage.database import count_rows
from billing_engine.storage.invoices import BillRunError, CreditNote, Invoice
from billing_engine.storage.outbox import OutboxRow
from billing_engine.storage.payments import Payment
from billing_engine.use_cases.billing import finalize_invoice, issue_credit_note, run_billing, void_invoice
from billing_engine.use_cases.payments import (
    customer_summary,
    invoice_payment_status,
    record_payment,
    refund_payment,
)
from billing_engine.use_cases.usage import record_usage, usage_quantities
from connector.database import transaction
from tests.support.billing import (
    Charge,
    StaticSource,
    account,
    seed,
    seed_source,
    snapshot,
)

JAN = date(2026, 1, 1)
FEB = date(2026, 2, 1)


def invoices(engine):
    with Session(engine) as s:
        return list(s.scalars(select(Invoice).order_by(Invoice.id)).all())


def outbox(engine):
    with Session(engine) as s:
        return list(s.scalars(select(OutboxRow).order_by(OutboxRow.id)).all())


def basic_source(engine):
    source = StaticSource(
        [account("cus-a"), account("cus-b", "10"), account("cus-c")],
        {
            # cus-a: 100.00 + 49.99 at 20 % → net 149.99, tax 29.998 → 30.00, total 179.99
            "cus-a": [Charge("a:1", D("100.00"), subscription_id="sub-a"),
                      Charge("a:2", D("49.99"), subscription_id="sub-a", item_id="item-2")],
            # cus-b: EUR 10.00 and JPY 1,000 → two invoices (one per currency); 10 %: 1.00 and 100
            "cus-b": [Charge("b:1", D("10.00"), subscription_id="sub-b"),
                      Charge("b:2", D(1000), currency="JPY", subscription_id="sub-b2")],
            # cus-c: nothing due until February
            "cus-c": [Charge("c:1", D("5.00"), subscription_id="sub-c", starts_on=FEB, ends_before=date(2026, 3, 1))],
        },
    )
    seed_source(engine, source)
    return source


def test_bill_run_creates_one_finalized_invoice_per_customer_and_currency(engine):
    result = run_billing(engine, JAN, source=basic_source(engine))
    assert (result.invoices_created, result.invoices_finalized, result.failures) == (3, 3, {})
    a, b_eur, b_jpy = invoices(engine)
    assert (a.customer_id, a.number, a.status, a.issued_on, a.due_on) == (
        "cus-a", "INV-2026-000001", "open", JAN, date(2026, 1, 31))  # net 30
    assert (a.subtotal, a.net, a.tax, a.total) == (D("149.99"), D("149.99"), D("30.00"), D("179.99"))
    assert (b_eur.number, b_eur.currency, b_eur.total) == ("INV-2026-000002", "EUR", D("11.00"))
    assert (b_jpy.number, b_jpy.currency, b_jpy.tax, b_jpy.total) == ("INV-2026-000003", "JPY", D(100), D(1100))
    topics = [r.topic for r in outbox(engine)]
    assert topics.count("invoice.finalized") == 3
    assert topics.count("customer.summary_changed") == 2  # coalesced: one pending row per customer
    payload = json.loads(next(r.payload for r in outbox(engine) if r.topic == "invoice.finalized"))
    assert payload["total"] == "179.99" and payload["tax_breakdown"] == [{"category": "S", "net": "149.99", "rate": "20",
                                                                                           "tax": "30.00"}]


def test_a_second_run_for_the_same_date_changes_nothing(engine):
    source = basic_source(engine)
    run_billing(engine, JAN, source=source)
    before = snapshot(engine)
    again = run_billing(engine, JAN, source=source)
    assert again.invoices_created == 0
    assert snapshot(engine) == before  # table by table, row by row
    # February bills only cus-c's new line, numbered next: no gap
    run_billing(engine, FEB, source=source)
    assert [i.number for i in invoices(engine)][-1] == "INV-2026-000004"


def test_one_customers_bad_data_is_recorded_and_the_others_are_billed(engine):
    source = basic_source(engine)
    source.broken = {"cus-b"}
    result = run_billing(engine, JAN, source=source)
    assert set(result.failures) == {"cus-b"} and "price missing" in result.failures["cus-b"]
    assert [i.customer_id for i in invoices(engine)] == ["cus-a"]
    with Session(engine) as s:
        [err] = s.scalars(select(BillRunError)).all()
    assert (err.customer_id, err.run_on) == ("cus-b", JAN) and "price missing" in err.reason
    run_billing(engine, JAN, source=source)  # again: same single error row, no duplicate
    with Session(engine) as s:
        assert count_rows(s, BillRunError) == 1


def test_held_drafts_have_no_number_until_finalized(engine):
    run_billing(engine, JAN, source=basic_source(engine), hold_for_review=True)
    drafts = invoices(engine)
    assert {(i.status, i.number) for i in drafts} == {("draft", None)}
    assert [r.topic for r in outbox(engine)] == []  # nothing leaves before finalization
    with transaction(engine) as s:
        finalize_invoice(s, drafts[2].id, issued_on=date(2026, 1, 2))
    with transaction(engine) as s:
        finalize_invoice(s, drafts[0].id, issued_on=date(2026, 1, 2))
    assert [i.number for i in invoices(engine)] == ["INV-2026-000002", None, "INV-2026-000001"]
    with pytest.raises(ConflictError), transaction(engine) as s:
        finalize_invoice(s, drafts[0].id, issued_on=date(2026, 1, 2))


def test_a_rolled_back_finalization_leaves_no_gap(engine):
    run_billing(engine, JAN, source=basic_source(engine), hold_for_review=True)
    first, second = invoices(engine)[:2]
    with pytest.raises(RuntimeError), transaction(engine) as s:
        finalize_invoice(s, first.id, issued_on=JAN)
        raise RuntimeError("crash after numbering")
    with transaction(engine) as s:
        assert finalize_invoice(s, second.id, issued_on=JAN).number == "INV-2026-000001"
    assert invoices(engine)[0].status == "draft" and outbox(engine)[0].aggregate_id == str(second.id)


def test_credits_exceeding_the_invoice_become_a_credit_note_and_customer_credit(engine):
    # Feb: charge 30.00, proration credit −60.00 (20 %): invoice 36.00; credit note CN-2026-000001
    # 60.00 + 12.00 = 72.00, 36.00 settles the invoice, 36.00 becomes credit.
    # Mar: 100.00 + 20.00 = 120.00 − 36.00 credit applied = 84.00 due.
    source = StaticSource([account("cus-a")], {"cus-a": [
        Charge("f:1", D("30.00"), starts_on=FEB), Charge("f:2", D("-60.00"), kind="proration_credit", starts_on=FEB),
        Charge("m:1", D("100.00"), starts_on=date(2026, 3, 1))]})
    seed_source(engine, source)
    run_billing(engine, FEB, source=source)
    [feb] = invoices(engine)
    assert (feb.total, feb.amount_credited, feb.status) == (D("36.00"), D("36.00"), "paid")
    with Session(engine) as s:
        [note] = s.scalars(select(CreditNote)).all()
        assert (note.number, note.net, note.tax, note.total) == ("CN-2026-000001", D("60.00"), D("12.00"),
                                                                 D("72.00"))
        assert (note.applied_to_invoice, note.to_credit_balance) == (D("36.00"), D("36.00"))
        assert customer_summary(s, "cus-a", FEB)[0].credit_balance == D("36.00")
        assert invoice_payment_status(s, feb.id, FEB) == "credited"
    run_billing(engine, date(2026, 3, 1), source=source)
    mar = invoices(engine)[1]
    assert (mar.total, mar.amount_credited, mar.balance) == (D("120.00"), D("36.00"), D("84.00"))
    with Session(engine) as s:
        assert customer_summary(s, "cus-a", date(2026, 3, 1))[0].credit_balance == 0


def billed_a(engine):
    run_billing(engine, JAN, source=basic_source(engine))
    return invoices(engine)


def pay(engine, ref, amount, currency="EUR", ids=None, on=date(2026, 1, 10), customer="cus-a"):
    with transaction(engine) as s:
        return record_payment(s, customer_id=customer, amount=amount, currency=currency, received_on=on,
                                  method="bank_transfer", source="bank", external_reference=ref, invoice_ids=ids)


def test_partial_then_duplicate_then_final_payment(engine):
    a = billed_a(engine)[0]  # 179.99 due Jan 31
    first = pay(engine, "TX-1", "100.00")
    assert first.created and first.applied == ((a.id, D("100.00")),)
    again = pay(engine, "TX-1", "100.00")  # resent: no effect, the first result
    assert not again.created and again.payment_id == first.payment_id and again.applied == first.applied
    with Session(engine) as s:
        assert count_rows(s, Payment) == 1
        assert invoice_payment_status(s, a.id, date(2026, 1, 15)) == "partially_paid"
        assert invoice_payment_status(s, a.id, date(2026, 2, 1)) == "overdue"
        [summary] = customer_summary(s, "cus-a", date(2026, 3, 15))
        # 79.99 open, due Jan 31: 43 days past due on Mar 15 → 31–60
        assert summary.open_balance == D("79.99") and summary.aging["31-60"] == D("79.99")
    # 100.00 more: 79.99 closes the invoice, 20.01 becomes credit
    last = pay(engine, "TX-2", "100.00")
    assert last.unapplied == D("20.01")
    with Session(engine) as s:
        assert invoice_payment_status(s, a.id, date(2026, 2, 1)) == "paid"
        assert customer_summary(s, "cus-a", date(2026, 2, 1))[0].credit_balance == D("20.01")
    assert [r.topic for r in outbox(engine)].count("payment.recorded") == 2


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"amount": "10.00", "currency": "USD"}, CurrencyMismatchError, "USD"),
        ({"amount": "-5.00"}, InvalidInputError, "positive"),
        ({"amount": 5.0}, InvalidInputError, "float"),
    ],
)
def test_bad_payments_change_nothing(engine, kwargs, error, match):
    billed_a(engine)
    before = snapshot(engine)
    with pytest.raises(error, match=match):
        pay(engine, "TX-bad", **kwargs)
    assert snapshot(engine) == before


def test_void_only_without_payments_and_no_allocation_to_void(engine):
    a, b_eur, _ = billed_a(engine)
    with transaction(engine) as s:
        cn_id = void_invoice(s, b_eur.id, on=date(2026, 1, 5), reason="duplicate order")
    with Session(engine) as s:
        note = s.get(CreditNote, cn_id)
        assert (note.number, note.total, note.applied_to_invoice) == ("CN-2026-000001", D("11.00"), D("11.00"))
        voided = s.get(Invoice, b_eur.id)  # the credit note settled it: nothing is owed on a void invoice
        assert (voided.status, voided.amount_credited, voided.balance) == ("void", D("11.00"), 0)
    before = snapshot(engine)
    with pytest.raises(ConflictError, match="void"):
        pay(engine, "TX-v", "11.00", ids=[b_eur.id], customer="cus-b")
    assert snapshot(engine) == before
    pay(engine, "TX-a", "10.00")
    with pytest.raises(ConflictError, match="payments"), transaction(engine) as s:
        void_invoice(s, a.id, on=date(2026, 1, 5))


def test_an_invoice_with_a_credit_note_cannot_be_voided_so_nothing_is_credited_twice(engine):
    a, _, _ = billed_a(engine)
    with transaction(engine) as s:
        issue_credit_note(s, a.id, amount=D("10.00"), reason="SLA credit", on=date(2026, 1, 12))
    before = snapshot(engine)
    with pytest.raises(ConflictError, match="already has a credit note"), transaction(engine) as s:
        void_invoice(s, a.id, on=date(2026, 1, 15))
    assert snapshot(engine) == before


def test_invoices_voided_before_the_upgrade_count_their_credit_note_as_credited(engine):
    from alembic import command
    from alembic.script import ScriptDirectory

    from connector.database import alembic_config, upgrade

    a, b_eur, _ = billed_a(engine)
    with transaction(engine) as s:
        void_invoice(s, b_eur.id, on=date(2026, 1, 5), reason="duplicate order")
        issue_credit_note(s, a.id, amount=D("10.00"), reason="SLA credit", on=date(2026, 1, 12))

    def credited() -> list[tuple[str, D, D]]:
        # The columns this revision knows (later revisions add others to invoices).
        with Session(engine) as s:
            rows = s.execute(select(Invoice.status, Invoice.amount_credited, Invoice.total, Invoice.amount_paid,
                                    Invoice.amount_refunded).where(Invoice.id.in_([a.id, b_eur.id]))
                             .order_by(Invoice.id)).all()
        return [(status, credited, total - paid - credited + refunded)
                for status, credited, total, paid, refunded in rows]

    after = [("open", D("12.00"), D("167.99")), ("void", D("11.00"), 0)]
    assert credited() == after
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    before_it = ScriptDirectory.from_config(config).get_revision("0015_credit_notes_salesforce").down_revision
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, before_it)
    assert credited() == [("open", D("12.00"), D("167.99")), ("void", 0, D("11.00"))]  # as earlier versions kept it
    upgrade(engine)
    assert credited() == after


def test_refunds_reopen_the_balance_and_cannot_exceed_the_payment(engine):
    a = billed_a(engine)[0]
    p = pay(engine, "TX-1", "179.99")
    with transaction(engine) as s:
        refund_payment(s, p.payment_id, amount="79.99", refunded_on=date(2026, 1, 20), reason="goodwill")
    with Session(engine) as s:
        inv = s.get(Invoice, a.id)
        # balance = 179.99 − 179.99 + 79.99 = 79.99 (Zuora rule)
        assert (inv.balance, inv.status) == (D("79.99"), "open")
    before = snapshot(engine)
    with pytest.raises(InvalidInputError, match="100.00"), transaction(engine) as s:
        refund_payment(s, p.payment_id, amount="100.01", refunded_on=date(2026, 1, 21))
    assert snapshot(engine) == before


def test_adjustment_credit_note_recomputes_tax_on_the_rounded_amount(engine):
    a = billed_a(engine)[0]
    with transaction(engine) as s:
        cn_id = issue_credit_note(s, a.id, amount=D("10.00"), reason="SLA credit", on=date(2026, 1, 12))
    with Session(engine) as s:
        note = s.get(CreditNote, cn_id)
        # 10.00 + 20 % = 12.00, all of it against the open balance: 179.99 − 12.00 = 167.99
        assert (note.net, note.tax, note.total, note.to_credit_balance) == (D("10.00"), D("2.00"), D("12.00"), 0)
        assert s.get(Invoice, a.id).balance == D("167.99")


def test_outbox_rows_live_and_die_with_their_transaction(engine):
    billed_a(engine)
    count = len(outbox(engine))
    with pytest.raises(RuntimeError), transaction(engine) as s:
        pay(engine, "TX-1", "1.00")  # separate, committed transaction
        record_payment(s, customer_id="cus-a", amount="2.00", currency="EUR", received_on=JAN,
                           method="card", source="stripe", external_reference="ch_1")
        raise RuntimeError("rollback")
    rows = outbox(engine)
    payloads = [json.loads(r.payload) for r in rows if r.topic == "payment.recorded"]
    assert [p["amount"] for p in payloads] == ["1.00"]  # the rolled-back payment left no row
    assert len(rows) == count + 1  # + payment.recorded; summary row for cus-a coalesced
    assert all(r.status == "pending" and r.attempts == 0 for r in rows)


def test_usage_is_recorded_once_per_source_key(engine):
    seed(engine, {"cus-u": "EUR"}, {"sub-u": "cus-u"})
    at = datetime(2026, 1, 31, 23, 30, tzinfo=UTC)
    with transaction(engine) as s:
        first = record_usage(s, subscription_id="sub-u", item_id="item-9", quantity="12.5", occurred_at=at, source="meter",
                                 idempotency_key="evt-1", timezone="Europe/Paris")
        again = record_usage(s, subscription_id="sub-u", item_id="item-9", quantity="99", occurred_at=at, source="meter",
                                 idempotency_key="evt-1")
    assert first.created and not again.created and again.usage_id == first.usage_id
    with Session(engine) as s:
        # 23:30 UTC on Jan 31 is Feb 1 in Paris: counted in February's window
        totals = usage_quantities(s, "sub-u", ["item-9"], JAN, date(2026, 3, 1), lambda _i, on: on.replace(day=1))
    assert totals == {("item-9", FEB): D("12.5")}


def test_a_bug_in_a_charge_source_fails_the_bill_run_instead_of_being_recorded_as_bad_data(engine):
    source = basic_source(engine)

    def broken(session, accounts, as_of):
        raise TypeError("unsupported operand type(s) for +: 'Decimal' and 'NoneType'")

    source.charges_due = broken
    with pytest.raises(TypeError):
        run_billing(engine, JAN, source=source)
    with Session(engine) as s:
        assert count_rows(s, BillRunError) == 0


# ---------------------------------------------------------------- hold for review, dry run, latest date


def back_billed_source():
    """cus-a: one month due; cus-b: four months of one subscription (back-billing); cus-c: bad data."""
    months = [date(2026, m, 1) for m in range(1, 6)]
    charges = {"cus-a": [Charge("a:jan", D("10.00"), subscription_id="sub-a")],
               "cus-b": [Charge(f"b:{start}", D("20.00"), subscription_id="sub-b", starts_on=start, ends_before=end)
                         for start, end in zip(months, months[1:], strict=False)]}
    return StaticSource([account("cus-a"), account("cus-b"), account("cus-c")], charges, broken={"cus-c"})


def test_an_invoice_covering_more_than_max_periods_is_held_for_review(engine):
    src = back_billed_source()
    seed_source(engine, src)
    # Three periods are not more than three: it would be finalized.
    [b] = [p for p in run_billing(engine, date(2026, 3, 1), source=back_billed_source(), max_periods=3,
                                  dry_run=True).previews if p.customer_id == "cus-b"]
    assert (b.periods, b.held) == (3, "")
    result = run_billing(engine, date(2026, 4, 1), source=src, max_periods=3)
    assert (result.invoices_created, result.invoices_finalized, result.invoices_held) == (2, 1, 1)
    with Session(engine) as s:
        rows = {i.customer_id: (i.status, i.number) for i in s.scalars(select(Invoice)).all()}
    assert rows == {"cus-a": ("open", "INV-2026-000001"), "cus-b": ("draft", None)}
    with pytest.raises(InvalidInputError):
        run_billing(engine, JAN, source=src, max_periods=0)


def test_a_dry_run_writes_nothing_and_previews_the_real_run(engine):
    src = back_billed_source()
    seed_source(engine, src)
    before = snapshot(engine)
    preview = run_billing(engine, date(2026, 4, 1), source=src, max_periods=3, dry_run=True)
    assert snapshot(engine) == before  # not even the bad customer's bill_run_errors row
    assert preview.dry_run and set(preview.failures) == {"cus-c"}
    assert [(p.customer_id, p.periods, bool(p.held), p.draft.totals.total) for p in preview.previews] == [
        ("cus-a", 1, False, D("12.00")), ("cus-b", 4, True, D("96.00"))]
    assert "more than 3" in preview.previews[1].held

    real = run_billing(engine, date(2026, 4, 1), source=src, max_periods=3)
    assert (real.invoices_created, real.invoices_finalized, real.invoices_held) == \
        (preview.invoices_created, preview.invoices_finalized, preview.invoices_held)
    with Session(engine) as s:
        totals = {i.customer_id: i.total for i in s.scalars(select(Invoice)).all()}
    assert totals == {p.customer_id: p.draft.totals.total for p in preview.previews}


def test_a_bill_run_past_year_9998_is_refused_before_reading_anything(engine):
    src = back_billed_source()
    seed_source(engine, src)
    before = snapshot(engine)
    with pytest.raises(InvalidInputError, match="9999-12-31 is after 9998-12-31"):
        run_billing(engine, date(9999, 12, 31), source=src)
    assert snapshot(engine) == before
