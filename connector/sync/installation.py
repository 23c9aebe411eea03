"""This billsync installation: its id, the external ids it writes, and the org it is bound to.

Table ``installation`` (one row, created by the first use, or by the migration of a
database that had already pushed records):

- ``installation_id``: a random id of ``INSTALLATION_ID_LENGTH`` lowercase letters and
  digits, generated once. Every record billsync pushes is keyed by it, so two billsync
  databases (a rebuilt one, a copy, a move to PostgreSQL) never write the same keys
  (``Keys``; docs/custom-objects.md, "External ids").
- ``org_id``, ``bound_at``: the Salesforce org the push is bound to, recorded by the first
  push; a push into another org is refused (``connector.sync.binding``).
- ``adopted_at``: set by ``billsync sync adopt --org``: the admin accepted that the bound
  org holds billsync records of another installation.
- ``rekey_pending``: records were pushed under the old keys (the engine's bare ids) and
  must be moved to this installation's keys before anything else is pushed.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Column, Engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel

from connector.database import transaction
from connector.sync.tables import UtcDateTime

INSTALLATION_ID_LENGTH = 10
ORG_ID_LENGTH = 18
_ALPHABET = string.ascii_lowercase + string.digits
_ROW = 1
_TAGS = {"invoice": "inv", "line": "line", "payment": "pay", "credit_note": "cn", "credit_note_line": "cnl",
         "refund": "ref", "document": "doc"}


class InstallationRow(SQLModel, table=True):
    """The one row describing this installation."""

    __tablename__ = "installation"

    id: int = Field(default=_ROW, primary_key=True)
    installation_id: str = Field(max_length=16)
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    org_id: str | None = Field(default=None, max_length=ORG_ID_LENGTH)
    bound_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    adopted_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    rekey_pending: bool = Field(default=False)


def new_installation_id() -> str:
    """Ten random lowercase letters and digits (no ``_`` or ``%``: SOQL ``LIKE`` takes it as is)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(INSTALLATION_ID_LENGTH))


@dataclass(frozen=True)
class Keys:
    """The external ids this installation writes: ``<installation>-inv-<invoice id>``,
    ``<installation>-line-<line id>``, ``<installation>-pay-<payment id>``, ``<installation>-cn-<credit
    note id>``, ``<installation>-cnl-<credit note line id>``, ``<installation>-ref-<refund id>``,
    ``<installation>-doc-<document id>`` (at most 35 characters); for what customers do in the portal,
    ``<installation>-chg-<change id>`` and ``<installation>-msg-<message id>`` (at most 45)."""

    installation_id: str

    @property
    def prefix(self) -> str:
        return f"{self.installation_id}-"

    def invoice(self, invoice_id: int | str) -> str:
        return f"{self.installation_id}-{_TAGS['invoice']}-{invoice_id}"

    def line(self, line_id: int | str) -> str:
        return f"{self.installation_id}-line-{line_id}"

    def payment(self, payment_id: int | str) -> str:
        return f"{self.installation_id}-pay-{payment_id}"

    def credit_note(self, credit_note_id: int | str) -> str:
        return f"{self.installation_id}-cn-{credit_note_id}"

    def credit_note_line(self, line_id: int | str) -> str:
        return f"{self.installation_id}-cnl-{line_id}"

    def refund(self, refund_id: int | str) -> str:
        return f"{self.installation_id}-ref-{refund_id}"

    def document(self, document_id: int | str) -> str:
        return f"{self.installation_id}-{_TAGS['document']}-{document_id}"

    def portal_change(self, change_id: str) -> str:
        return f"{self.installation_id}-chg-{change_id}"

    def sales_request(self, message_id: str) -> str:
        return f"{self.installation_id}-msg-{message_id}"

    def engine_id(self, kind: str, key: str | None) -> int | None:
        """The engine id in one of this installation's keys (``kind``: invoice, line, payment, credit_note,
        credit_note_line or refund), else ``None``."""
        head = f"{self.installation_id}-{_TAGS[kind]}-"
        rest = key[len(head):] if key and key.startswith(head) else ""
        return int(rest) if rest.isdigit() else None


@dataclass(frozen=True)
class Installation:
    installation_id: str
    created_at: datetime
    org_id: str | None
    bound_at: datetime | None
    adopted_at: datetime | None
    rekey_pending: bool

    @property
    def keys(self) -> Keys:
        return Keys(self.installation_id)


def _state(row: InstallationRow) -> Installation:
    return Installation(row.installation_id, row.created_at, row.org_id, row.bound_at, row.adopted_at,
                        row.rekey_pending)


def find_installation(engine: Engine) -> Installation | None:
    """This installation, or ``None`` before its first use (reads only)."""
    with Session(engine) as session:
        row = session.get(InstallationRow, _ROW)
        return _state(row) if row is not None else None


def describe(state: Installation | None) -> str:
    """One line for ``billsync sync status``."""
    if state is None:
        return "installation: none yet (the first push creates it and binds it to the org)"
    line = f"installation {state.installation_id}"
    if state.org_id and state.bound_at:
        line += f", bound to org {state.org_id} since {state.bound_at.isoformat(timespec='seconds')}"
    else:
        line += ", not bound to an org yet (the first push binds it)"
    if state.adopted_at:
        line += f", org adopted {state.adopted_at.isoformat(timespec='seconds')}"
    if state.rekey_pending:
        line += ", records pushed under the old keys wait to be re-keyed by the next push"
    return line


def get_installation(engine: Engine, *, now: datetime | None = None) -> Installation:
    """This installation, created with a new id on first use (nothing pushed yet: nothing to re-key)."""
    with Session(engine) as session:
        row = session.get(InstallationRow, _ROW)
        if row is not None:
            return _state(row)
    try:
        with transaction(engine) as session:
            row = InstallationRow(id=_ROW, installation_id=new_installation_id(), created_at=now or datetime.now(UTC))
            session.add(row)
            session.flush()
            return _state(row)
    except IntegrityError:  # another process created it first
        with Session(engine) as session:
            row = session.get(InstallationRow, _ROW)
            assert row is not None
            return _state(row)


def ensure_installation(session: Session, *, now: datetime) -> Installation:
    """This installation, created with a new id in the caller's transaction if it has none yet."""
    table = InstallationRow.__table__  # type: ignore[attr-defined]  # set on every table class
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(dialect.insert(table).values(id=_ROW, installation_id=new_installation_id(), created_at=now,
                                                 rekey_pending=False).on_conflict_do_nothing(index_elements=["id"]))
    row = session.get(InstallationRow, _ROW)
    assert row is not None
    return _state(row)


def keys_of(engine: Engine) -> Keys:
    """The external ids this installation writes."""
    return get_installation(engine).keys


def _update(engine: Engine, **values: object) -> Installation:
    get_installation(engine)
    with transaction(engine) as session:
        row = session.get(InstallationRow, _ROW, with_for_update=True)
        assert row is not None
        for name, value in values.items():
            setattr(row, name, value)
        session.add(row)
        session.flush()
        return _state(row)


def bind_org(engine: Engine, org_id: str, *, now: datetime) -> Installation:
    """Record the org the push writes to (the first push into it)."""
    return _update(engine, org_id=org_id, bound_at=now)


def adopt_org(engine: Engine, org_id: str, *, now: datetime) -> Installation:
    """Bind to ``org_id`` and accept that it holds billsync records of other installations."""
    return _update(engine, org_id=org_id, bound_at=now, adopted_at=now)


def finish_rekey(engine: Engine) -> Installation:
    """Every record pushed under the old keys now carries this installation's keys."""
    return _update(engine, rekey_pending=False)


def same_org(a: str | None, b: str | None) -> bool:
    """Salesforce ids compare on their first 15 characters (the 18-character form adds a checksum)."""
    return bool(a) and bool(b) and str(a)[:15] == str(b)[:15]
