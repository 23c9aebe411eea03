"""The clock's leadership lock: one ``billsync clock`` runs the jobs, any other waits as a standby.

- **PostgreSQL**: a session-level advisory lock (``pg_try_advisory_lock``) held on a
  dedicated connection, outside the pool. The lock lives as long as that database
  session: a leader that exits, is killed or loses its connection releases it, and the
  server drops the session of a leader whose host vanished after its TCP keepalives
  (about 30 s, set on the session). The key is derived from the database and schema
  names, so two billsync deployments sharing a server (in two schemas) each have a leader.
- **SQLite**: an exclusive ``fcntl.flock`` on ``<database file>.clock.lock``, next to the
  database. The operating system releases it when the leader's process ends, however it
  ends; SQLite serves one host, so a file lock is enough.
- An in-memory SQLite database belongs to one process: that process always leads.

``try_acquire()`` never blocks; ``still_held()`` is how the leader checks, every
``CLOCK_LOCK_POLL_SECONDS``, that it has not lost the lock (on PostgreSQL: its session is
alive and holds the lock); ``release()`` gives it up.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.pool import NullPool

# Server-side keepalives of the lock's session (settable by any role): a leader whose host
# disappears without closing its connection loses the lock after about idle + interval * count.
_KEEPALIVE = {"tcp_keepalives_idle": 15, "tcp_keepalives_interval": 5, "tcp_keepalives_count": 3}


class ClockLock(Protocol):
    def try_acquire(self) -> bool: ...

    def still_held(self) -> bool: ...

    def release(self) -> None: ...

    def describe(self) -> str: ...


def clock_lock_for(engine: Engine) -> ClockLock:
    """The leadership lock for the clock of the database ``engine`` points at."""
    if engine.dialect.name == "postgresql":
        return PostgresClockLock(engine)
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        return FileClockLock(Path(f"{database}.clock.lock"))
    return ProcessClockLock()


def lock_key(database: str, schema: str) -> int:
    """The advisory lock's 64-bit signed key for a database and schema."""
    digest = hashlib.blake2b(f"billsync.clock:{database}.{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresClockLock:
    """``pg_try_advisory_lock`` on a connection of its own, kept while leading."""

    def __init__(self, engine: Engine):
        # NullPool: closing the connection ends the session (and so the lock); a pooled
        # connection would go back to the pool still holding it.
        self._engine = create_engine(engine.url, poolclass=NullPool, connect_args={"connect_timeout": 10})
        self._connection: Connection | None = None
        self.key: int | None = None
        self.backend_pid: int | None = None

    def describe(self) -> str:
        return "PostgreSQL advisory lock"

    def try_acquire(self) -> bool:
        if self._connection is None:
            connection = self._engine.connect()
            try:
                for name, value in _KEEPALIVE.items():
                    connection.exec_driver_sql(f"SET {name} = {int(value)}")
                row = connection.execute(text("SELECT current_database(), current_schema(), pg_backend_pid()")).one()
                connection.commit()
            except BaseException:
                connection.close()
                raise
            self._connection = connection
            self.key, self.backend_pid = lock_key(row[0], row[1] or "public"), row[2]
        try:
            acquired = bool(self._connection.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                                     {"key": self.key}).scalar())
            self._connection.commit()  # the lock is the session's, not the transaction's
        except BaseException:
            self._close()
            raise
        return acquired

    def still_held(self) -> bool:
        if self._connection is None:
            return False
        try:
            key = self.key or 0  # a bigint key shows in pg_locks as its high and low 32 bits
            held = self._connection.execute(text(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND pid = pg_backend_pid() AND objsubid = 1"
                " AND classid = CAST(CAST(:high AS bigint) AS oid) AND objid = CAST(CAST(:low AS bigint) AS oid))"),
                {"high": (key >> 32) & 0xFFFFFFFF, "low": key & 0xFFFFFFFF}).scalar()
            self._connection.commit()
        except Exception:
            self._close()
            return False
        return bool(held)

    def release(self) -> None:
        # Unlock first: a closed session's locks are released when its server process ends,
        # a moment after the client has gone; a standby trying right then must succeed.
        if self._connection is not None:
            try:
                self._connection.execute(text("SELECT pg_advisory_unlock_all()"))
                self._connection.commit()
            except Exception:  # the session is gone, and its locks with it
                pass
        self._close()

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # already broken: the server ends the session anyway
                pass


class FileClockLock:
    """An exclusive, non-blocking ``flock`` on a file next to the SQLite database."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def describe(self) -> str:
        return f"file lock {self.path}"

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def still_held(self) -> bool:
        return self._fd is not None  # only this process can give an flock up

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the lock


class ProcessClockLock:
    """An in-memory database is this process's alone: it always leads."""

    def __init__(self) -> None:
        self._held = False

    def describe(self) -> str:
        return "in-memory database (no lock needed)"

    def try_acquire(self) -> bool:
        self._held = True
        return True

    def still_held(self) -> bool:
        return self._held

    def release(self) -> None:
        self._held = False
