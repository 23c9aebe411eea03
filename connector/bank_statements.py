"""Reading bank statements: camt.053 (ISO 20022, any version) and CSV, into the
engine's ``BankTransaction`` values (docs/payments.md, "Bank statements").

The whole file is read and checked before anything is recorded: a problem (XML that does not
parse, a bad IBAN, an unknown currency, a missing amount or date...) is one line naming where
it is, and ``StatementError`` carries them all.

camt.053: the XML is parsed with ``defusedxml`` (no entity expansion, no external entities: a
statement comes from outside). Elements are found by local name, so every version's namespace
works, and the shapes that changed between versions are both read (``Sts`` as text or
``Sts/Cd``, a party's name as ``Dbtr/Nm`` or ``Dbtr/Pty/Nm``). Only booked entries (``BOOK``)
are taken. An entry with several transaction details (a batch) gives one transaction per detail.
An entry's key is the account IBAN with the bank's reference (``AcctSvcrRef``, else ``NtryRef``,
else the statement id and the entry's position), and the detail's number in a batch.

CSV: one row per movement, columns named in the header (any order, any case; ``,`` or ``;``):
``date`` (YYYY-MM-DD), ``amount`` (positive: credit, negative: debit; ``.`` or, with ``;``
separators, ``,`` as decimal mark), ``currency``, ``reference`` (the bank's unique reference of
the movement) are required; ``name``, ``iban`` (the payer's), ``remittance``, ``end_to_end_id``,
``return_reason`` (a direct-debit return's reason code) and ``account`` (the account statement's
IBAN) are optional.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from billing_engine.collections import BankTransaction
from billing_engine.errors import InvalidInputError
from billing_engine.money import check_currency, round_money

#: Largest statement file read (a year of a busy account fits many times over).
MAX_BYTES = 50 * 1024 * 1024


class StatementError(Exception):
    """The statement cannot be imported; ``problems`` has one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass
class _Problems:
    lines: list[str] = field(default_factory=list)

    def add(self, where: str, what: str) -> None:
        self.lines.append(f"{where}: {what}")


def read_statement(path: Path) -> list[BankTransaction]:
    """The booked transactions of a camt.053 (``.xml``) or CSV (``.csv``, or any file that does not
    start with ``<``) statement; raises ``StatementError`` with every problem."""
    data = path.read_bytes()
    if len(data) > MAX_BYTES:
        raise StatementError([f"{path.name}: larger than {MAX_BYTES // (1024 * 1024)} MB"])
    if path.suffix.lower() == ".xml" or data.lstrip()[:1] == b"<":
        return parse_camt053(data)
    return parse_csv(data)


# ---------------------------------------------------------------- values


def _iban(value: str, where: str, problems: _Problems) -> str:
    from schwifty import IBAN

    text = (value or "").strip()
    if not text:
        return ""
    try:
        return str(IBAN(text).compact)
    except ValueError as exc:
        problems.add(where, f"bad IBAN {text!r} ({exc})")
        return ""


def _currency(value: str, where: str, problems: _Problems) -> str | None:
    try:
        return check_currency((value or "").strip())
    except InvalidInputError:
        problems.add(where, f"unknown currency {(value or '').strip()!r}")
        return None


#: Amounts a statement may carry: below 10^15 in its currency (a bank's fields allow 15 digits).
MAX_AMOUNT = Decimal("1e15")


def _amount(value: str, currency: str | None, where: str, problems: _Problems, *, signed: bool = False
            ) -> Decimal | None:
    try:
        amount = Decimal((value or "").strip())
    except InvalidOperation:
        problems.add(where, f"the amount {value!r} is not a number")
        return None
    if not amount.is_finite() or (amount <= 0 and not signed) or amount == 0:
        problems.add(where, f"the amount {value!r} must be {'non-zero' if signed else 'positive'}")
        return None
    if abs(amount) >= MAX_AMOUNT:
        problems.add(where, f"the amount {value!r} is too large (at most 15 digits before the point)")
        return None
    if currency and abs(amount) != round_money(abs(amount), currency):
        problems.add(where, f"the amount {value!r} has more decimals than {currency} allows")
        return None
    return amount


def _date(value: str, where: str, problems: _Problems) -> date | None:
    text = (value or "").strip()[:10]
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        problems.add(where, f"the date {value!r} is not YYYY-MM-DD")
        return None


# ---------------------------------------------------------------- camt.053


def _local(tag: Any) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _child(element: Any, *path: str) -> Any:
    """The first descendant along ``path`` (local names), or None."""
    current = element
    for name in path:
        if current is None:
            return None
        current = next((c for c in current if _local(c.tag) == name), None)
    return current


def _children(element: Any, name: str) -> Iterator[Any]:
    return (c for c in (element if element is not None else ()) if _local(c.tag) == name)


def _text(element: Any, *path: str) -> str:
    found = _child(element, *path)
    return (found.text or "").strip() if found is not None and found.text else ""


def _party(details: Any, role: str) -> tuple[str, str]:
    """(name, IBAN) of ``Dbtr``/``Cdtr`` in a transaction's related parties (both camt versions)."""
    parties = _child(details, "RltdPties")
    name = _text(parties, role, "Nm") or _text(parties, role, "Pty", "Nm")
    return name, _text(parties, f"{role}Acct", "Id", "IBAN")


def parse_camt053(data: bytes) -> list[BankTransaction]:
    import defusedxml.ElementTree as DET
    from defusedxml import DefusedXmlException

    try:
        root = DET.fromstring(data)
    except (DET.ParseError, DefusedXmlException, ValueError) as exc:
        raise StatementError([f"not readable XML: {exc}"]) from None
    document = _child(root, "BkToCstmrStmt") if _local(root.tag) == "Document" else None
    namespace = root.tag[1:].split("}")[0] if root.tag.startswith("{") else ""
    if document is None or "camt.053" not in namespace:
        raise StatementError([f"not a camt.053 bank statement (root {_local(root.tag)!r} in {namespace or 'no'} "
                              "namespace)"])
    problems = _Problems()
    out: list[BankTransaction] = []
    statements = list(_children(document, "Stmt"))
    if not statements:
        problems.add("statement", "no Stmt element")
    for s, statement in enumerate(statements, 1):
        statement_id = _text(statement, "Id") or f"statement {s}"
        where = f"statement {statement_id}"
        account = _iban(_text(statement, "Acct", "Id", "IBAN"), f"{where}: account", problems)
        if not _text(statement, "Acct", "Id", "IBAN"):
            problems.add(where, "no account IBAN (Acct/Id/IBAN)")
        for n, entry in enumerate(_children(statement, "Ntry"), 1):
            out.extend(_entry(entry, n, statement_id, account, problems))
    if problems.lines:
        raise StatementError(problems.lines)
    return out


def _entry(entry: Any, n: int, statement_id: str, account: str, problems: _Problems) -> list[BankTransaction]:
    reference = _text(entry, "AcctSvcrRef") or _text(entry, "NtryRef")
    where = f"entry {n}" + (f" ({reference})" if reference else "")
    status = _text(entry, "Sts", "Cd") or _text(entry, "Sts")
    amount_element = _child(entry, "Amt")
    currency = _currency(amount_element.get("Ccy", "") if amount_element is not None else "", where, problems)
    amount = _amount(amount_element.text if amount_element is not None else "", currency, where, problems)
    direction = {"CRDT": "credit", "DBIT": "debit"}.get(_text(entry, "CdtDbtInd"))
    if direction is None:
        problems.add(where, f"CdtDbtInd {_text(entry, 'CdtDbtInd')!r} is neither CRDT nor DBIT")
    booked_on = _date(_text(entry, "BookgDt", "Dt") or _text(entry, "BookgDt", "DtTm"), where, problems)
    if status and status != "BOOK":
        return []  # pending or information only: the bank has not booked it
    if _text(entry, "RvslInd").lower() == "true":
        return []  # the bank's own reversal of an earlier entry: not a payment
    details = [d for block in _children(entry, "NtryDtls") for d in _children(block, "TxDtls")]
    base_key = f"{account}:{reference or f'{statement_id}#{n}'}"
    extra = _text(entry, "AddtlNtryInf")
    made: list[BankTransaction] = []
    for k, detail in enumerate(details or [None], 1):
        item_where = where if len(details) <= 1 else f"{where}, transaction {k}"
        item_amount, item_currency = amount, currency
        if len(details) > 1:
            own = _child(detail, "Amt") if _child(detail, "Amt") is not None else _child(detail, "AmtDtls", "TxAmt",
                                                                                             "Amt")
            if own is None:
                problems.add(item_where, "a batch entry's transaction has no amount")
                continue
            item_currency = _currency(own.get("Ccy", ""), item_where, problems)
            item_amount = _amount(own.text or "", item_currency, item_where, problems)
        role = "Dbtr" if direction == "credit" else "Cdtr"
        name, iban_text = _party(detail, role) if detail is not None else ("", "")
        if direction == "debit" and not iban_text and detail is not None:
            name, iban_text = _party(detail, "Dbtr")
        counterparty_iban = _iban(iban_text, f"{item_where}: counterparty", problems)
        unstructured = " ".join(u.text.strip() for u in _children(_child(detail, "RmtInf"), "Ustrd") if u.text) \
            if detail is not None else ""
        structured = " ".join(_text(s, "CdtrRefInf", "Ref") for s in _children(_child(detail, "RmtInf"), "Strd")) \
            if detail is not None else ""
        end_to_end = _text(detail, "Refs", "EndToEndId") if detail is not None else ""
        reason = (_text(detail, "RtrInf", "Rsn", "Cd") or _text(detail, "RtrInf", "Rsn", "Prtry")) \
            if detail is not None else ""
        if None in (item_amount, item_currency, direction, booked_on):
            continue
        made.append(BankTransaction(
            entry_key=base_key if len(details) <= 1 else f"{base_key}/{k}", statement_id=statement_id,
            account_iban=account, booked_on=booked_on, direction=direction, amount=item_amount,  # type: ignore[arg-type]
            currency=item_currency, counterparty_name=name, counterparty_iban=counterparty_iban,  # type: ignore[arg-type]
            remittance=" ".join(p for p in (unstructured, structured, extra if len(details) <= 1 else "") if p),
            end_to_end_id="" if end_to_end.upper() == "NOTPROVIDED" else end_to_end,
            batch_id=_text(detail, "Refs", "PmtInfId") if detail is not None else "",
            return_reason=reason.upper()))
    return made


# ---------------------------------------------------------------- CSV

CSV_REQUIRED = ("date", "amount", "currency", "reference")
CSV_OPTIONAL = ("name", "iban", "remittance", "end_to_end_id", "return_reason", "account")


def parse_csv(data: bytes) -> list[BankTransaction]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise StatementError(["the CSV file is not UTF-8 text"]) from None
    first = text.splitlines()[0] if text.strip() else ""
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    columns = {(c or "").strip().lower(): c for c in reader.fieldnames or []}
    missing = [c for c in CSV_REQUIRED if c not in columns]
    if missing:
        raise StatementError([f"the CSV header lacks the column{'s' if len(missing) > 1 else ''} "
                              f"{', '.join(missing)} (required: {', '.join(CSV_REQUIRED)}; optional: "
                              f"{', '.join(CSV_OPTIONAL)})"])
    problems = _Problems()
    out: list[BankTransaction] = []
    seen: set[str] = set()
    for line, row in enumerate(reader, 2):
        def get(name: str, _row: dict[str, Any] = row) -> str:
            key = columns.get(name)
            return (_row.get(key) or "").strip() if key else ""

        where = f"line {line}"
        reference = get("reference")
        if not reference:
            problems.add(where, "no reference (the bank's reference of the movement)")
        elif reference in seen:
            problems.add(where, f"reference {reference!r} appears twice")
        seen.add(reference)
        currency = _currency(get("currency"), where, problems)
        raw = get("amount").replace(" ", "")
        if delimiter == ";":
            raw = raw.replace(",", ".")
        amount = _amount(raw, currency, where, problems, signed=True)
        booked_on = _date(get("date"), where, problems)
        account = _iban(get("account"), f"{where}: account", problems)
        counterparty = _iban(get("iban"), f"{where}: iban", problems)
        if None in (currency, amount, booked_on) or not reference:
            continue
        out.append(BankTransaction(
            entry_key=f"{account or 'csv'}:{reference}", statement_id="csv", account_iban=account,
            booked_on=booked_on, direction="credit" if amount > 0 else "debit", amount=abs(amount),  # type: ignore[arg-type,operator]
            currency=currency, counterparty_name=get("name"), counterparty_iban=counterparty,  # type: ignore[arg-type]
            remittance=get("remittance"), end_to_end_id=get("end_to_end_id"),
            return_reason=get("return_reason").upper()))
    if problems.lines:
        raise StatementError(problems.lines)
    return out
