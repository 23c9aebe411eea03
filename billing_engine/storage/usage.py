"""Usage events: stored once per ``(source, idempotency_key)``, dated in the customer's timezone,
and summed per subscription, item and day for the bill run.

Two tables:

- ``usage_event_keys``: one row per event ever stored, UNIQUE ``(source, idempotency_key)``; its
  ``id`` is the event's id. It is what makes a resent event a no-op.
- ``usage_events``: the events themselves (subscription, item, quantity, moment, date). On
  PostgreSQL it is **partitioned by month** of ``occurred_on`` (declarative ``PARTITION BY
  RANGE``): one partition per month, ``usage_events_YYYY_MM``, plus ``usage_events_default``
  which catches a month that has no partition yet. A unique constraint on a partitioned table
  must include the partition key, so an event's identity cannot be enforced there: the key
  table is written first, in the same statement, with ``ON CONFLICT DO NOTHING RETURNING``,
  and only the events whose key was new are inserted. On SQLite it is a plain table.

Neither table has a foreign key to ``subscriptions``: the use case checks the subscription and
its item before storing (a foreign key would lock each subscription row per inserted event).

Partitions: ``ensure_partitions`` creates missing months on demand (in a short transaction of
its own; when it cannot, the events go to the default partition, nothing is lost);
``prepare_partitions`` creates months ahead and moves rows that landed in the default partition
into their month's partition (the clock runs it).
"""

from __future__ import annotations

import functools
import json
import threading
from collections import OrderedDict, namedtuple
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    String,
    UniqueConstraint,
    any_,
    bindparam,
    cast,
    exists,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import JSON
from sqlmodel import Field, Session, SQLModel

from billing_engine.catalog import Price
from billing_engine.storage.catalog import (
    CustomerRow,
    PriceRow,
    ProductRow,
    load_prices,
    price_from_row,
    product_from_row,
)
from billing_engine.storage.columns import money_field, timestamp_field, to_decimal_value
from billing_engine.storage.database import is_postgresql, one_of
from billing_engine.storage.subscriptions import (
    AmendmentRow,
    SubscriptionItemRow,
    SubscriptionRow,
    subscription_from_rows,
)
from billing_engine.subscriptions import Subscription

#: A 64-bit id (PostgreSQL ``BIGINT``); SQLite's ``INTEGER PRIMARY KEY`` is already 64-bit.
BIG_ID = BigInteger().with_variant(Integer(), "sqlite")

PARTITIONED_TABLE = "usage_events"
DEFAULT_PARTITION = "usage_events_default"


class UsageEventKey(SQLModel, table=True):
    """An event's identity: stored once per ``(source, idempotency_key)``."""

    __tablename__ = "usage_event_keys"
    __table_args__ = (UniqueConstraint("source", "idempotency_key", name="uq_usage_event_keys_source_key"),)
    id: int | None = Field(default=None, sa_column=Column(BIG_ID, primary_key=True, autoincrement=True))
    source: str = Field(max_length=200, nullable=False)
    idempotency_key: str = Field(max_length=200, nullable=False)


class UsageEventRow(SQLModel, table=True):
    """A usage event (partitioned by month of ``occurred_on`` on PostgreSQL)."""

    __tablename__ = "usage_events"
    __table_args__ = (
        Index("ix_usage_events_item_on", "subscription_id", "subscription_item_id", "occurred_on"),
        {"postgresql_partition_by": "RANGE (occurred_on)"},
    )
    event_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    occurred_on: date = Field(primary_key=True)  # in the customer's timezone; the partition key
    subscription_id: str = Field(max_length=64, nullable=False)
    subscription_item_id: str = Field(max_length=64, nullable=False)
    quantity: Decimal = money_field()
    occurred_at: datetime = timestamp_field()
    recorded_at: datetime = timestamp_field()


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to store: its key and what it counts."""

    idempotency_key: str
    subscription_id: str
    item_id: str
    quantity: Decimal
    occurred_at: datetime
    occurred_on: date


# ------------------------------------------------------------------ writing

# The batch's columns come as one JSON array each (``ROWS FROM`` pairs their elements by position):
# psycopg dumps a Python list as a PostgreSQL array element by element, several times slower than
# ``json.dumps`` of the same list. Quantities are decimal strings (exact), moments ISO 8601 with
# their offset, days ISO dates.
_INSERT_PG = text("""
WITH input AS (
    SELECT t.idempotency_key, t.subscription_id, t.subscription_item_id, CAST(t.quantity AS numeric) AS quantity,
           CAST(t.occurred_at AS timestamptz) AS occurred_at, CAST(t.occurred_on AS date) AS occurred_on
    FROM ROWS FROM (json_array_elements_text(CAST(:keys AS json)), json_array_elements_text(CAST(:subscriptions AS json)),
                    json_array_elements_text(CAST(:items AS json)), json_array_elements_text(CAST(:quantities AS json)),
                    json_array_elements_text(CAST(:moments AS json)), json_array_elements_text(CAST(:days AS json)))
        AS t(idempotency_key, subscription_id, subscription_item_id, quantity, occurred_at, occurred_on)
), new_keys AS (
    INSERT INTO usage_event_keys (source, idempotency_key)
    SELECT CAST(:source AS varchar), idempotency_key FROM input ORDER BY idempotency_key
    ON CONFLICT (source, idempotency_key) DO NOTHING
    RETURNING id, idempotency_key
), stored AS (
    INSERT INTO usage_events (event_id, occurred_on, subscription_id, subscription_item_id, quantity, occurred_at,
                              recorded_at)
    SELECT k.id, i.occurred_on, i.subscription_id, i.subscription_item_id, i.quantity, i.occurred_at,
           CAST(:recorded_at AS timestamptz)
    FROM new_keys k JOIN input i ON i.idempotency_key = k.idempotency_key
)
SELECT idempotency_key, id FROM new_keys
""")


def insert_events(session: Session, source: str, events: Sequence[NewEvent], recorded_at: datetime) -> dict[str, int]:
    """Store the events whose ``(source, key)`` is new; return ``{key: event id}`` of those stored.

    The keys must be distinct. PostgreSQL: one statement (the key rows, in key order so
    concurrent batches lock them in the same order, then the events of the new keys). SQLite:
    the keys with ``ON CONFLICT DO NOTHING RETURNING``, then the events.
    """
    if not events:
        return {}
    for event in events:
        if event.quantity.__class__ is not Decimal:
            raise TypeError(f"refusing to store {type(event.quantity).__name__} {event.quantity!r}; use Decimal")
    if is_postgresql(session):
        dumps = json.dumps
        rows = session.execute(_INSERT_PG, {
            "keys": dumps([e.idempotency_key for e in events]),
            "subscriptions": dumps([e.subscription_id for e in events]),
            "items": dumps([e.item_id for e in events]), "quantities": dumps([str(e.quantity) for e in events]),
            "moments": dumps([e.occurred_at.isoformat() for e in events]),
            "days": dumps([e.occurred_on.isoformat() for e in events]),
            "source": source, "recorded_at": recorded_at})
        return {key: event_id for key, event_id in rows}
    keys_t, events_t = UsageEventKey.__table__, UsageEventRow.__table__  # type: ignore[attr-defined]
    stored: dict[str, int] = {}
    ordered = sorted(events, key=lambda e: e.idempotency_key)
    for start in range(0, len(ordered), 500):
        chunk = ordered[start:start + 500]
        statement = (sqlite.insert(keys_t).values([{"source": source, "idempotency_key": e.idempotency_key}
                                                   for e in chunk])
                     .on_conflict_do_nothing(index_elements=["source", "idempotency_key"])
                     .returning(keys_t.c.idempotency_key, keys_t.c.id))
        stored.update({key: event_id for key, event_id in session.execute(statement)})
    if stored:
        session.execute(events_t.insert(), [
            {"event_id": stored[e.idempotency_key], "occurred_on": e.occurred_on, "subscription_id": e.subscription_id,
             "subscription_item_id": e.item_id, "quantity": e.quantity, "occurred_at": e.occurred_at,
             "recorded_at": recorded_at}
            for e in ordered if e.idempotency_key in stored])
    return stored


def find_event_id(session: Session, source: str, key: str) -> int | None:
    """The id of the event stored under ``(source, key)``, if any."""
    t = UsageEventKey.__table__  # type: ignore[attr-defined]
    return session.execute(select(t.c.id).where(t.c.source == source, t.c.idempotency_key == key)).scalar()


def count_events(session: Session) -> int:
    return session.execute(select(func.count()).select_from(UsageEventRow.__table__)).scalar_one()  # type: ignore[attr-defined]


# ------------------------------------------------------------------ what an event counts on


@dataclass(frozen=True)
class UsageSubjects:
    """What a batch of events may count on: the subscriptions it names by id, every subscription of
    the customers it names, and the timezone of each customer involved (absent: unknown)."""

    subscriptions: dict[str, Subscription]
    by_customer: dict[str, list[Subscription]]
    timezones: dict[str, str]
    #: Per subscription id (of ``subscriptions``), a dict in which callers may keep what they derive
    #: from the subscription alone (``resolve_event``: the item per day and metric). It is kept
    #: with the mapped subscription, so batches share it while the subscription is unchanged.
    memos: dict[str, dict[Any, Any]] = field(default_factory=dict)


def _view(row: Any, prefix: str) -> SimpleNamespace:
    return SimpleNamespace(**{k[len(prefix):]: v for k, v in row._asdict().items() if k.startswith(prefix)})


def _fingerprint_sql(subscription: str) -> str:
    """PostgreSQL: the MD5 of the text of everything a subscription without amendments is mapped
    from (``subscription_from_rows``): its row, and each item's row with its price's and product's
    rows, in item order. Any change to one of these rows changes it (a row's text quotes every
    value that could be read as a separator, so different contents never give the same text)."""
    return (f"md5(concat_ws('|', CAST({subscription}.* AS text), (SELECT string_agg(concat_ws(';', "  # noqa: S608
            "CAST(fi.* AS text), CAST(fp.* AS text), CAST(fr.* AS text)), ',' ORDER BY fi.position, fi.id) "
            "FROM subscription_items fi JOIN prices fp ON fp.id = fi.price_id JOIN products fr ON fr.id = fp.product_id "
            f"WHERE fi.subscription_id = {subscription}.id)))")


@functools.cache
def _subject_queries(postgresql: bool) -> SimpleNamespace:
    """The statements of ``usage_subjects``, built once per dialect (a batch runs them many times a
    second): each takes its ids as the parameter ``ids``."""
    subs_t, items_t, amend_t = SubscriptionRow.__table__, SubscriptionItemRow.__table__, AmendmentRow.__table__  # type: ignore[attr-defined]
    customers_t = CustomerRow.__table__  # type: ignore[attr-defined]
    prices_t, products_t = PriceRow.__table__, ProductRow.__table__  # type: ignore[attr-defined]

    def among(column: Any) -> Any:
        if postgresql:  # the ids as one JSON array (``_fetch_plain``), read into a PostgreSQL array
            ids = select(func.json_array_elements_text(cast(bindparam("ids", type_=String), JSON))).scalar_subquery()
            return column == any_(func.array(ids))
        return column.in_(bindparam("ids", expanding=True))

    amended = exists().where(amend_t.c.subscription_id == subs_t.c.id).label("amended")
    # The customer's timezone as a lookup per subscription row (its primary key): a join would let
    # PostgreSQL hash the whole customers table for a batch's hundred subscriptions.
    timezone = (select(customers_t.c.timezone).where(customers_t.c.id == subs_t.c.customer_id)
                .scalar_subquery().label("customer_timezone"))
    # PostgreSQL: each subscription's fingerprint (``_fingerprint_sql``), next to its row and next to
    # each of its item rows, so that what is cached was read in one state (``usage_subjects``).
    fingerprint: list[Any] = [literal_column(_fingerprint_sql("subscriptions")).label("fingerprint")] if postgresql else []
    item_fingerprint: list[Any] = [literal_column(
        f"(SELECT {_fingerprint_sql('fs')} FROM subscriptions fs WHERE fs.id = subscription_items.subscription_id)"  # noqa: S608
    ).label("fingerprint")] if postgresql else []
    return SimpleNamespace(
        marks=select(subs_t.c.id, subs_t.c.customer_id, timezone, amended, *fingerprint).where(among(subs_t.c.id)),
        by_id=select(subs_t, timezone, amended, *fingerprint).where(among(subs_t.c.id)),
        by_customer=select(customers_t.c.id.label("known_customer"),
                           customers_t.c.timezone.label("customer_timezone"), subs_t, amended)
        .select_from(customers_t.outerjoin(subs_t, subs_t.c.customer_id == customers_t.c.id))
        .where(among(customers_t.c.id)),
        items=select(items_t, *[c.label(f"p_{c.name}") for c in prices_t.c],
                     *[c.label(f"r_{c.name}") for c in products_t.c], *item_fingerprint)
        .join(prices_t, prices_t.c.id == items_t.c.price_id)
        .join(products_t, products_t.c.id == prices_t.c.product_id)
        .where(among(items_t.c.subscription_id)).order_by(items_t.c.subscription_id, items_t.c.position),
        amendments=select(amend_t).where(among(amend_t.c.subscription_id))
        .order_by(amend_t.c.subscription_id, amend_t.c.sequence),
    )


class _Mapped:
    """Domain values mapped from rows, kept by those rows (at most ``size``, least recently used
    dropped first), each with a serial number that identifies it for as long as it is kept.

    The mappings used here (``price_from_row``, ``subscription_from_rows``) are pure functions of
    their rows: the same rows always give the same value. The rows are still read for every
    batch; only mapping them again is skipped, which is most of a batch's lookup time. A changed
    row (a new price, a renamed product code) is another key, so nothing stale is ever used."""

    def __init__(self, size: int):
        self.size = size
        self._entries: OrderedDict[tuple[Any, ...], tuple[int, Any]] = OrderedDict()
        self._serial = 0
        self._lock = threading.Lock()

    def find(self, key: tuple[Any, ...]) -> Any | None:
        """The value kept for ``key``, if any."""
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            self._entries.move_to_end(key)
            return found[1]

    def get(self, key: tuple[Any, ...], build: Callable[[], Any]) -> tuple[int, Any]:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return found
        value = build()
        with self._lock:
            self._serial += 1
            entry = self._entries[key] = (self._serial, value)
            if len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return entry


#: Prices with their products (by their rows), and subscriptions without amendments (SQLite: by
#: their row, their items' own columns and the serial of each item's price; PostgreSQL: by their
#: id and fingerprint, ``_fingerprint_sql``, with their ``UsageSubjects.memos`` dict).
_PRICES = _Mapped(10000)
_SUBSCRIPTIONS = _Mapped(20000)


def _price_of(item_row: Any) -> Price:
    """The price (with its product) an items row carries in its ``p_``/``r_`` columns."""
    return price_from_row(_view(item_row, "p_"), product_from_row(_view(item_row, "r_")))


_ITEM_COLUMNS = len(SubscriptionItemRow.__table__.c)  # type: ignore[attr-defined]  # then the price's, the product's
_PRICE_COLUMNS = slice(_ITEM_COLUMNS, _ITEM_COLUMNS + len(PriceRow.__table__.c)  # type: ignore[attr-defined]
                       + len(ProductRow.__table__.c))  # type: ignore[attr-defined]


@functools.cache
def _plain_row(names: tuple[str, ...]) -> Any:
    return namedtuple("PlainRow", names)  # type: ignore[misc]  # noqa: PYI024 - built per statement's columns


def _fetch_plain(connection: Any, statement: Any, ids: list[str]) -> list[Any]:
    """PostgreSQL: a statement's rows straight from the driver, as named tuples (psycopg already
    gives ``Decimal``, ``date`` and ``bool``, which is all the column types would do here). The
    ids go as one JSON array: ``json.dumps`` is much cheaper than the driver's array dumping."""
    result = connection.execute(statement, {"ids": json.dumps(ids)})
    try:
        make = _plain_row(tuple(result.keys()))._make
        return [make(raw) for raw in result.cursor.fetchall()]
    finally:
        result.close()


def _same(value: Any) -> Any:
    return value


def usage_subjects(session: Session, subscription_ids: Sequence[str], customer_ids: Sequence[str]) -> UsageSubjects:
    """The subscriptions (whole histories, as ``subscriptions_of_customers`` maps them) of a batch
    of events, in few queries: the subscriptions with their customer's timezone (and whether
    they were amended), their items with prices and products, and the amendments of the amended
    ones only. At most 1,000 ids of each kind (a batch).

    PostgreSQL, subscriptions named by id: first each one's customer timezone, whether it was
    amended and its fingerprint (``_fingerprint_sql``, computed by the database from the rows as
    they are now); a subscription without amendments mapped before from rows with the same
    fingerprint is taken as it was mapped, the others are read in full. A mapped subscription is
    kept under its fingerprint only when its row and its items' rows, read by two statements,
    carry the same fingerprint (nothing changed between them)."""
    postgresql = is_postgresql(session)
    queries = _subject_queries(postgresql)
    connection = session.connection()

    def fetch(statement: Any, ids: list[str]) -> list[Any]:
        return _fetch_plain(connection, statement, ids) if postgresql else list(connection.execute(statement,
                                                                                                   {"ids": ids}))

    rows: list[Any] = []
    timezones: dict[str, str] = {}
    built: dict[str, Subscription] = {}
    memos: dict[str, dict[Any, Any]] = {}
    to_read = list(subscription_ids)
    if postgresql and to_read:
        to_read = []
        for mark in fetch(queries.marks, list(subscription_ids)):
            timezones[mark.customer_id] = mark.customer_timezone
            known = None if mark.amended else _SUBSCRIPTIONS.find((mark.id, mark.fingerprint))
            if known is None:
                to_read.append(mark.id)
            else:
                built[mark.id], memos[mark.id] = known
    if to_read:
        rows.extend(fetch(queries.by_id, to_read))
    if customer_ids:
        for row in fetch(queries.by_customer, list(customer_ids)):
            timezones[row.known_customer] = row.customer_timezone
            if row.id is not None:
                rows.append(row)
    for row in rows:
        timezones[row.customer_id] = row.customer_timezone
    sids = sorted({row.id for row in rows})
    items: dict[str, list[Any]] = {}
    amendments: dict[str, list[Any]] = {}
    prices: dict[str, Price] = {}
    serials: dict[str, int] = {}
    if sids:
        for row in fetch(queries.items, sids):
            items.setdefault(row.subscription_id, []).append(row)
            if row.price_id not in prices:
                serials[row.price_id], prices[row.price_id] = _PRICES.get(
                    tuple(row)[_PRICE_COLUMNS],
                    functools.partial(_price_of, row))
        changed = sorted({row.id for row in rows if row.amended})
        if changed:
            for row in fetch(queries.amendments, changed):
                amendments.setdefault(row.subscription_id, []).append(row)
            load_prices(session, {r.price_id for rs in amendments.values() for r in rs if r.price_id}, prices)
    for row in rows:
        if row.id in built:
            continue
        item_rows = items.get(row.id, ())
        if row.amended:
            built[row.id] = subscription_from_rows(row, item_rows, amendments[row.id], prices)
        elif postgresql:
            built[row.id] = subscription = subscription_from_rows(row, item_rows, (), prices)
            fingerprint = getattr(row, "fingerprint", None)
            if fingerprint is not None and item_rows and all(r.fingerprint == fingerprint for r in item_rows):
                built[row.id], memos[row.id] = _SUBSCRIPTIONS.get(
                    (row.id, fingerprint), functools.partial(_same, (subscription, {})))[1]
        else:
            key = (tuple(row), *((tuple(r)[:_ITEM_COLUMNS], serials[r.price_id]) for r in item_rows))
            built[row.id] = _SUBSCRIPTIONS.get(
                key, functools.partial(subscription_from_rows, row, item_rows, (), prices))[1]
    subscriptions = {sid: built[sid] for sid in subscription_ids if sid in built}
    by_customer: dict[str, list[Subscription]] = {}
    named = set(customer_ids)
    for sid in sorted(built):
        if built[sid].customer_id in named:
            by_customer.setdefault(built[sid].customer_id, []).append(built[sid])
    return UsageSubjects(subscriptions, by_customer, timezones,
                         {sid: memos[sid] if sid in memos else {} for sid in subscriptions})


# ------------------------------------------------------------------ reading for the bill run


def _grouped(session: Session, where: Any) -> list[tuple[str, str, date, Decimal]]:
    """``(subscription, item, day, Σ quantity)`` of the events matching ``where``, summed in SQL.

    PostgreSQL sums ``NUMERIC`` exactly. SQLite stores decimals as text and its ``SUM`` would go
    through a float, so there the day's quantities come back joined (``group_concat``) and are
    added as ``Decimal`` here: still one row per day, never a float."""
    t = UsageEventRow.__table__  # type: ignore[attr-defined]
    keys = (t.c.subscription_id, t.c.subscription_item_id, t.c.occurred_on)
    if is_postgresql(session):
        # Straight from the driver (a bill run reads a row per subscription, item and day): psycopg
        # gives ``date`` and exact ``Decimal`` for NUMERIC already.
        result = session.connection().execute(select(*keys, func.sum(t.c.quantity)).where(where).group_by(*keys))
        try:
            rows = result.cursor.fetchall()
        finally:
            result.close()
        return [(sid, item, on, to_decimal_value(total)) for sid, item, on, total in rows]
    raw = func.group_concat(t.c.quantity, " ", type_=String)
    query = select(*keys, raw).where(where).group_by(*keys)
    return [(sid, item, on, sum((Decimal(q) for q in joined.split(" ")), Decimal(0)))
            for sid, item, on, joined in session.execute(query)]


def usage_totals(session: Session, subscription_id: str, item_ids: Sequence[str], on_or_after: date,
                 before: date) -> list[tuple[str, date, Decimal]]:
    """``(item id, day, Σ quantity)`` of one subscription's events in ``[on_or_after, before)``."""
    t = UsageEventRow.__table__  # type: ignore[attr-defined]
    where = (t.c.subscription_id == subscription_id) & t.c.subscription_item_id.in_(list(item_ids)) \
        & (t.c.occurred_on >= on_or_after) & (t.c.occurred_on < before)
    return [(item, on, total) for _sid, item, on, total in _grouped(session, where)]


def usage_records_for_subscriptions(session: Session, subscription_ids: Sequence[str],
                                    before: date) -> dict[str, list[tuple[str, date, Decimal]]]:
    """Per subscription, ``(item id, day, Σ quantity)`` of its events before ``before``, one row per
    item and day (summed in the database): one query per 900 subscriptions."""
    t = UsageEventRow.__table__  # type: ignore[attr-defined]
    out: dict[str, list[tuple[str, date, Decimal]]] = {}
    ids = list(subscription_ids)
    for start in range(0, len(ids), 900):
        where = one_of(session, t.c.subscription_id, ids[start:start + 900]) & (t.c.occurred_on < before)
        for sid, item_id, on, total in _grouped(session, where):
            out.setdefault(sid, []).append((item_id, on, total))
    return out


# ------------------------------------------------------------------ monthly partitions (PostgreSQL)


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month(month: date) -> date:
    return date(month.year + (month.month == 12), month.month % 12 + 1, 1)


def partition_name(month: date) -> str:
    return f"{PARTITIONED_TABLE}_{month.year:04d}_{month.month:02d}"


def _month_of(name: str) -> date | None:
    try:
        year, month = name.removeprefix(PARTITIONED_TABLE + "_").split("_")
        return date(int(year), int(month), 1)
    except ValueError:
        return None


def partition_months(connection: Any) -> set[date]:
    """The months that have a partition (PostgreSQL)."""
    rows = connection.execute(text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = CAST(:parent AS regclass)"), {"parent": PARTITIONED_TABLE})
    return {month for (name,) in rows if (month := _month_of(name)) is not None}


def create_partition_sql(month: date) -> str:
    """``CREATE TABLE … PARTITION OF usage_events`` for ``month`` (also used by the migration)."""
    return (f'CREATE TABLE IF NOT EXISTS "{partition_name(month)}" PARTITION OF "{PARTITIONED_TABLE}" '
            f"FOR VALUES FROM ('{month.isoformat()}') TO ('{next_month(month).isoformat()}')")


_known: dict[str, set[date]] = {}
_known_lock = threading.Lock()


def _engine_key(session: Session) -> tuple[Any, str]:
    bind: Any = session.get_bind()
    engine = bind.engine  # an Engine's engine is itself; a Connection's, its engine
    return engine, str(engine.url)


def ensure_partitions(session: Session, months: Iterable[date]) -> None:
    """Make sure each of these months has its partition before events are inserted (PostgreSQL).

    The months this process knows to exist cost nothing. A missing one is created in a short
    transaction of its own (on a second connection, waiting at most 2 s for the table lock);
    if that fails, the events go to the default partition, which ``prepare_partitions`` empties
    later. Call it before the transaction writes any usage event."""
    if not is_postgresql(session):
        return
    engine, key = _engine_key(session)
    wanted = {month_start(m) for m in months}
    with _known_lock:
        known = _known.setdefault(key, set())
        missing = wanted - known
    if not missing:
        return
    with engine.connect() as conn:
        existing = partition_months(conn)
        conn.rollback()
        for month in sorted(missing - existing):
            try:
                with conn.begin():
                    conn.execute(text("SET LOCAL lock_timeout = '2s'"))
                    conn.execute(text(create_partition_sql(month)))
                existing.add(month)
            except Exception:  # noqa: BLE001, S112 - the default partition takes the events meanwhile
                continue
    with _known_lock:
        _known.setdefault(key, set()).update(existing)


@dataclass(frozen=True)
class PartitionReport:
    created: list[date]
    moved: int  # rows moved out of the default partition


def prepare_partitions(session: Session, through: date) -> PartitionReport:
    """Create every month's partition from the earliest month in the default partition (or the
    current one) through ``through``'s month, moving the default partition's rows of a month into
    its new partition (PostgreSQL; nothing to do on SQLite). Runs in the caller's transaction and
    takes the partitioned table's lock for the moves: run it from the clock, not from a request."""
    if not is_postgresql(session):
        return PartitionReport([], 0)
    conn = session.connection()
    existing = partition_months(conn)
    in_default = {month_start(d) for (d,) in conn.execute(text(
        f'SELECT DISTINCT occurred_on FROM "{DEFAULT_PARTITION}"'))}  # noqa: S608 - a constant
    months = set(in_default)
    month = month_start(min(in_default | {through}))
    while month <= month_start(through):
        months.add(month)
        month = next_month(month)
    created, moved = [], 0
    for month in sorted(months - existing):
        if month in in_default:
            moved += _move_out_of_default(conn, month)
        else:
            conn.execute(text(create_partition_sql(month)))
        created.append(month)
    with _known_lock:
        _known.pop(_engine_key(session)[1], None)
    return PartitionReport(created, moved)


def _move_out_of_default(conn: Any, month: date) -> int:
    """Create ``month``'s partition when the default partition holds rows of it: a table of its
    own, filled with those rows, then attached (a plain ``PARTITION OF`` would refuse)."""
    name, lo, hi = partition_name(month), month.isoformat(), next_month(month).isoformat()
    conn.execute(text(f'LOCK TABLE "{PARTITIONED_TABLE}" IN SHARE ROW EXCLUSIVE MODE'))
    conn.execute(text(f'CREATE TABLE "{name}" (LIKE "{PARTITIONED_TABLE}" INCLUDING DEFAULTS INCLUDING CONSTRAINTS)'))
    moved = conn.execute(text(
        f'WITH moved AS (DELETE FROM "{DEFAULT_PARTITION}" WHERE occurred_on >= :lo AND occurred_on < :hi '  # noqa: S608
        f'RETURNING *) INSERT INTO "{name}" SELECT * FROM moved'), {"lo": lo, "hi": hi}).rowcount
    conn.execute(text(f'ALTER TABLE "{PARTITIONED_TABLE}" ATTACH PARTITION "{name}" '
                      f"FOR VALUES FROM ('{lo}') TO ('{hi}')"))
    return moved
