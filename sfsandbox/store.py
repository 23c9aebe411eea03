"""Records in memory (one dict per object), with undo for rollback and optional
write-through persistence to SQLite. One re-entrant lock guards everything.

A record is a dict of canonical field name -> value (str, bool, None, int, Decimal;
dates ``YYYY-MM-DD``; datetimes ``YYYY-MM-DDTHH:MM:SS.000+0000``). Stored dicts are
never mutated in place: writers put a new dict.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sfsandbox import wire
from sfsandbox.ids import IdFactory
from sfsandbox.schema import ObjectDef, Schema


@dataclass
class Change:
    """One committed change, handed to the notification publishers."""

    object: str
    record_id: str
    change_type: str  # CREATE | UPDATE | DELETE | UNDELETE
    changed_fields: list[str]
    record: dict[str, Any]  # the record after the change (before it, for DELETE)
    user_write: bool
    origin: str = ""  # CDC changeOrigin: com/salesforce/api/rest/<ver>;client=<client id>
    user_id: str | None = None


@dataclass
class _Txn:
    undo: list[tuple[str, str, dict | None]] = field(default_factory=list)
    deleted_len: int = 0
    changes: list[Change] = field(default_factory=list)
    dirty: set[tuple[str, str]] = field(default_factory=set)
    depth: int = 0


class Store:
    def __init__(self, schema: Schema, db_path: str | None = None):
        self.schema = schema
        self.lock = threading.RLock()
        self.ids = IdFactory()
        self.tables: dict[str, dict[str, dict]] = {name: {} for name in schema.objects}
        self.deleted_log: list[tuple[str, str, str]] = []  # (object, id, deletedDate)
        self.autonumbers: dict[str, int] = {}
        self.listeners: list = []
        # (object, lower field) -> normalised value -> set of ids (live records only)
        self._keys: dict[tuple[str, str], dict[Any, set[str]]] = {}
        self._key_fields: dict[str, list[tuple[str, bool]]] = {}
        # (object, reference field) -> parent id -> set of child ids (live and deleted)
        self._children: dict[tuple[str, str], dict[str, set[str]]] = {}
        self._ref_fields: dict[str, list[str]] = {}
        for obj in schema.objects.values():
            self._key_fields[obj.name] = [
                (f.name, f.case_sensitive) for f in obj.fields.values() if (f.external_id or f.unique) and f.name != "Id"
            ]
            self._ref_fields[obj.name] = [f.name for f in obj.fields.values() if f.type == "reference"]
            for fname, _ in self._key_fields[obj.name]:
                self._keys[(obj.name, fname)] = {}
            for fname in self._ref_fields[obj.name]:
                self._children[(obj.name, fname)] = {}
        self._txn: _Txn | None = None
        self._db: sqlite3.Connection | None = None
        if db_path:
            self._open_db(db_path)

    # ------------------------------------------------------------------ reads

    def get(self, obj: str, record_id: str) -> dict | None:
        return self.tables[obj].get(record_id)

    def scan(self, obj: str, include_deleted: bool = False) -> Iterator[dict]:
        table = self.tables[obj]
        if include_deleted:
            return iter(list(table.values()))
        return iter([r for r in table.values() if not r["IsDeleted"]])

    def count(self, obj: str) -> int:
        return sum(1 for r in self.tables[obj].values() if not r["IsDeleted"])

    def find_by_key(self, obj: str, fname: str, value: Any) -> list[str]:
        index = self._keys.get((obj, fname))
        if index is None:
            return [r["Id"] for r in self.tables[obj].values() if not r["IsDeleted"] and r.get(fname) == value]
        return sorted(index.get(self._norm_key(obj, fname, value), ()))

    def child_ids(self, obj: str, fk_field: str, parent_id: str) -> list[str]:
        return sorted(self._children[(obj, fk_field)].get(parent_id, ()))

    def children(self, obj: str, fk_field: str, parent_id: str, include_deleted: bool = False) -> list[dict]:
        table = self.tables[obj]
        rows = [table[i] for i in self.child_ids(obj, fk_field, parent_id)]
        return rows if include_deleted else [r for r in rows if not r["IsDeleted"]]

    def referencing(self, target_obj: str, target_id: str) -> Iterator[tuple[str, str, str]]:
        """(object, field, id) of every record whose reference field points at target_id."""
        for obj in self.schema.objects.values():
            for f in obj.fields.values():
                if f.type == "reference" and f.reference_to == target_obj:
                    for child_id in self.child_ids(obj.name, f.name, target_id):
                        yield obj.name, f.name, child_id

    def _norm_key(self, obj: str, fname: str, value: Any) -> Any:
        for name, case_sensitive in self._key_fields[obj]:
            if name == fname and not case_sensitive and isinstance(value, str):
                return value.lower()
        return value

    # ----------------------------------------------------------------- writes

    @contextmanager
    def transaction(self) -> Iterator[_Txn]:
        """All writes inside commit together or, on an exception, roll back."""
        with self.lock:
            if self._txn is not None:
                # Nested: a savepoint; a failure inside rolls back to it, then propagates.
                point = self.savepoint()
                self._txn.depth += 1
                try:
                    yield self._txn
                except BaseException:
                    self.rollback_to(point)
                    raise
                finally:
                    self._txn.depth -= 1
                return
            txn = _Txn(deleted_len=len(self.deleted_log))
            self._txn = txn
            try:
                yield txn
            except BaseException:
                self.rollback_to((0, 0, txn.deleted_len))
                self._txn = None
                raise
            self._txn = None
            self._commit(txn)

    def savepoint(self) -> tuple[int, int, int]:
        txn = self._txn
        assert txn is not None
        return (len(txn.undo), len(txn.changes), len(self.deleted_log))

    def rollback_to(self, point: tuple[int, int, int]) -> None:
        txn = self._txn
        assert txn is not None
        undo_len, changes_len, deleted_len = point
        while len(txn.undo) > undo_len:
            obj, record_id, old = txn.undo.pop()
            self._replace(obj, record_id, old)
        del txn.changes[changes_len:]
        del self.deleted_log[deleted_len:]

    def put(self, obj: str, record: dict, change: Change | None = None) -> None:
        txn = self._txn
        if txn is None:
            raise RuntimeError("write outside a transaction")
        old = self.tables[obj].get(record["Id"])
        txn.undo.append((obj, record["Id"], old))
        txn.dirty.add((obj, record["Id"]))
        self._replace(obj, record["Id"], record)
        if change is not None:
            txn.changes.append(change)

    def log_delete(self, obj: str, record_id: str, when: str) -> None:
        self.deleted_log.append((obj, record_id, when))

    def next_autonumber(self, name: str) -> int:
        n = self.autonumbers.get(name, 0) + 1
        self.autonumbers[name] = n
        return n

    def _replace(self, obj: str, record_id: str, new: dict | None) -> None:
        table = self.tables[obj]
        old = table.get(record_id)
        if old is not None:
            self._unindex(obj, old)
        if new is None:
            table.pop(record_id, None)
        else:
            table[record_id] = new
            self._index(obj, new)

    def _index(self, obj: str, record: dict) -> None:
        rid = record["Id"]
        if not record["IsDeleted"]:
            for fname, case_sensitive in self._key_fields[obj]:
                value = record.get(fname)
                if value is not None:
                    key = value if case_sensitive or not isinstance(value, str) else value.lower()
                    self._keys[(obj, fname)].setdefault(key, set()).add(rid)
        for fname in self._ref_fields[obj]:
            parent = record.get(fname)
            if parent:
                self._children[(obj, fname)].setdefault(parent, set()).add(rid)

    def _unindex(self, obj: str, record: dict) -> None:
        rid = record["Id"]
        for fname, case_sensitive in self._key_fields[obj]:
            value = record.get(fname)
            if value is not None:
                key = value if case_sensitive or not isinstance(value, str) else value.lower()
                bucket = self._keys[(obj, fname)].get(key)
                if bucket:
                    bucket.discard(rid)
                    if not bucket:
                        del self._keys[(obj, fname)][key]
        for fname in self._ref_fields[obj]:
            parent = record.get(fname)
            if parent:
                bucket = self._children[(obj, fname)].get(parent)
                if bucket:
                    bucket.discard(rid)

    def _commit(self, txn: _Txn) -> None:
        if self._db is not None and txn.dirty:
            self._persist(txn)
        if txn.changes:
            for listener in list(self.listeners):
                listener(list(txn.changes))

    def bulk_insert(self, obj: str, records: Iterable[dict]) -> None:
        """Fast path for seed data: no undo, no change events; persisted at once."""
        with self.lock:
            table = self.tables[obj]
            rows = []
            for record in records:
                table[record["Id"]] = record
                self._index(obj, record)
                rows.append(record)
            if self._db is not None:
                self._db.executemany(
                    "INSERT OR REPLACE INTO records(object, id, body) VALUES (?, ?, ?)",
                    [(obj, r["Id"], wire.dumps(r)) for r in rows],
                )
                self._save_meta()
                self._db.commit()

    def clear(self) -> None:
        with self.lock:
            for name in self.tables:
                self.tables[name] = {}
            for index in self._keys.values():
                index.clear()
            for index in self._children.values():
                index.clear()
            self.deleted_log.clear()
            self.autonumbers.clear()
            self.ids.restore({})
            if self._db is not None:
                self._db.execute("DELETE FROM records")
                self._db.execute("DELETE FROM deleted")
                self._db.execute("DELETE FROM meta")
                self._db.commit()

    # ---------------------------------------------------------------- SQLite

    def _open_db(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level="DEFERRED")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS records (object TEXT NOT NULL, id TEXT PRIMARY KEY, body TEXT NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS deleted (seq INTEGER PRIMARY KEY, object TEXT, id TEXT, at TEXT)")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._db.commit()
        self._load()

    def is_empty(self) -> bool:
        return not any(self.tables.values())

    def _load(self) -> None:
        assert self._db is not None
        for obj, body in self._db.execute("SELECT object, body FROM records"):
            definition = self.schema.get(obj)
            if definition is None:
                continue
            record = _coerce_loaded(definition, wire.loads(body))
            self.tables[definition.name][record["Id"]] = record
            self._index(definition.name, record)
        self.deleted_log = [tuple(row) for row in self._db.execute("SELECT object, id, at FROM deleted ORDER BY seq")]
        meta = dict(self._db.execute("SELECT key, value FROM meta"))
        if "ids" in meta:
            self.ids.restore(wire.loads(meta["ids"]))
        if "autonumbers" in meta:
            self.autonumbers = wire.loads(meta["autonumbers"])

    def _persist(self, txn: _Txn) -> None:
        assert self._db is not None
        rows = []
        gone = []
        for obj, rid in txn.dirty:
            record = self.tables[obj].get(rid)
            if record is None:
                gone.append((rid,))
            else:
                rows.append((obj, rid, wire.dumps(record)))
        self._db.executemany("INSERT OR REPLACE INTO records(object, id, body) VALUES (?, ?, ?)", rows)
        self._db.executemany("DELETE FROM records WHERE id = ?", gone)
        new_deleted = self.deleted_log[txn.deleted_len :]
        self._db.executemany("INSERT INTO deleted(object, id, at) VALUES (?, ?, ?)", new_deleted)
        self._save_meta()
        self._db.commit()

    def _save_meta(self) -> None:
        assert self._db is not None
        self._db.executemany(
            "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
            [("ids", wire.dumps(self.ids.counters())), ("autonumbers", wire.dumps(self.autonumbers))],
        )

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _coerce_loaded(obj: ObjectDef, record: dict) -> dict:
    for name, value in record.items():
        spec = obj.fields.get(name)
        if spec is not None and value is not None and spec.type in ("currency", "double", "percent"):
            record[name] = Decimal(value) if not isinstance(value, Decimal) else value
    return record
