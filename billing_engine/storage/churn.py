"""Churn risk: the scores kept per customer, the models trained with their evaluation, and the
billing history the signals read (docs/intelligence.md, Churn risk).

``churn_scores``: one row per customer scored — the score 0–100, its three reasons (JSON:
signal, value, weight), the method (``baseline`` or ``model``) and when it was scored.
``churn_models``: one row per training — the fitted parameters (JSON), the months trained on
and held out, the counts, and the holdout's ROC AUC of the model and of the baseline.

``customer_facts`` reads every customer's history as the pure module's ``CustomerFacts`` in a
fixed number of queries: the MRR at month ends where it changed (``mrr_month_ends``), the first
subscription start, the invoices' due and settlement dates, the contractions recorded by
amendments, the direct debits returned, the usage per month and the units included with the days
each item ran. Amounts and quantities stay ``Decimal``.

Everything is dated so that a signal measured on a day reads that day's state, whatever happened
since: an invoice stopped being owed on the day it was paid, credited or voided — the latest
payment received or credit note applied to it (a credit note voids an issued invoice), or, when
neither is recorded, the day its status last changed; units included count only while their item
ran (from the subscription's start or the amendment adding it, until the amendment removing it or
the subscription's end). What the tables do not keep is approximated: an invoice's status history
is not stored, so a paid invoice reopened by a refund is read as owed since its due date; the date
of customer credit applied to an invoice is not stored, so an invoice settled that way counts as
settled when its status last changed.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Index, Text, delete, func, select
from sqlmodel import Field, Session, SQLModel

from billing_engine.churn import AllowancePeriod, CustomerFacts, InvoiceFacts, ModelParams, Reason
from billing_engine.storage.audit import AuditRow
from billing_engine.storage.catalog import CustomerRow, PriceRow
from billing_engine.storage.collections import DirectDebit
from billing_engine.storage.columns import timestamp_field
from billing_engine.storage.database import bulk_insert
from billing_engine.storage.invoices import CreditNote, Invoice
from billing_engine.storage.payments import Payment, PaymentAllocation
from billing_engine.storage.revenue import MrrMonthEnd
from billing_engine.storage.subscriptions import AmendmentRow, SubscriptionItemRow, SubscriptionRow
from billing_engine.storage.usage import UsageEventRow

_SETTLED_STATUSES = ("paid", "void")  # no longer owed: since the day it was settled or voided
_OWED_STATUSES = ("open", "uncollectible")


class ChurnScoreRow(SQLModel, table=True):
    __tablename__ = "churn_scores"
    __table_args__ = (Index("ix_churn_scores_rank", "score", "customer_id"),)
    customer_id: str = Field(primary_key=True, foreign_key="customers.id", max_length=64)
    score: int = Field(nullable=False)
    reasons_json: str = Field(default="[]", sa_type=Text, nullable=False)
    method: str = Field(max_length=16, nullable=False)
    model_id: int | None = Field(default=None, nullable=True)
    scored_on: date = Field(nullable=False)
    scored_at: datetime = timestamp_field()


class ChurnModelRow(SQLModel, table=True):
    __tablename__ = "churn_models"
    id: int | None = Field(default=None, primary_key=True)
    trained_at: datetime = timestamp_field()
    trained_through: str = Field(max_length=7, nullable=False)  # YYYY-MM, the last month end known
    holdout_from: str = Field(max_length=7, nullable=False)
    params_json: str = Field(sa_type=Text, nullable=False)
    train_rows: int = Field(nullable=False)
    train_churned: int = Field(nullable=False)
    holdout_rows: int = Field(nullable=False)
    holdout_churned: int = Field(nullable=False)
    churned_customers: int = Field(nullable=False)
    model_auc: float | None = Field(default=None, nullable=True)
    baseline_auc: float | None = Field(default=None, nullable=True)


# ---------------------------------------------------------------- scores


def reasons_to_json(reasons: Sequence[Reason]) -> str:
    return json.dumps([{"signal": r.signal, "value": r.value, "weight": r.weight} for r in reasons])


def reasons_from_json(text: str) -> tuple[Reason, ...]:
    return tuple(Reason(str(r["signal"]), float(r["value"]), float(r["weight"])) for r in json.loads(text or "[]"))


def stored_scores(session: Session, customer_ids: Sequence[str] | None = None) -> dict[str, ChurnScoreRow]:
    t = ChurnScoreRow
    if customer_ids is None:
        return {r.customer_id: r for r in session.scalars(select(t))}
    out: dict[str, ChurnScoreRow] = {}
    ids = list(customer_ids)
    for start in range(0, len(ids), 900):
        for row in session.scalars(select(t).where(t.customer_id.in_(ids[start:start + 900]))):
            out[row.customer_id] = row
    return out


def save_scores(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Each row replaces the customer's score (one row per customer)."""
    delete_scores(session, [r["customer_id"] for r in rows])
    bulk_insert(session, ChurnScoreRow, rows)


def delete_scores(session: Session, customer_ids: Sequence[str]) -> None:
    ids = list(customer_ids)
    for start in range(0, len(ids), 900):
        session.execute(delete(ChurnScoreRow).where(ChurnScoreRow.customer_id.in_(ids[start:start + 900])))


def ranked_scores(session: Session, *, limit: int, after: tuple[int, str] | None = None,
                  ) -> list[tuple[ChurnScoreRow, str]]:
    """Scores from the highest, then by customer id, with the customer's name (keyset pages)."""
    t, c = ChurnScoreRow, CustomerRow
    query = select(t, c.name).join(c, c.id == t.customer_id)
    if after is not None:
        score, cid = after
        query = query.where((t.score < score) | ((t.score == score) & (t.customer_id > cid)))
    rows = session.execute(query.order_by(t.score.desc(), t.customer_id).limit(limit)).all()  # type: ignore[attr-defined]
    return [(row[0], row[1]) for row in rows]


# ---------------------------------------------------------------- models


def add_model(session: Session, values: dict[str, Any]) -> int:
    row = ChurnModelRow(**values)
    session.add(row)
    session.flush()
    assert row.id is not None
    return row.id


def latest_model(session: Session) -> ChurnModelRow | None:
    t = ChurnModelRow
    return session.scalars(select(t).order_by(t.id.desc()).limit(1)).first()  # type: ignore[union-attr]


def model_params(row: ChurnModelRow) -> ModelParams:
    return ModelParams.from_json(json.loads(row.params_json))


def churned_customers(session: Session, through: str) -> int:
    """Customers whose MRR went to zero at a month end up to ``through`` (a ``churn`` movement)."""
    t = MrrMonthEnd
    return int(session.scalar(select(func.count(func.distinct(t.customer_id)))
                              .where(t.kind == "churn", t.month <= through)) or 0)


def first_mrr_month(session: Session) -> str | None:
    return session.scalar(select(func.min(MrrMonthEnd.month)))


# ---------------------------------------------------------------- history


def _decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


#: The audit log's actions by customers in the portal that are churn signals (billing_engine.churn).
PORTAL_SIGNALS = {"portal.cancelled": "self_service_cancel", "portal.sales_requested": "sales_request"}
PORTAL_ACTOR = "portal:"


def _portal_actions(session: Session, events: dict[str, dict[str, list[date]]], through: date) -> None:
    """The cancellations and requests to sales customers made in the portal up to ``through``."""
    a = AuditRow
    until = datetime.combine(through, datetime.max.time(), tzinfo=UTC)
    seen: set[tuple[str, str, str]] = set()
    for actor, action, at, after in session.execute(select(a.actor, a.action, a.at, a.after).where(
            a.action.in_(list(PORTAL_SIGNALS)), a.actor.startswith(PORTAL_ACTOR), a.at <= until)  # type: ignore[attr-defined]
            .order_by(a.id)):
        message_id = str((json.loads(after) if after else {}).get("message_id") or "") if action == \
            "portal.sales_requested" else ""
        if message_id:  # a message sent twice (its form resubmitted) is one request
            if (actor, action, message_id) in seen:
                continue
            seen.add((actor, action, message_id))
        events[actor.removeprefix(PORTAL_ACTOR)][PORTAL_SIGNALS[action]].append(at.date())


def customer_facts(session: Session, through: date) -> list[CustomerFacts]:
    """Every customer with an MRR history, as ``CustomerFacts`` known on ``through``."""
    mrr: dict[str, dict[str, Decimal]] = defaultdict(dict)
    last_month = f"{through.year:04d}-{through.month:02d}"
    m = MrrMonthEnd
    for cid, month, value in session.execute(select(m.customer_id, m.month, m.mrr).where(m.month <= last_month)):
        mrr[cid][month] = mrr[cid].get(month, Decimal(0)) + _decimal(value)
    if not mrr:
        return []
    first_started: dict[str, date] = {}
    s = SubscriptionRow
    subscriptions: dict[str, tuple[str, date, date | None]] = {}
    for sid, cid, starts_on, ends_before in session.execute(select(s.id, s.customer_id, s.starts_on, s.ends_before)):
        subscriptions[sid] = (cid, starts_on, ends_before)
        if cid not in first_started or starts_on < first_started[cid]:
            first_started[cid] = starts_on
    sub_customer = {sid: cid for sid, (cid, _, _) in subscriptions.items()}

    events: dict[str, dict[str, list[date]]] = defaultdict(lambda: defaultdict(list))
    _contractions(session, sub_customer, events, through)
    d = DirectDebit
    for cid, returned_on in session.execute(select(d.customer_id, d.returned_on).where(
            d.status == "returned", d.returned_on.is_not(None), d.returned_on <= through)):  # type: ignore[union-attr]
        events[cid]["payment_return"].append(returned_on)
    _portal_actions(session, events, through)

    usage: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    u = UsageEventRow
    month_of = func.strftime("%Y-%m", u.occurred_on) if session.get_bind().dialect.name == "sqlite" \
        else func.to_char(u.occurred_on, "YYYY-MM")
    for sid, month, quantity in session.execute(select(u.subscription_id, month_of, func.sum(u.quantity))
                                                .where(u.occurred_on <= through)
                                                .group_by(u.subscription_id, month_of)):
        cid = sub_customer.get(sid)
        if cid is not None:
            usage[cid][month] += _decimal(quantity)

    invoices = _invoices(session, through)
    allowances = _allowances(session, subscriptions, through)
    return [CustomerFacts(cid, first_started.get(cid), dict(values), tuple(invoices.get(cid, ())),
                          {kind: tuple(sorted(ds)) for kind, ds in events.get(cid, {}).items()},
                          dict(usage.get(cid, {})), tuple(allowances.get(cid, ())))
            for cid, values in sorted(mrr.items())]


def _invoices(session: Session, through: date) -> dict[str, list[InvoiceFacts]]:
    """Every issued invoice due by ``through`` with the day it stopped being owed (``None``: owed)."""
    i, a, p, cn = Invoice, PaymentAllocation, Payment, CreditNote
    last_document: dict[int, date] = {}
    for iid, received_on in session.execute(select(a.invoice_id, func.max(p.received_on))
                                            .join(p, p.id == a.payment_id).group_by(a.invoice_id)):
        last_document[iid] = received_on
    for iid, issued_on in session.execute(select(cn.invoice_id, func.max(cn.issued_on))
                                          .where(cn.invoice_id.is_not(None), cn.applied_to_invoice > 0)  # type: ignore[union-attr]
                                          .group_by(cn.invoice_id)):
        last_document[iid] = max(issued_on, last_document.get(iid, issued_on))
    out: dict[str, list[InvoiceFacts]] = defaultdict(list)
    for iid, cid, status, due_on, changed_at in session.execute(select(
            i.id, i.customer_id, i.status, i.due_on, i.status_changed_at).where(
            i.status.in_(_SETTLED_STATUSES + _OWED_STATUSES), i.issued_on.is_not(None),  # type: ignore[union-attr]
            i.due_on.is_not(None), i.due_on <= through)):  # type: ignore[union-attr]
        settled_on = None
        if status in _SETTLED_STATUSES:
            settled_on = last_document.get(iid) or (changed_at.date() if changed_at else due_on)
        out[cid].append(InvoiceFacts(due_on, settled_on))
    return out


def _allowances(session: Session, subscriptions: dict[str, tuple[str, date, date | None]],
                through: date) -> dict[str, list[AllowancePeriod]]:
    """Per customer, the units each item includes per month (included units × quantity, at least
    one) and the days it ran: from the subscription's start or the amendment adding it, changed by
    the amendments changing its quantity, until the amendment removing it or the subscription's end."""
    included = {pid: _decimal(units) for pid, units in session.execute(
        select(PriceRow.id, PriceRow.included_units).where(PriceRow.included_units.is_not(None)))}  # type: ignore[union-attr]
    if not included:
        return {}
    # (subscription, item) → its included units per unit, and the (day, quantity) changes
    per_unit: dict[tuple[str, str], Decimal] = {}
    changes: dict[tuple[str, str], list[tuple[date, int, Decimal | None]]] = defaultdict(list)  # None: removed
    it = SubscriptionItemRow
    for sid, item_id, price_id, quantity in session.execute(select(it.subscription_id, it.item_id, it.price_id,
                                                                   it.quantity)):
        if price_id in included and sid in subscriptions:
            per_unit[(sid, item_id)] = included[price_id]
            changes[(sid, item_id)].append((subscriptions[sid][1], -1, _decimal(quantity)))
    am = AmendmentRow
    for sid, sequence, action, item_id, quantity, price_id, effective_on in session.execute(
            select(am.subscription_id, am.sequence, am.action, am.item_id, am.quantity, am.price_id,
                   am.effective_on).where(am.effective_on <= through)):
        key = (sid, item_id or "")
        if action == "add_item" and price_id in included and quantity is not None:
            per_unit[key] = included[price_id]
            changes[key].append((effective_on, sequence, _decimal(quantity)))
        elif action == "change_quantity" and key in per_unit and quantity is not None:
            changes[key].append((effective_on, sequence, _decimal(quantity)))
        elif action == "remove_item" and key in per_unit:
            changes[key].append((effective_on, sequence, None))
    out: dict[str, list[AllowancePeriod]] = defaultdict(list)
    for key, dated in changes.items():
        cid, _, ends = subscriptions[key[0]]
        dated.sort(key=lambda change: (change[0], change[1]))
        for n, (starts_on, _, quantity) in enumerate(dated):
            ends_before = dated[n + 1][0] if n + 1 < len(dated) else ends
            if ends is not None and (ends_before is None or ends < ends_before):
                ends_before = ends
            if quantity is not None and (ends_before is None or starts_on < ends_before):
                out[cid].append(AllowancePeriod(starts_on, ends_before, per_unit[key] * max(Decimal(1), quantity)))
    return out


def _contractions(session: Session, sub_customer: dict[str, str], events: dict[str, dict[str, list[date]]],
                  through: date) -> None:
    """A quantity lowered or an item removed by an amendment, dated by its effect."""
    quantities: dict[tuple[str, str], Decimal] = {}
    it = SubscriptionItemRow
    for sid, item_id, quantity in session.execute(select(it.subscription_id, it.item_id, it.quantity)):
        quantities[(sid, item_id)] = Decimal(quantity)
    am = AmendmentRow
    rows = session.execute(select(am.subscription_id, am.action, am.item_id, am.quantity, am.effective_on)
                           .where(am.effective_on <= through).order_by(am.subscription_id, am.sequence)).all()
    # An item removed and another added on the same day is a switch of plan, not a removal (the MRR
    # trend shows whether it was a cheaper plan).
    switched = {(sid, effective_on) for sid, action, _, _, effective_on in rows if action == "add_item"}
    for sid, action, item_id, quantity, effective_on in rows:
        cid = sub_customer.get(sid)
        key = (sid, item_id or "")
        if action == "remove_item":
            if cid is not None and (sid, effective_on) not in switched:
                events[cid]["contraction"].append(effective_on)
            quantities.pop(key, None)
        elif action in ("change_quantity", "add_item") and quantity is not None:
            new = Decimal(quantity)
            old = quantities.get(key)
            if action == "change_quantity" and old is not None and new < old and cid is not None:
                events[cid]["contraction"].append(effective_on)
            quantities[key] = new
