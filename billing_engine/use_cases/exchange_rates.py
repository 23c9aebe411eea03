"""Exchange rates for the reporting currency: set one rate, import an ECB reference-rates file,
list the stored rates, and the rates a set of months uses (docs/reporting.md §2 Exchange rates
and conversion). Rates are stored with base EUR (``1 EUR = rate currency``), one per day and
currency: setting a rate again for the same day and currency replaces it (idempotent)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from billing_engine.errors import InvalidInputError
from billing_engine.exchange_rates import (
    BASE_CURRENCY,
    ExchangeRate,
    RateFileProblem,
    RateSet,
    check_quote_currency,
    check_rate,
    check_source,
    month_bounds,
    parse_ecb_csv,
)
from billing_engine.storage import exchange_rates as rate_store
from billing_engine.storage.database import Session

#: Longest page ``list_rates`` returns.
MAX_PAGE = 1000
#: Longest "entered by" text.
MAX_ENTERED_BY = 200


@dataclass(frozen=True)
class RateChange:
    rate: ExchangeRate
    before: ExchangeRate | None  # the rate it replaced (None: new)

    @property
    def changed(self) -> bool:
        return self.before is None or (self.before.rate, self.before.source) != (self.rate.rate, self.rate.source)


class RateFileError(InvalidInputError):
    """A rates file with bad lines: nothing was written."""

    def __init__(self, problems: Sequence[RateFileProblem]):
        self.problems = tuple(problems)
        super().__init__("file", "\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class RateImport:
    rates: int  # rates written (new or replaced)
    days: int
    first_on: date | None
    last_on: date | None
    currencies: tuple[str, ...]


def _entered_by(value: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_ENTERED_BY:
        raise InvalidInputError("entered_by", f"must be a text of at most {MAX_ENTERED_BY} characters")
    return value


def set_rate(session: Session, on: date, currency: str, rate: object, *, entered_by: str, now: datetime,
             source: str = "manual") -> RateChange:
    """Store ``1 EUR = rate currency`` on ``on`` (replacing that day's rate of the currency)."""
    if not isinstance(on, date):
        raise InvalidInputError("date", "must be a date")
    quote = check_quote_currency(currency)
    value = check_rate(rate)
    row = rate_store.find_rate(session, on, BASE_CURRENCY, quote)
    before = None if row is None else ExchangeRate(row.rate_on, row.base, row.quote, row.rate, row.source,
                                                   row.entered_by)
    new = ExchangeRate(on, BASE_CURRENCY, quote, value, check_source(source), _entered_by(entered_by))
    change = RateChange(new, before)
    if change.changed:
        rate_store.save_rates(session, [new], entered_at=now)
    else:
        change = RateChange(before, before)
    return change


def import_ecb_rates(session: Session, text: str, *, entered_by: str, now: datetime) -> RateImport:
    """Store every rate of an ECB reference-rates CSV (``eurofxref.csv``, ``eurofxref-hist.csv``).
    Raises ``RateFileError`` with one problem per bad line, having written nothing."""
    rates, problems = parse_ecb_csv(text)
    if problems:
        raise RateFileError(problems)
    who = _entered_by(entered_by)
    rates = [ExchangeRate(r.on, r.base, r.quote, r.rate, r.source, who) for r in rates]
    rate_store.save_rates(session, rates, entered_at=now)
    days = sorted({r.on for r in rates})
    return RateImport(len(rates), len(days), days[0] if days else None, days[-1] if days else None,
                      tuple(sorted({r.quote for r in rates})))


def list_rates(session: Session, *, limit: int, after: tuple[date, str] | None = None,
               currency: str | None = None, first: date | None = None, last: date | None = None) -> list[ExchangeRate]:
    """Stored rates by date then currency, after ``after`` (keyset pages)."""
    if not 1 <= limit <= MAX_PAGE + 1:
        raise InvalidInputError("limit", f"{limit} is not between 1 and {MAX_PAGE}")
    if currency is not None:
        check_quote_currency(currency)
    if first is not None and last is not None and last < first:
        raise InvalidInputError("to", f"{last} is before {first}")
    return rate_store.rates_page(session, limit=limit, after=after, quote=currency, first=first, last=last)


def month_rate_sets(session: Session, months: Sequence[tuple[int, int]],
                    currencies: Iterable[str]) -> list[RateSet]:
    """Per month, the rate of each currency a figure for that month uses: the latest rate dated in
    the month on or before its last day (a currency without one is absent from the set)."""
    if not months:
        return []
    wanted = {c for c in currencies if c != BASE_CURRENCY}
    first = min(month_bounds(*m)[0] for m in months)
    last = max(month_bounds(*m)[1] for m in months)
    latest: dict[tuple[int, int, str], ExchangeRate] = {}
    by_month: dict[tuple[int, int], dict[str, ExchangeRate]] = defaultdict(dict)
    if wanted:
        for rate in rate_store.rates_between(session, first, last, BASE_CURRENCY, sorted(wanted)):
            latest[(rate.on.year, rate.on.month, rate.quote)] = rate  # rows come by date: the last wins
    for (year, month, quote), rate in latest.items():
        by_month[(year, month)][quote] = rate
    return [RateSet(dict(by_month.get(m, {}))) for m in months]
