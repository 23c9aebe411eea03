"""Helpers for the push tests and the sync benchmark: Accounts in the sandbox, finalized invoices
in the engine (through ``run_billing``), and what Salesforce holds afterwards."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from billing_engine.storage.catalog import CustomerRow
from billing_engine.storage.invoices import Invoice, InvoiceLine, billed_keys
from billing_engine.storage.outbox import OutboxRow
from billing_engine.storage.subscriptions import SubscriptionRow
from billing_engine.tax import TaxRate
from billing_engine.use_cases.billing import BillingAccount, BillRunResult, run_billing
from connector.sync.installation import keys_of

AS_OF = date(2026, 11, 1)
NOW = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Charge:  # the fields of billing_engine.charges.ChargeLine
    key: str
    amount: Decimal
    subscription_id: str
    item_id: str
    product_code: str
    currency: str = "EUR"
    kind: str = "recurring"
    discount: Decimal = Decimal(0)
    product_name: str = "Plan"
    starts_on: date = date(2026, 11, 1)
    ends_before: date = date(2026, 12, 1)
    quantity: Decimal = Decimal(1)
    unit_price: Decimal = Decimal(0)
    explanation: str = ""
    description: str = "Plan"


class StaticSource:
    """Fixed charges per customer (already-billed keys are skipped, like ``billing_engine.charges.charges_due``)."""

    def __init__(self, customer_ids: list[str], charges: dict[str, list[Charge]]):
        self.accounts = [BillingAccount(cid, TaxRate(Decimal(20)), 30) for cid in sorted(customer_ids)]
        self.charges = charges

    def customers_due(self, session, as_of, after, limit):
        return [a for a in self.accounts if after is None or a.customer_id > after][:limit]

    def charges_due(self, session, accounts, as_of):
        wanted = [c.key for a in accounts for c in self.charges.get(a.customer_id, [])]
        billed = billed_keys(session, wanted)
        return {a.customer_id: [c for c in self.charges.get(a.customer_id, []) if c.key not in billed]
                for a in accounts}

    def customer_mrr_on(self, session, accounts, as_of):
        return None  # fixed charges: no MRR to announce


def create_accounts(client: Any, count: int, *, prefix: str = "Acme") -> list[str]:
    """``count`` EUR Accounts in the org (sObject Collections create, 5 collections per composite)."""
    ids: list[str] = []
    base = f"/services/data/v{client.api_version}/composite/sobjects"
    names = [f"{prefix} {n:05d}" for n in range(count)]
    chunks = [names[i:i + 200] for i in range(0, count, 200)]
    for start in range(0, len(chunks), 5):
        subs = [{"method": "POST", "url": base, "referenceId": f"a{start + n}",
                 "body": {"allOrNone": True, "records": [{"attributes": {"type": "Account"}, "Name": name,
                                                          "CurrencyIsoCode": "EUR"} for name in chunk]}}
                for n, chunk in enumerate(chunks[start:start + 5])]
        for answer in client.composite(subs, all_or_none=True):
            assert answer.success, answer.body
            ids.extend(item["id"] for item in answer.body)
    return ids


def amount_for(n: int, line: int) -> Decimal:
    return Decimal(f"{10 + (n * 7 + line) % 90}.{(n + line * 13) % 100:02d}")


def bill_customers(engine: Any, account_ids: list[str], *, lines: int = 5, months: int = 1,
                   first: int = 0) -> BillRunResult:
    """One customer per Account (ids ``c00000``...), ``lines`` charges a month, ``months`` monthly
    bill runs from November 2026: ``len(account_ids) × months`` finalized invoices with outbox rows."""
    ids = [f"c{first + n:06d}" for n in range(len(account_ids))]
    with Session(engine) as session, session.begin():
        for cid, account_id in zip(ids, account_ids, strict=True):
            session.add(CustomerRow(id=cid, name=cid, currency="EUR", salesforce_account_id=account_id))
        session.flush()
        for cid in ids:
            session.add(SubscriptionRow(id=f"s{cid}", customer_id=cid, currency="EUR", starts_on=AS_OF,
                                        interval="month", billing_anchor_on=AS_OF))
    result = None
    for month in range(months):
        starts = date(AS_OF.year + (AS_OF.month - 1 + month) // 12, (AS_OF.month - 1 + month) % 12 + 1, 1)
        ends = date(starts.year + starts.month // 12, starts.month % 12 + 1, 1)
        charges = {cid: [Charge(f"{cid}:{line}:{starts}", amount_for(first + n + month, line), f"s{cid}",
                                f"i{line}", f"P{line}", starts_on=starts, ends_before=ends,
                                unit_price=amount_for(first + n + month, line), description=f"Item {line}")
                         for line in range(lines)]
                   for n, cid in enumerate(ids)}
        result = run_billing(engine, starts, source=StaticSource(ids, charges), batch_size=2000,
                                now=datetime(starts.year, starts.month, 1, 6, tzinfo=UTC))
    return result


def invoice_key(engine: Any, invoice_id: int) -> str:
    """The external id (``Billsync_Invoice_Id__c``) the push writes for this engine invoice."""
    return keys_of(engine).invoice(invoice_id)


def engine_invoices(engine: Any) -> dict[str, tuple[str, Decimal, int]]:
    """External id → (number, total, line count) of every invoice in the engine."""
    keys = keys_of(engine)
    with Session(engine) as session:
        lines = Counter(session.execute(select(InvoiceLine.__table__.c.invoice_id)).scalars())
        return {keys.invoice(inv.id): (inv.number, inv.total, lines[inv.id])
                for inv in session.scalars(select(Invoice)).all()}


def salesforce_invoices(client: Any) -> tuple[dict[str, tuple[str, Decimal, int]], list[str]]:
    """What the org holds: external id → (Name, Total__c, line count), and duplicated external ids."""
    invoices = list(client.query_all("SELECT Id, Name, Billsync_Invoice_Id__c, Total__c FROM Invoice__c"))
    lines = list(client.query_all("SELECT Id, Billsync_Line_Id__c, Invoice__c FROM Invoice_Line__c"))
    per_invoice = Counter(ln["Invoice__c"] for ln in lines)
    keys = Counter(r["Billsync_Invoice_Id__c"] for r in invoices)
    line_keys = Counter(ln["Billsync_Line_Id__c"] for ln in lines)
    duplicates = [f"Invoice__c {k}" for k, n in keys.items() if n > 1]
    duplicates += [f"Invoice_Line__c {k}" for k, n in line_keys.items() if n > 1]
    state = {r["Billsync_Invoice_Id__c"]: (r["Name"], Decimal(str(r["Total__c"])), per_invoice[r["Id"]])
             for r in invoices}
    return state, duplicates


def outbox_statuses(engine: Any) -> Counter:
    with Session(engine) as session:
        return Counter(session.execute(select(OutboxRow.__table__.c.status)).scalars())


def drain_outbox(services: Any, *, rounds: int = 20) -> None:
    """Push until nothing is due (what the worker and the clock do), and check nothing was given up."""
    from connector.sync.push import push_outbox

    for _ in range(rounds):
        push_outbox(services, worker_id="test", batch_size=200)
        with Session(services.engine) as session:
            left = session.execute(select(func.count()).select_from(OutboxRow)
                                   .where(OutboxRow.status.in_(("pending", "in_flight")))).scalar_one()
        if left == 0:
            break
    else:
        raise AssertionError(f"{left} outbox rows still pending after {rounds} pushes")
    dead = outbox_statuses(services.engine).get("dead", 0)
    assert dead == 0, f"{dead} outbox rows were given up"
