"""A customer's timeline: each subscription's life (start, renewals, amendments, cancellation,
end, MRR changes; ``use_cases.subscriptions.subscription_timeline``) and the money that moved
(invoices, credit notes, payments, refunds; the statement of ``use_cases.accounts``), newest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from billing_engine.money import Money
from billing_engine.use_cases import accounts, subscriptions

#: The first day a statement may start on: the whole history.
BEGINNING = date(1900, 1, 1)


@dataclass(frozen=True)
class Event:
    on: date
    kind: str  # started, renewed, amended, cancelled, ended, mrr_changed, invoice, credit_note, payment, refund
    description: str
    subscription_id: str | None = None
    reference: str | None = None
    record_id: int | None = None
    amount: Money | None = None
    before: Money | None = None


def customer_timeline(session, customer_id: str, *, through: date) -> list[Event]:  # type: ignore[no-untyped-def]
    events: list[Event] = []
    for sub in subscriptions.subscriptions_of_customer(session, customer_id):
        for e in subscriptions.subscription_timeline(session, sub.subscription_id, on=through):
            if e.kind == "invoice_issued":
                continue  # the statement lists every invoice, with or without a subscription
            amount = Money(e.amount, sub.currency) if e.amount is not None else None
            before = Money(e.before, sub.currency) if e.before is not None else None
            events.append(Event(e.on, e.kind, e.description, sub.subscription_id, amount=amount, before=before))
    statement = accounts.customer_statement(session, customer_id, starts_on=BEGINNING, through=through)
    for currency in statement.currencies:
        for entry in currency.entries:
            events.append(Event(entry.on, entry.kind, entry.description, reference=entry.reference,
                                record_id=entry.record_id, amount=entry.amount))
    order = {"started": 0, "renewed": 1, "amended": 2, "cancelled": 3, "ended": 4, "mrr_changed": 5,
             "invoice": 6, "credit_note": 7, "payment": 8, "refund": 9}
    events.sort(key=lambda e: (e.on, order.get(e.kind, 10), e.record_id or 0), reverse=True)
    return events
