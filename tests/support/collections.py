"""Fixtures and builders for the collection tests: customers with finalized invoices (issued Nov 1 2026, net 30:
due Dec 1 2026), their SEPA mandates, valid IBANs, and the creditor settings of an export."""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime
from typing import Any

from schwifty import IBAN
from sqlmodel import Session, select

from billing_engine.storage.invoices import Invoice
from billing_engine.use_cases.direct_debits import create_mandate
from connector.database import transaction
from tests.support.push import bill_customers

ISSUED_ON = date(2026, 11, 1)
DUE_ON = date(2026, 12, 1)
SIGNED_ON = date(2026, 10, 15)

CREDITOR = {"SEPA_CREDITOR_NAME": "Billsync Démo SAS", "SEPA_CREDITOR_IBAN": "FR76 3000 6000 0112 3456 7890 189",
            "SEPA_CREDITOR_BIC": "AGRIFRPP", "SEPA_CREDITOR_ID": "FR72ZZZ123456"}


@functools.cache
def iban(n: int) -> str:
    """A valid Austrian IBAN, different for each ``n``."""
    return str(IBAN(str(IBAN.generate("AT", bank_code="19043", account_code=f"{1000 + n:011d}")),
                    validate_bban=True).compact)


def invoiced_customers(engine: Any, count: int, *, lines: int = 2, first: int = 0) -> list[str]:
    """``count`` EUR customers (``c000000``...), each with one finalized invoice issued Nov 1 2026."""
    bill_customers(engine, [None] * count, lines=lines, first=first)
    return [f"c{first + n:06d}" for n in range(count)]


def add_mandates(engine: Any, customer_ids: list[str], *, offset: int = 0) -> None:
    now = datetime(2026, 11, 2, tzinfo=UTC)
    with transaction(engine) as session:
        for n, cid in enumerate(customer_ids):
            create_mandate(session, cid, reference=f"RUM-{cid}", signed_on=SIGNED_ON, iban=iban(offset + n),
                           today=date(2026, 11, 2), now=now)


def invoices_by_customer(engine: Any) -> dict[str, Invoice]:
    with Session(engine) as session:
        return {inv.customer_id: inv for inv in session.scalars(select(Invoice).order_by(Invoice.id))}
