"""``/api/v1/subscriptions``: the subscriptions (list, one with its items, amendments and MRR)
and a subscription's timeline."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from pydantic import BaseModel, Field

from billing_engine.subscriptions import Amendment, Subscription
from billing_engine.use_cases import subscriptions
from connector.api.framework import ApiBlueprint, business_date, reading, respond
from connector.api.money import Money, amount_text
from connector.api.pagination import Page, PageQuery, decode_cursor, page
from connector.api.values import Absent, IsoDate

blueprint = ApiBlueprint("subscriptions", __name__, tag="Subscriptions",
                         description="Subscriptions with their items, amendments, MRR and timeline.")

ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"


class SubscriptionPath(BaseModel):
    subscription_id: str = Field(pattern=ID_PATTERN, description="The subscription's id.")


#: The dates a query may ask about (a term or a renewal must still fit in the calendar).
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(2999, 12, 31)


class OnQuery(BaseModel):
    on: IsoDate | Absent = Field(None, ge=FIRST_DAY, le=LAST_DAY,
                              description="The date the status, items and MRR are read on (default: today in "
                                          "BILLSYNC_TIMEZONE), 1900-01-01 to 2999-12-31.")


class SubscriptionQuery(PageQuery):
    customer_id: str | Absent = Field(None, pattern=ID_PATTERN, description="Only this customer's.")
    status: str | Absent = Field(None, pattern="^(pending|active|cancelled|ended)$",
                                 description="Only those with this status on `on`: pending (starts later), active, "
                                             "cancelled (a cancellation is recorded, not yet effective), ended.")
    on: IsoDate | Absent = Field(None, ge=FIRST_DAY, le=LAST_DAY,
                              description="The date statuses and MRR are read on (default: today).")


class SubscriptionSummary(BaseModel):
    id: str
    customer_id: str
    currency: str
    status: str = Field(description="pending, active, cancelled or ended, on `as_of`.")
    starts_on: date
    ends_before: date | None = Field(description="The first day not covered; null while it continues.")
    interval: str = Field(description="Billing interval: month, quarter, year.")
    term_months: int | None = Field(description="Term length; null for evergreen.")
    auto_renew: bool
    external_key: str | None = Field(description="The Salesforce Opportunity it was started from.")
    mrr: Money
    arr: Money
    as_of: date


class ItemOut(BaseModel):
    item_id: str
    product_code: str
    product_name: str
    price_id: str
    pricing_model: str
    quantity: str = Field(pattern=DECIMAL_PATTERN, description="Decimal string.")
    contract_unit_price: Money | None
    discount_percent: str | None = Field(pattern=DECIMAL_PATTERN)
    discount_amount: Money | None
    monthly_amount: Money | None = Field(description="The item's MRR in this version; null if not recurring.")


class AmendmentOut(BaseModel):
    amendment_id: str
    sequence: int
    action: str = Field(description="change_quantity, add_item, remove_item, change_price, cancel, renew.")
    effective_on: date
    item_id: str | None
    quantity: str | None = Field(pattern=DECIMAL_PATTERN)
    unit_price: Money | None
    immediate: bool
    reason: str


class SubscriptionDetail(SubscriptionSummary):
    billing_anchor_on: date
    bills_from: date | None
    renewal_uplift_percent: str = Field(pattern=DECIMAL_PATTERN)
    minimum_amount: Money | None
    attributes: dict[str, str] = Field(description="Its custom attributes (an admin's fields of the deal, such as "
                                                   "a cost centre), copied onto each invoice assembled from it.")
    items: list[ItemOut] = Field(description="The items in force on `as_of` (before the start: the first ones; "
                                             "after the end: the last ones).")
    amendments: list[AmendmentOut] = Field(description="Every recorded change, in recording order.")


class SubscriptionPage(Page[SubscriptionSummary]):
    pass


class TimelineEventOut(BaseModel):
    on: date
    kind: str = Field(description="started, renewed, amended, cancelled, ended, mrr_changed, invoice_issued.")
    description: str
    amendment_id: str | None
    invoice_id: int | None
    invoice_number: str | None
    invoice_status: str | None
    amount: Money | None = Field(description="invoice_issued: the invoice's total; mrr_changed: the new MRR.")
    before: Money | None = Field(description="mrr_changed: the MRR before.")


class Timeline(BaseModel):
    subscription_id: str
    events: list[TimelineEventOut]


def _money(value: Decimal | None, currency: str) -> Money | None:
    return None if value is None else Money.of(value, currency)


def _decimal(value: Decimal | None) -> str | None:
    return None if value is None else amount_text(value)


def _summary_fields(overview: subscriptions.SubscriptionOverview) -> dict:
    sub = overview.subscription
    return dict(id=sub.subscription_id, customer_id=sub.customer_id, currency=sub.currency,
                status=overview.status.value, starts_on=sub.starts_on, ends_before=sub.ends_before,
                interval=sub.interval.value, term_months=sub.term_months, auto_renew=sub.auto_renew,
                external_key=sub.external_key, mrr=Money.of(overview.mrr, sub.currency),
                arr=Money.of(overview.arr, sub.currency), as_of=overview.on)


def _amendment(amendment: Amendment, currency: str) -> AmendmentOut:
    item = amendment.item
    return AmendmentOut(
        amendment_id=amendment.amendment_id, sequence=amendment.sequence, action=amendment.action.value,
        effective_on=amendment.effective_on, item_id=item.item_id if item else amendment.item_id,
        quantity=_decimal(item.quantity if item else amendment.quantity),
        unit_price=_money(item.contract_unit_price if item else amendment.unit_price, currency),
        immediate=amendment.immediate, reason=amendment.reason)


def _detail(overview: subscriptions.SubscriptionOverview) -> SubscriptionDetail:
    sub: Subscription = overview.subscription
    items = [ItemOut(item_id=i.item.item_id, product_code=i.item.price.product.code,
                     product_name=i.item.price.product.name, price_id=i.item.price.price_id,
                     pricing_model=i.item.price.terms.model, quantity=amount_text(i.item.quantity),
                     contract_unit_price=_money(i.item.contract_unit_price, sub.currency),
                     discount_percent=_decimal(i.item.discount_percent),
                     discount_amount=_money(i.item.discount_amount, sub.currency),
                     monthly_amount=_money(i.monthly_amount, sub.currency)) for i in overview.items]
    return SubscriptionDetail(
        **_summary_fields(overview), billing_anchor_on=sub.billing_anchor_on, bills_from=sub.bills_from,
        renewal_uplift_percent=amount_text(sub.renewal_uplift_percent),
        minimum_amount=_money(sub.minimum_amount, sub.currency), attributes=dict(sub.attributes), items=items,
        amendments=[_amendment(a, sub.currency) for a in sorted(sub.amendments, key=lambda a: a.sequence)])


@blueprint.get("/subscriptions", scope="read", responses={200: SubscriptionPage})
def list_subscriptions(query: SubscriptionQuery):
    """Subscriptions by id, filtered by customer and status, with their MRR."""
    after = decode_cursor(query.cursor, "subscriptions", (str,))
    on = query.on or business_date()
    with reading() as session:
        rows = subscriptions.list_subscriptions(session, on=on, limit=query.limit + 1,
                                                after=after[0] if after else None, customer_id=query.customer_id,
                                                status=query.status)
    result = page(rows, query, "subscriptions", key=lambda s: [s.subscription_id],
                  item=lambda s: SubscriptionSummary(**_summary_fields(subscriptions.subscription_overview(s, on))))
    return respond(SubscriptionPage(**result))


@blueprint.get("/subscriptions/<subscription_id>", scope="read", responses={200: SubscriptionDetail})
def get_subscription(path: SubscriptionPath, query: OnQuery):
    """One subscription: its items, every amendment, its MRR and ARR."""
    with reading() as session:
        overview = subscriptions.get_subscription_overview(session, path.subscription_id,
                                                           query.on or business_date())
    return respond(_detail(overview))


@blueprint.get("/subscriptions/<subscription_id>/timeline", scope="read", responses={200: Timeline})
def get_subscription_timeline(path: SubscriptionPath, query: OnQuery):
    """The subscription's life in date order: start, renewals, amendments, cancellation, end, MRR
    changes and invoices issued, up to `on` (default today) and the changes recorded for later dates."""
    with reading() as session:
        sub = subscriptions.get_subscription(session, path.subscription_id)
        events = subscriptions.subscription_timeline(session, path.subscription_id, on=query.on or business_date())
    currency = sub.currency
    return respond(Timeline(subscription_id=path.subscription_id, events=[TimelineEventOut(
        on=e.on, kind=e.kind, description=e.description, amendment_id=e.amendment_id, invoice_id=e.invoice_id,
        invoice_number=e.invoice_number, invoice_status=e.invoice_status, amount=_money(e.amount, currency),
        before=_money(e.before, currency)) for e in events]))
