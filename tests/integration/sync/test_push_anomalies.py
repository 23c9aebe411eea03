"""An invoice the anomaly guard holds reaches Salesforce only once finance releases it
(docs/intelligence.md, The anomaly guard): the push runs against the sandbox over HTTPS."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import select
from sqlmodel import Session

from billing_engine.storage.catalog import CustomerRow
from billing_engine.storage.invoices import Invoice
from billing_engine.storage.subscriptions import SubscriptionRow
from billing_engine.use_cases.anomalies import AnomalyGuard, release_invoice
from billing_engine.use_cases.billing import run_billing
from connector.database import transaction
from tests.support.push import (
    Charge,
    StaticSource,
    create_accounts,
    drain_outbox,
    invoice_key,
    salesforce_invoices,
)


def bill(engine, ids: list[str], m: int, seats: dict[str, int]) -> None:
    """The bill run of month ``m`` of 2026: each customer's seats at 35.00, with the guard holding."""
    starts, ends = date(2026, m, 1), date(2026, m + 1, 1)
    charges = {cid: [Charge(f"{cid}:seats:{starts}", Decimal(35 * seats.get(cid, 10)), f"s{cid}", "seats", "SEATS",
                            quantity=Decimal(seats.get(cid, 10)), unit_price=Decimal(35), starts_on=starts,
                            ends_before=ends, product_name="Seats", description="Seats")]
               for cid in ids}
    run_billing(engine, starts, source=StaticSource(ids, charges), now=datetime(2026, m, 1, 6, tzinfo=UTC),
                guard=AnomalyGuard("hold"))


def test_a_held_invoice_is_pushed_only_once_released(services):
    client = services.salesforce()
    accounts = create_accounts(client, 2)
    ids = ["c-ok", "c-odd"]
    with Session(services.engine) as s, s.begin():
        for cid, account_id in zip(ids, accounts, strict=True):
            s.add(CustomerRow(id=cid, name=cid, currency="EUR", salesforce_account_id=account_id))
        s.flush()
        for cid in ids:
            s.add(SubscriptionRow(id=f"s{cid}", customer_id=cid, currency="EUR", starts_on=date(2026, 1, 1),
                                  interval="month", billing_anchor_on=date(2026, 1, 1)))
    for m in range(1, 5):
        bill(services.engine, ids, m, {})
    bill(services.engine, ids, 5, {"c-odd": 100})  # ten times the seats, no amendment behind it
    with Session(services.engine) as s:
        held = s.scalars(select(Invoice).where(Invoice.status == "draft")).one()
    assert held.customer_id == "c-odd"

    drain_outbox(services)

    state, duplicates = salesforce_invoices(client)
    assert duplicates == [] and len(state) == 9  # four months of both, and May of the ordinary one
    assert invoice_key(services.engine, held.id) not in state

    with transaction(services.engine) as s:
        done = release_invoice(s, held.id, note="100 seats confirmed by the customer's order", on=date(2026, 5, 2),
                               now=datetime(2026, 5, 2, 9, tzinfo=UTC))
    drain_outbox(services)

    state, duplicates = salesforce_invoices(client)
    assert duplicates == [] and len(state) == 10
    assert state[invoice_key(services.engine, held.id)] == (done.number, done.total, 1)
    assert done.total == Decimal("4200.00")  # 100 × 35.00 + 20 % tax
