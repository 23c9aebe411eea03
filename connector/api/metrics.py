"""``/api/v1/metrics``: the MRR/ARR bridge by month with its movements and totals per currency,
and the customers behind a month's movements (docs/billing-rules.md §17 Revenue metrics)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from billing_engine.revenue import BridgeRow, Movement
from billing_engine.use_cases import revenue
from connector.api.framework import ApiBlueprint, reading, respond
from connector.api.money import CURRENCY_PATTERN, Money
from connector.api.pagination import Page, PageQuery, decode_cursor, page
from connector.api.problems import invalid
from connector.api.values import Absent

blueprint = ApiBlueprint("metrics", __name__, tag="Metrics",
                         description="MRR and ARR: the monthly bridge, its totals, the customers behind it.")

MONTH_PATTERN = r"^(19|2[0-9])[0-9]{2}-(0[1-9]|1[0-2])$"


class BridgeQuery(BaseModel):
    from_month: str = Field(alias="from", pattern=MONTH_PATTERN, description="First month, YYYY-MM.")
    to_month: str = Field(alias="to", pattern=MONTH_PATTERN, description="Last month, YYYY-MM (at most 120 months).")
    currency: str | Absent = Field(None, pattern=CURRENCY_PATTERN, description="Only this currency.")


class BridgeRowOut(BaseModel):
    month: str = Field(description="YYYY-MM, or FROM..TO for totals.")
    currency: str
    opening: Money = Field(description="MRR at the end of the previous month.")
    new: Money
    expansion: Money
    reactivation: Money
    contraction: Money = Field(description="A positive amount, subtracted.")
    churn: Money = Field(description="A positive amount, subtracted.")
    closing: Money = Field(description="opening + new + expansion + reactivation - contraction - churn.")
    arr: Money = Field(description="ARR at the closing date.")
    customers: int = Field(description="Customers with MRR at the closing date.")


class Bridge(BaseModel):
    months: list[BridgeRowOut] = Field(description="One row per month and currency.")
    totals: list[BridgeRowOut] = Field(description="One row per currency over the whole range.")


class MovementPath(BaseModel):
    month: str = Field(pattern=MONTH_PATTERN, description="YYYY-MM.")


class MovementQuery(PageQuery):
    currency: str | Absent = Field(None, pattern=CURRENCY_PATTERN)
    kind: str | Absent = Field(None, pattern="^(new|expansion|reactivation|contraction|churn)$")


class MovementOut(BaseModel):
    customer_id: str
    currency: str
    kind: str = Field(description="new, expansion, reactivation, contraction or churn.")
    before: Money = Field(description="MRR at the end of the previous month.")
    after: Money = Field(description="MRR at the end of the month.")
    change: Money


class MovementPage(Page[MovementOut]):
    pass


def _row(row: BridgeRow) -> BridgeRowOut:
    def m(value):
        return Money.of(value, row.currency)

    return BridgeRowOut(month=row.period, currency=row.currency, opening=m(row.opening), new=m(row.new),
                        expansion=m(row.expansion), reactivation=m(row.reactivation),
                        contraction=m(row.contraction), churn=m(row.churn), closing=m(row.closing), arr=m(row.arr),
                        customers=row.customers)


def _movement(move: Movement) -> MovementOut:
    return MovementOut(customer_id=move.customer_id, currency=move.currency, kind=move.kind,
                       before=Money.of(move.before, move.currency), after=Money.of(move.after, move.currency),
                       change=Money.of(move.amount, move.currency))


@blueprint.get("/metrics/mrr", scope="read", responses={200: Bridge})
def get_mrr_bridge(query: BridgeQuery):
    """The MRR/ARR bridge per month and currency, with totals per currency."""
    if query.to_month < query.from_month:
        raise invalid([{"parameter": "to", "detail": "must not be before from"}])
    with reading() as session:
        rows = revenue.mrr_bridge_months(session, query.from_month, query.to_month, currency=query.currency)
    return respond(Bridge(months=[_row(r) for r in rows], totals=[_row(r) for r in revenue.bridge_totals(rows)]))


@blueprint.get("/metrics/mrr/<month>/movements", scope="read", responses={200: MovementPage})
def list_mrr_movements(path: MovementPath, query: MovementQuery):
    """The customers whose MRR moved in a month, by customer: kind, before, after."""
    after = decode_cursor(query.cursor, f"movements:{path.month}", (str, str))
    with reading() as session:
        moves = revenue.mrr_movements(session, path.month, limit=query.limit + 1,
                                      after=(after[0], after[1]) if after else None, currency=query.currency,
                                      kind=query.kind)
    return respond(MovementPage(**page(moves, query, f"movements:{path.month}",
                                       key=lambda m: [m.customer_id, m.currency], item=_movement)))
