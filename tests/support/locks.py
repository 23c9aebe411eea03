"""Hold database locks from another connection, the way a stuck transaction would."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import text

from connector.database import is_postgresql, make_engine


@contextmanager
def locked(database_url: str, tables: Sequence[str], *, release_after: float) -> Iterator[None]:
    """While inside, another connection holds SQLite's write lock, or on PostgreSQL an
    ``ACCESS EXCLUSIVE`` lock on ``tables``; released on leaving, or after
    ``release_after`` seconds at the latest, so that code which waits for the lock
    instead of giving up cannot hang the test (it finishes late and fails instead)."""
    engine = make_engine(database_url)
    ready, release = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    def hold() -> None:
        try:
            with engine.connect() as connection:
                if is_postgresql(engine):
                    connection.execute(text(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE"))
                else:
                    connection.execute(text("SELECT 1"))  # BEGIN IMMEDIATE: the write lock
                ready.set()
                release.wait(release_after)
                connection.rollback()
        except BaseException as exc:  # surfaced to the test below
            failure.append(exc)
            ready.set()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    ready.wait(30)
    if failure:
        raise failure[0]
    try:
        yield
    finally:
        release.set()
        holder.join(30)
        engine.dispose()
