"""``/api/v1/exchange-rates``: the rates the dashboard converts to the reporting currency with
(docs/reporting.md §2 Exchange rates and conversion): list them, set one day's rate of a currency.

Every rate is ``1 EUR = rate currency``. ``PUT /exchange-rates/{date}/{currency}`` is idempotent:
the same rate again changes nothing, another rate replaces that day's (both recorded in the audit
log with the rate before).
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from pydantic import BaseModel, ConfigDict, Field

from billing_engine.exchange_rates import ExchangeRate
from billing_engine.use_cases import exchange_rates
from connector.api.framework import ApiBlueprint, current_key, reading, record_audit, respond, write_session
from connector.api.money import CURRENCY_PATTERN
from connector.api.pagination import Page, PageQuery, decode_cursor, page
from connector.api.problems import invalid
from connector.api.values import Absent, IsoDate

blueprint = ApiBlueprint("exchange_rates", __name__, tag="Exchange rates",
                         description="Rates per 1 EUR by day, for figures in the reporting currency.")

RATE_PATTERN = r"^(0|[1-9][0-9]{0,11})(\.[0-9]{1,10})?$"


class RateQuery(PageQuery):
    currency: str | Absent = Field(None, pattern=CURRENCY_PATTERN, description="Only this currency.")
    from_on: IsoDate | Absent = Field(None, alias="from", description="First date, YYYY-MM-DD.")
    to_on: IsoDate | Absent = Field(None, alias="to", description="Last date, YYYY-MM-DD.")


class RatePath(BaseModel):
    on: IsoDate = Field(description="The rate's date, YYYY-MM-DD.")
    currency: str = Field(pattern=CURRENCY_PATTERN, description="The quoted currency (not EUR), e.g. USD.")


class RateIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"rate": "1.0834"}]})

    rate: str = Field(pattern=RATE_PATTERN, description="Units of the currency for 1 EUR, a decimal string.")
    source: str = Field("manual", pattern="^(manual|ecb)$", description="`manual` (default) or `ecb`.")


class RateOut(BaseModel):
    date: date
    base: str = Field(description="Always EUR.")
    currency: str
    rate: str = Field(description="Units of the currency for 1 EUR (decimal string).")
    source: str = Field(description="`manual` or `ecb`.")
    entered_by: str


class RatePage(Page[RateOut]):
    pass


def _rate(rate: ExchangeRate) -> RateOut:
    return RateOut(date=rate.on, base=rate.base, currency=rate.quote, rate=format(rate.rate, "f"),
                   source=rate.source, entered_by=rate.entered_by)


@blueprint.get("/exchange-rates", scope="read", responses={200: RatePage})
def list_exchange_rates(query: RateQuery):
    """Stored rates by date then currency."""
    if query.from_on is not None and query.to_on is not None and query.to_on < query.from_on:
        raise invalid([{"parameter": "to", "detail": "must not be before from"}])
    after = decode_cursor(query.cursor, "exchange-rates", (date, str))
    with reading() as session:
        rows = exchange_rates.list_rates(session, limit=query.limit + 1,
                                         after=(after[0], after[1]) if after else None, currency=query.currency,
                                         first=query.from_on, last=query.to_on)
    return respond(RatePage(**page(rows, query, "exchange-rates", key=lambda r: [r.on, r.quote], item=_rate)))


@blueprint.put("/exchange-rates/<on>/<currency>", scope="write", responses={200: RateOut, 201: RateOut})
def put_exchange_rate(path: RatePath, body: RateIn):
    """Set a day's rate of a currency (201 when new, 200 when replaced or unchanged)."""
    change = exchange_rates.set_rate(write_session(), path.on, path.currency, body.rate,
                                     entered_by=current_key().actor, now=datetime.now(UTC), source=body.source)
    after = _rate(change.rate)
    before = None if change.before is None else _rate(change.before).model_dump(mode="json")
    record_audit("exchange_rate.set", "exchange_rate", f"{path.on.isoformat()}/{path.currency}", before=before,
                 after=after.model_dump(mode="json"))
    return respond(after, 201 if change.before is None else 200)
