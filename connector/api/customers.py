"""``/api/v1/customers``: customers with their balances, credit and receivables aging per
currency, and a customer's statement (a ledger with a running balance).

Thin calls of ``billing_engine.use_cases.accounts``. Balances and aging are read on ``on``
(default today in BILLSYNC_TIMEZONE): docs/billing-rules.md §16 Payments and refunds.
"""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field

from billing_engine.errors import InvalidInputError
from billing_engine.use_cases import accounts
from connector.api.framework import ApiBlueprint, business_date, reading, respond
from connector.api.invoices import (
    CUSTOMER_ID_PATTERN,
    DECIMAL_PATTERN,
    FIRST_DAY,
    LAST_DAY,
    money,
    on_query_field,
)
from connector.api.money import Money, amount_text
from connector.api.pagination import Page, PageQuery, decode_cursor, encode_cursor, next_url
from connector.api.problems import invalid
from connector.api.values import Absent, IsoDate

blueprint = ApiBlueprint("customers", __name__, tag="Customers",
                         description="Customers with their balance, credit and aging; a customer's statement.")

LISTING = "customers"


class CustomerQuery(PageQuery):
    on: IsoDate | Absent = on_query_field("balances and aging are read on")


class CustomerPath(BaseModel):
    customer_id: str = Field(pattern=CUSTOMER_ID_PATTERN, description="The customer's id.")


class CustomerOnQuery(BaseModel):
    on: IsoDate | Absent = on_query_field("balances and aging are read on")


class StatementQuery(BaseModel):
    from_: IsoDate = Field(alias="from", ge=FIRST_DAY, le=LAST_DAY, description="The statement's first day.")
    to: IsoDate | Absent = Field(None, ge=FIRST_DAY, le=LAST_DAY,
                                 description="Its last day, included (default: today in BILLSYNC_TIMEZONE).")


class AgingOut(BaseModel):
    """Open balances by days past due (the due date itself counts as 0 days)."""

    current: Money = Field(description="Not yet due.")
    days_0_30: Money
    days_31_60: Money
    days_61_90: Money
    days_over_90: Money


#: The engine's aging buckets (billing_engine.payments.AGING_BUCKETS) → the fields above.
_BUCKETS = {"current": "current", "0-30": "days_0_30", "31-60": "days_31_60", "61-90": "days_61_90",
            "90+": "days_over_90"}


class BalanceOut(BaseModel):
    currency: str
    balance_due: Money = Field(description="Σ balances of its open and uncollectible invoices.")
    credit: Money = Field(description="Unused credit, applied to its next invoices.")
    net: Money = Field(description="balance_due − credit; negative when the credit is larger.")
    open_invoices: int
    overdue_invoices: int
    aging: AgingOut


class CustomerSummaryOut(BaseModel):
    id: str
    name: str
    currency: str
    salesforce_account_id: str | None
    balances: list[BalanceOut] = Field(description="The currencies with a balance or credit.")


class CustomerPageOut(Page[CustomerSummaryOut]):
    pass


class CustomerOut(BaseModel):
    id: str
    name: str
    currency: str
    timezone: str
    payment_terms_days: int
    tax_rate_percent: str | None = Field(pattern=DECIMAL_PATTERN)
    tax_exempt_reason: str | None
    vat_id: str | None
    salesforce_account_id: str | None
    as_of: date
    balances: list[BalanceOut] = Field(description="Every currency it was invoiced or credited in.")


class StatementEntryOut(BaseModel):
    on: date
    kind: str = Field(description="invoice, credit_note, payment or refund.")
    id: int = Field(description="The invoice's, credit note's, payment's or refund's id.")
    reference: str = Field(description="Invoice or credit note number, payment reference.")
    description: str
    amount: Money = Field(description="Positive: owed more (invoice, refund); negative: owed less.")
    balance: Money = Field(description="The running balance after this entry.")


class CurrencyStatementOut(BaseModel):
    currency: str
    opening: Money = Field(description="The balance before the first day.")
    invoiced: Money
    credited: Money
    paid: Money
    refunded: Money
    closing: Money = Field(description="opening + invoiced − credited − paid + refunded: what is owed net of "
                                       "credit at the end of the last day.")
    entries: list[StatementEntryOut]


class StatementOut(BaseModel):
    customer_id: str
    customer_name: str
    starts_on: date
    through: date
    currencies: list[CurrencyStatementOut]


def _balance(b: accounts.CurrencyBalance) -> BalanceOut:
    return BalanceOut(currency=b.currency, balance_due=money(b.balance_due), credit=money(b.credit),
                      net=money(b.net), open_invoices=b.open_invoices, overdue_invoices=b.overdue_invoices,
                      aging=AgingOut(**{_BUCKETS[name]: money(value) for name, value in b.aging.items()}))


def customer_summary_out(item: accounts.CustomerListItem) -> CustomerSummaryOut:
    return CustomerSummaryOut(id=item.customer_id, name=item.name, currency=item.currency,
                              salesforce_account_id=item.salesforce_account_id,
                              balances=[_balance(b) for b in item.balances])


@blueprint.get("/customers", scope="read", responses={200: CustomerPageOut})
def list_customers(query: CustomerQuery):
    """List customers.

    By id, with their balance due, credit and aging per currency."""
    after = decode_cursor(query.cursor, LISTING, (str,))
    with reading() as session:
        result = accounts.list_customers(session, as_of=query.on or business_date(),
                                         after=after[0] if after else None, limit=query.limit)
    following = next_url(query, encode_cursor(LISTING, [result.next])) if result.next else None
    return respond(CustomerPageOut(data=[customer_summary_out(c) for c in result.items], next=following))


@blueprint.get("/customers/<customer_id>", scope="read", responses={200: CustomerOut})
def get_customer(path: CustomerPath, query: CustomerOnQuery):
    """Get one customer.

    Per currency: the balance due, unused credit and receivables aging."""
    with reading() as session:
        c = accounts.get_customer(session, path.customer_id, as_of=query.on or business_date())
    return respond(CustomerOut(
        id=c.customer_id, name=c.name, currency=c.currency, timezone=c.timezone,
        payment_terms_days=c.payment_terms_days,
        tax_rate_percent=amount_text(c.tax_rate_percent) if c.tax_rate_percent is not None else None,
        tax_exempt_reason=c.tax_exempt_reason, vat_id=c.vat_id, salesforce_account_id=c.salesforce_account_id,
        as_of=c.as_of, balances=[_balance(b) for b in c.balances]))


@blueprint.get("/customers/<customer_id>/statement", scope="read", responses={200: StatementOut})
def get_customer_statement(path: CustomerPath, query: StatementQuery):
    """Get a customer's statement.

    From `from` to `to`, per currency: the opening balance, each invoice, credit note, payment
    and refund with the running balance, and the closing balance."""
    try:
        with reading() as session:
            s = accounts.customer_statement(session, path.customer_id, starts_on=query.from_,
                                            through=query.to or business_date())
    except InvalidInputError as exc:
        raise invalid([{"parameter": exc.field, "detail": exc.reason}]) from None
    return respond(StatementOut(
        customer_id=s.customer_id, customer_name=s.customer_name, starts_on=s.starts_on, through=s.through,
        currencies=[CurrencyStatementOut(
            currency=c.currency, opening=money(c.opening), invoiced=money(c.invoiced), credited=money(c.credited),
            paid=money(c.paid), refunded=money(c.refunded), closing=money(c.closing),
            entries=[StatementEntryOut(on=e.on, kind=e.kind, id=e.record_id, reference=e.reference,
                                       description=e.description, amount=money(e.amount), balance=money(e.balance))
                     for e in c.entries]) for c in s.currencies]))
