"""Concurrent bill runs and finalizations on PostgreSQL: no duplicate invoice, no duplicate number, no gap.

Enforced by UNIQUE(invoice_lines.charge_key) and the row-locked number sequence
(docs/billing-rules.md §4 Charge types and when a line is due, §13 Invoices).
"""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime
from decimal import Decimal as D

import pytest
from sqlalchemy import select
from sqlmodel import Session

from billing_engine.storage.database import count_rows
from billing_engine.storage.invoices import Invoice, InvoiceLine
from billing_engine.use_cases.billing import finalize_invoice, run_billing
from connector.database import transaction
from tests.support.billing import Charge, StaticSource, account, seed_source

pytestmark = pytest.mark.postgres_only

JAN, FEB = date(2026, 1, 1), date(2026, 2, 1)
N = 60


def source():
    accounts = [account(f"cus-{i:03d}") for i in range(N)]
    charges = {a.customer_id: [
        Charge(f"{a.customer_id}:jan", D("10.00"), subscription_id=a.customer_id),
        Charge(f"{a.customer_id}:feb", D("20.00"), subscription_id=a.customer_id, starts_on=FEB,
               ends_before=date(2026, 3, 1))] for a in accounts}
    return StaticSource(accounts, charges)


def in_parallel(*jobs):
    barrier = threading.Barrier(len(jobs))
    results, errors = [None] * len(jobs), []

    def run(i, job):
        try:
            barrier.wait()
            results[i] = job()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    return results


def numbers(engine):
    with Session(engine) as s:
        return list(s.scalars(select(Invoice.number).where(Invoice.number.is_not(None))).all())


def test_two_bill_runs_and_two_finalizations_at_once(engine):
    src = source()
    seed_source(engine, src)
    # Small batches so the two runs interleave and collide on charge keys many times.
    first, second = in_parallel(lambda: run_billing(engine, JAN, source=src, batch_size=7),
                                lambda: run_billing(engine, JAN, source=src, batch_size=7))
    assert first.invoices_created + second.invoices_created == N  # each customer billed once
    assert not first.failures and not second.failures
    with Session(engine) as s:
        assert count_rows(s, Invoice) == N and count_rows(s, InvoiceLine) == N
    got = numbers(engine)
    assert sorted(got) == [f"INV-2026-{n:06d}" for n in range(1, N + 1)]  # no duplicate, no gap

    # February: held drafts, then two finalizers working through interleaved halves at once.
    run_billing(engine, FEB, source=src, hold_for_review=True)
    with Session(engine) as s:
        drafts = list(s.scalars(select(Invoice.id).where(Invoice.status == "draft")
                                .order_by(Invoice.id)).all())
    assert len(drafts) == N

    def finalize(ids):
        out = []
        for invoice_id in ids:
            with transaction(engine) as s:
                out.append(finalize_invoice(s, invoice_id, issued_on=FEB).number)
        return out

    a, b = in_parallel(lambda: finalize(drafts[0::2]), lambda: finalize(drafts[1::2]))
    assert len(set(a) | set(b)) == N
    assert sorted(numbers(engine)) == [f"INV-2026-{n:06d}" for n in range(1, 2 * N + 1)]
    # a third run now finds nothing: idempotent under concurrency too
    assert run_billing(engine, FEB, source=src).invoices_created == 0


SUBSCRIPTIONS = 3000  # scripts/bench_billing.py --concurrent-runs 2 runs the same over 10,000 and more


def invoices_by_customer(engine):
    with Session(engine) as s:
        rows = s.execute(select(Invoice.customer_id, Invoice.currency, Invoice.status, Invoice.total)).all()
    out = {}
    for customer_id, currency, status, total in rows:
        assert customer_id not in out, f"customer {customer_id} invoiced twice"
        out[customer_id] = (currency, status, total)
    return out


def test_two_bill_runs_over_the_database_both_finish_and_equal_one_clean_run(engine):
    """Two bill runs at once (two clocks, or a clock and a person) in batches of 500, through COPY:
    both complete without a failure, each customer is billed by exactly one of them (the other
    counts it as skipped), numbers are gapless and the invoices are those of a single run."""
    from sqlalchemy import func, text

    from billing_engine.storage import BILLING_MODELS
    from billing_engine.use_cases.billing import bill_customers
    from tests.support.billing import seed_monthly_subscriptions

    seed_monthly_subscriptions(engine, SUBSCRIPTIONS, JAN)
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    first, second = in_parallel(lambda: bill_customers(engine, JAN), lambda: bill_customers(engine, JAN))
    assert not first.failures and not second.failures
    # Customers are claimed, so the runs share them; whichever reached a customer the other was
    # billing waited for it and counts it as skipped (billed by another run).
    for run in (first, second):
        assert run.customers_billed + run.customers_skipped <= SUBSCRIPTIONS
    assert first.invoices_created + second.invoices_created == SUBSCRIPTIONS
    assert first.invoices_finalized + second.invoices_finalized == SUBSCRIPTIONS
    assert first.customers_billed + second.customers_billed == SUBSCRIPTIONS
    concurrent = invoices_by_customer(engine)
    assert sorted(numbers(engine)) == [f"INV-2026-{n:06d}" for n in range(1, SUBSCRIPTIONS + 1)]
    with Session(engine) as s:
        lines = s.execute(select(func.count(), func.count(InvoiceLine.charge_key.distinct()))).one()
    assert tuple(lines) == (3 * SUBSCRIPTIONS, 3 * SUBSCRIPTIONS)

    # The same data billed once, by one run alone.
    with engine.begin() as conn:
        names = ", ".join(f'"{m.__table__.name}"' for m in BILLING_MODELS)
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    alone = bill_customers(engine, JAN)
    assert alone.invoices_created == SUBSCRIPTIONS and not alone.failures
    assert invoices_by_customer(engine) == concurrent


def test_a_charge_billed_behind_the_runs_back_is_skipped_not_fatal(engine):
    """The UNIQUE charge key as the last line of defence: a writer that does not claim customers
    (an older billsync during a deploy overlap) bills one customer's charge between the run's read
    and its COPY. The batch's duplicate key comes out as SQLAlchemy's IntegrityError, the batch is
    redone customer by customer, that customer's charges are read again and it counts as skipped."""
    from billing_engine.storage.invoices import Invoice as InvoiceRow

    src = source()  # 60 customers: the batch's lines go through COPY
    seed_source(engine, src)
    behind = "cus-005"

    class RacedSource(type(src)):
        raced = False

        def charges_due(self, session, accounts, as_of):
            out = super().charges_due(session, accounts, as_of)
            if not self.raced and len(accounts) > 1:
                self.raced = True
                with Session(engine) as other, other.begin():
                    inv = InvoiceRow(customer_id=behind, currency="EUR", status="draft", bill_run_on=JAN,
                                     created_at=datetime(2026, 1, 1, tzinfo=UTC))
                    other.add(inv)
                    other.flush()
                    other.add(InvoiceLine(invoice_id=inv.id, charge_key=f"{behind}:jan", position=1,
                                          subscription_id=behind, item_id="item-1", product_code="PLAN",
                                          product_name="Plan", kind="recurring", starts_on=JAN, ends_before=FEB))
            return out

    raced = RacedSource(src.accounts, src.charges)
    result = run_billing(engine, JAN, source=raced)
    assert raced.raced
    assert not result.failures
    assert result.invoices_created == N - 1
    assert result.customers_skipped == 1
    with Session(engine) as s:
        assert count_rows(s, Invoice) == N and count_rows(s, InvoiceLine) == N
    assert sorted(numbers(engine)) == [f"INV-2026-{n:06d}" for n in range(1, N)]
