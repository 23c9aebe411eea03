"""camt.053 bank statements for the tests, in the shapes of versions .001.08 (``Sts/Cd``,
``Dbtr/Pty/Nm``) and .001.02 (``Sts`` text, ``Dbtr/Nm``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from xml.sax.saxutils import escape

ACCOUNT = "FR7630006000011234567890189"


@dataclass
class Tx:
    """One transaction detail of an entry."""

    amount: Decimal | None = None  # own amount, for a batch entry
    name: str = ""
    iban: str = ""
    remittance: tuple[str, ...] = ()
    creditor_reference: str = ""
    end_to_end_id: str = ""
    batch_id: str = ""
    return_reason: str = ""


@dataclass
class Entry:
    amount: Decimal
    reference: str
    direction: str = "CRDT"
    booked_on: date = date(2026, 12, 3)
    currency: str = "EUR"
    status: str = "BOOK"
    details: list[Tx] = field(default_factory=list)
    info: str = ""


def _party(role: str, tx: Tx, version: str) -> str:
    if not tx.name and not tx.iban:
        return ""
    name = ""
    if tx.name:
        name = (f"<{role}><Pty><Nm>{escape(tx.name)}</Nm></Pty></{role}>" if version == "08"
                else f"<{role}><Nm>{escape(tx.name)}</Nm></{role}>")
    account = f"<{role}Acct><Id><IBAN>{tx.iban}</IBAN></Id></{role}Acct>" if tx.iban else ""
    return f"<RltdPties>{name}{account}</RltdPties>"


def _tx(tx: Tx, entry: Entry, version: str, batch: bool) -> str:
    refs = "".join(f"<{tag}>{escape(value)}</{tag}>" for tag, value in
                   (("PmtInfId", tx.batch_id), ("EndToEndId", tx.end_to_end_id)) if value)
    amount = f'<Amt Ccy="{entry.currency}">{tx.amount}</Amt>' if batch and tx.amount is not None else ""
    role = "Dbtr" if entry.direction == "CRDT" or tx.return_reason else "Cdtr"
    remittance = "".join(f"<Ustrd>{escape(u)}</Ustrd>" for u in tx.remittance)
    if tx.creditor_reference:
        remittance += f"<Strd><CdtrRefInf><Ref>{escape(tx.creditor_reference)}</Ref></CdtrRefInf></Strd>"
    returned = (f"<RtrInf><Rsn><Cd>{tx.return_reason}</Cd></Rsn><AddtlInf>returned</AddtlInf></RtrInf>"
                if tx.return_reason else "")
    return (f"<TxDtls>{f'<Refs>{refs}</Refs>' if refs else ''}{amount}{_party(role, tx, version)}"
            f"{f'<RmtInf>{remittance}</RmtInf>' if remittance else ''}{returned}</TxDtls>")


def statement(entries: list[Entry], *, version: str = "08", account: str = ACCOUNT,
              statement_id: str = "STMT-2026-12-05") -> bytes:
    """A camt.053 document with one statement of ``entries``."""
    body = []
    for entry in entries:
        status = f"<Sts><Cd>{entry.status}</Cd></Sts>" if version == "08" else f"<Sts>{entry.status}</Sts>"
        details = "".join(_tx(tx, entry, version, len(entry.details) > 1) for tx in entry.details)
        body.append(
            f'<Ntry><NtryRef>{entry.reference}</NtryRef><Amt Ccy="{entry.currency}">{entry.amount}</Amt>'
            f"<CdtDbtInd>{entry.direction}</CdtDbtInd>{status}"
            f"<BookgDt><Dt>{entry.booked_on.isoformat()}</Dt></BookgDt>"
            f"<ValDt><Dt>{entry.booked_on.isoformat()}</Dt></ValDt><AcctSvcrRef>{entry.reference}</AcctSvcrRef>"
            f"<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>RCDT</Cd><SubFmlyCd>ESCT</SubFmlyCd></Fmly></Domn></BkTxCd>"
            f"{f'<NtryDtls>{details}</NtryDtls>' if details else ''}"
            f"{f'<AddtlNtryInf>{escape(entry.info)}</AddtlNtryInf>' if entry.info else ''}</Ntry>")
    return (f'<?xml version="1.0" encoding="UTF-8"?>'
            f'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.{version}">'
            f"<BkToCstmrStmt><GrpHdr><MsgId>MSG-{statement_id}</MsgId><CreDtTm>2026-12-05T18:00:00</CreDtTm></GrpHdr>"
            f"<Stmt><Id>{statement_id}</Id><CreDtTm>2026-12-05T18:00:00</CreDtTm>"
            f"<Acct><Id><IBAN>{account}</IBAN></Id><Ccy>EUR</Ccy></Acct>"
            f"{''.join(body)}</Stmt></BkToCstmrStmt></Document>").encode()
