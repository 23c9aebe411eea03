"""The SQL plumbing the subject modules share: the session type, the database errors, and
dialect-aware bulk statements.

On PostgreSQL large batches go through ``COPY ... FROM STDIN`` and one-statement
``INSERT ... SELECT FROM unnest(...) ON CONFLICT`` upserts, and ``IN`` lists become one
``= ANY(:array)`` parameter; elsewhere the same calls fall back to ``executemany`` and
portable ``ON CONFLICT`` statements. Use cases import ``Session`` and the errors from
here, so only ``billing_engine.storage`` imports SQLModel/SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import any_, bindparam, func, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlmodel import Session, SQLModel

__all__ = ["COPY_THRESHOLD", "IntegrityError", "OperationalError", "SQLAlchemyError", "Session", "bulk_insert",
           "copy_rows", "count_rows", "dialect_insert", "insert_returning_id", "is_postgresql", "one_of",
           "upsert_arrays"]

#: Rows; below it an executemany is as quick as ``COPY``.
COPY_THRESHOLD = 50


def is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def one_of(session: Session, column: Any, values: Sequence[Any]) -> Any:
    """``column IN values``; on PostgreSQL ``column = ANY(:array)``: one parameter, so the
    statement text stays the same whatever the number of values (no re-parsing per batch)."""
    if is_postgresql(session):
        return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))
    return column.in_(list(values))


def copy_rows(session: Session, table: Any, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """PostgreSQL ``COPY ... FROM STDIN`` of ``rows`` (the same keys each) into ``table``.

    Bypasses the column types, so it refuses floats itself (money stays Decimal). A database
    error comes out as SQLAlchemy's (``IntegrityError`` for a duplicate key, …), as it would from
    the executemany path, so callers handle one family of errors whatever the batch size."""
    import psycopg

    names = ", ".join(f'"{c}"' for c in columns)
    statement = f'COPY "{table.name}" ({names}) FROM STDIN'
    cursor = session.connection().connection.cursor()
    try:
        with cursor.copy(statement) as copy:
            for row in rows:
                values = [row[c] for c in columns]
                for value in values:
                    if value.__class__ is float:
                        raise TypeError(f"refusing to store float {value!r} in {table.name}; use Decimal")
                copy.write_row(values)
    except psycopg.Error as exc:
        raise DBAPIError.instance(statement, None, exc, psycopg.Error) from exc
    finally:
        cursor.close()


def upsert_arrays(session: Session, table: Any, rows: Sequence[dict[str, Any]], conflict: Sequence[str],
                  updates: Sequence[str], conflict_where: str | None = None) -> bool:
    """PostgreSQL, ``COPY_THRESHOLD`` rows or more (the same keys each): ``INSERT ... SELECT FROM
    unnest(one array per column) ON CONFLICT DO UPDATE`` in one statement, instead of a statement
    per row. False (nothing done) otherwise: the caller then runs its portable upsert.

    Arrays bypass the column types, so floats are refused here (money stays Decimal)."""
    if len(rows) < COPY_THRESHOLD or not is_postgresql(session):
        return False
    columns = list(rows[0])
    if any(row.keys() != rows[0].keys() for row in rows):
        return False
    dialect = session.get_bind().dialect
    arrays, params = [], {}
    for n, name in enumerate(columns):
        values = [row[name] for row in rows]
        for value in values:
            if value.__class__ is float:
                raise TypeError(f"refusing to store float {value!r} in {table.name}; use Decimal")
        # Without a length or scale (an explicit cast would truncate): the column checks them on insert.
        sql_type = table.c[name].type.dialect_impl(dialect).compile(dialect=dialect).split("(")[0]
        arrays.append(f"CAST(:a{n} AS {sql_type}[])")
        params[f"a{n}"] = values
    names = ", ".join(f'"{c}"' for c in columns)
    where = f" WHERE {conflict_where}" if conflict_where else ""
    sets = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in updates)
    # Names and types come from the table's metadata, values travel as parameters.
    sql = (f'INSERT INTO "{table.name}" ({names}) SELECT * FROM unnest({", ".join(arrays)}) '  # noqa: S608
           f'ON CONFLICT ({", ".join(conflict)}){where} DO UPDATE SET {sets}')
    session.execute(text(sql), params)
    return True


def dialect_insert(session: Session, table: Any) -> Any:
    return (postgresql.insert if is_postgresql(session) else sqlite.insert)(table)


def _table(model: type[SQLModel]) -> Any:
    return model.__table__  # type: ignore[attr-defined]  # set on every table class


def bulk_insert(session: Session, model: type[SQLModel], rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows (the same keys each): ``COPY`` on PostgreSQL for large batches, else executemany."""
    if not rows:
        return
    if len(rows) >= COPY_THRESHOLD and is_postgresql(session):
        copy_rows(session, _table(model), rows, list(rows[0]))
        return
    session.execute(insert(_table(model)), list(rows))


def insert_returning_id(session: Session, model: type[SQLModel], values: dict[str, Any]) -> int:
    table = _table(model)
    return session.execute(insert(table).values(**values).returning(table.c.id)).scalar_one()


def count_rows(session: Session, model: type[SQLModel]) -> int:
    return session.execute(select(func.count()).select_from(_table(model))).scalar_one()
