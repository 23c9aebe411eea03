"""Concurrent bill runs and finalizations on PostgreSQL: no duplicate invoice, no duplicate number, no gap.

Enforced by UNIQUE(invoice_lines.charge_key) and the row-locked number sequence
(docs/billing-rules.md §4 Charge types and when a line is due, §13 Invoices).
"""

from __future__ import annotations

import threading
from datetime import date
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
