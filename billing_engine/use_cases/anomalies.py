"""The invoice anomaly guard: the bill run's drafts scored against their customers' history before
they are finalized; the invoices held for anomalies listed, and released by finance.

The scoring is ``billing_engine.anomalies`` (pure); this module reads what it needs — each
customer's finalized invoices of the look-back window (one query per batch of the bill run) and,
for the customers with a finding only, the amendments and renewals recorded on their
subscriptions, which may explain it (then the invoice is scored again with them) — and stores
the findings with the invoice (``storage.anomalies``).

Modes (``AnomalyGuard.mode``): ``hold`` leaves an invoice with findings as a draft held for
review, so nothing of it is numbered, sent or pushed to Salesforce until finance releases it
(``release_invoice``: finalized, with a note) or voids it (``billing.void_invoice``); ``flag``
finalizes it as usual and keeps the findings on it. Without a guard (``ANOMALY_GUARD=off``)
nothing is scored. docs/intelligence.md, The anomaly guard.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from billing_engine import outbox as ob
from billing_engine.anomalies import (
    Finding,
    GuardRules,
    InvoiceFacts,
    LineFacts,
    TermsChange,
    score_invoice,
)
from billing_engine.errors import ConflictError, InvalidInputError
from billing_engine.invoicing import InvoiceDraft
from billing_engine.money import Money
from billing_engine.periods import add_months
from billing_engine.storage import anomalies as anomaly_store
from billing_engine.storage import catalog as catalog_store
from billing_engine.storage import subscriptions as subscription_store
from billing_engine.storage.database import Session
from billing_engine.subscriptions import AmendmentAction, Subscription
from billing_engine.use_cases.billing import FinalizedInvoice, finalize_invoice, get_invoice_for_update

HOLD = "hold"
FLAG = "flag"
MODES = (HOLD, FLAG)
#: How far after the bill date the changes read may take effect (a yearly period billed in advance).
_CHANGES_AHEAD = timedelta(days=400)


@dataclass(frozen=True)
class AnomalyGuard:
    """What the bill run is given to screen its drafts (``run_billing(guard=…)``)."""

    mode: str = HOLD
    rules: GuardRules = field(default_factory=GuardRules)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InvalidInputError("mode", f"{self.mode!r} is not a mode of the anomaly guard; use hold or flag")

    @property
    def holds(self) -> bool:
        return self.mode == HOLD

    def screen(self, session: Session, as_of: date,
               drafts: Mapping[int, tuple[str, InvoiceDraft]]) -> dict[int, list[Finding]]:
        """The findings of the drafts (key → (customer id, draft)) that have any."""
        return screen_drafts(session, as_of, drafts, self.rules)

    def reason(self, findings: Sequence[Finding]) -> str:
        """Why a draft is held for these findings, in one line."""
        return held_reason(findings)

    def record(self, session: Session, findings: Sequence[tuple[int, Sequence[Finding]]], now: datetime) -> None:
        """Store the findings with the invoices just inserted (invoice id, findings)."""
        anomaly_store.add_findings(session, [(invoice_id, f) for invoice_id, found in findings for f in found], now)


def held_reason(findings: Sequence[Finding]) -> str:
    """Why a draft is held, in one line (the first finding's reason and how many more)."""
    more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
    return f"anomaly: {findings[0].reason}{more}"


def invoice_facts(draft: InvoiceDraft, billed_on: date) -> InvoiceFacts:
    """An invoice draft as the scorer sees it."""
    return InvoiceFacts(billed_on, draft.currency, draft.totals.net, tuple(
        LineFacts(ln.product_code, ln.product_name, ln.kind, ln.subscription_id, ln.starts_on, ln.ends_before,
                  ln.quantity, ln.unit_price, ln.gross, ln.line_discount, ln.tax_percent)
        for ln in draft.lines))


def screen_drafts(session: Session, as_of: date, drafts: Mapping[int, tuple[str, InvoiceDraft]],
                  rules: GuardRules) -> dict[int, list[Finding]]:
    """Score the drafts against their customers' history; a draft with findings is scored again with
    the changes recorded on its customer's subscriptions, and keeps the findings they do not explain."""
    if not drafts:
        return {}
    customers = sorted({cid for cid, _ in drafts.values()})
    history = anomaly_store.customer_history(session, customers, since=add_months(as_of, -rules.history_months),
                                             before=as_of)
    facts = {key: (cid, invoice_facts(draft, as_of)) for key, (cid, draft) in drafts.items()}
    found = {key: score_invoice(inv, history.get(cid, ()), (), rules) for key, (cid, inv) in facts.items()}
    suspects = sorted({facts[key][0] for key, f in found.items() if f})
    if suspects:
        changes = terms_changes(session, suspects, as_of + _CHANGES_AHEAD)
        for key, f in found.items():
            cid, inv = facts[key]
            if f and changes.get(cid):
                found[key] = score_invoice(inv, history.get(cid, ()), changes[cid], rules)
    return {key: f for key, f in found.items() if f}


def terms_changes(session: Session, customer_ids: Sequence[str], until: date) -> dict[str, list[TermsChange]]:
    """Per customer, the amendments and renewals of their subscriptions effective by ``until``."""
    out: dict[str, list[TermsChange]] = {}
    for sub in subscription_store.subscriptions_of_customers(session, customer_ids):
        out.setdefault(sub.customer_id, []).extend(subscription_changes(sub, until))
    return out


def subscription_changes(sub: Subscription, until: date) -> list[TermsChange]:
    """The changes of one subscription: its amendments (with the products they touch) and its
    renewals (explicit or at the end of a term)."""
    products = {item.item_id: item.price.product.code for item in sub.items}
    for amendment in sub.amendments:
        if amendment.item is not None:
            products[amendment.item.item_id] = amendment.item.price.product.code
    out = []
    for amendment in sub.amendments:
        if amendment.action is AmendmentAction.CANCEL or amendment.effective_on > until:
            continue
        if amendment.action is AmendmentAction.RENEW:
            codes: frozenset[str] = frozenset()
        else:
            item_id = amendment.item.item_id if amendment.item is not None else amendment.item_id
            codes = frozenset({products[item_id]}) if item_id in products else frozenset()
        action = "renew" if amendment.action is AmendmentAction.RENEW else amendment.action.value
        quantity = amendment.quantity if amendment.action is AmendmentAction.CHANGE_QUANTITY else None
        out.append(TermsChange(sub.subscription_id, amendment.effective_on, action,
                               f"amendment {amendment.amendment_id} ({amendment.action.value.replace('_', ' ')})",
                               codes, quantity))
    for version in sub.versions(until):
        if version.version_id.startswith("renewal-"):
            out.append(TermsChange(sub.subscription_id, version.effective_on, "renew",
                                   f"the renewal of {version.effective_on}"))
    return out


# ---------------------------------------------------------------- finance's review


@dataclass(frozen=True)
class AnomalyView:
    kind: str
    score: Decimal
    reason: str
    released_at: datetime | None
    release_note: str


@dataclass(frozen=True)
class HeldInvoice:
    invoice_id: int
    customer_id: str
    customer_name: str
    currency: str
    bill_run_on: date | None
    total: Money
    anomalies: list[AnomalyView]


def _view(row: anomaly_store.InvoiceAnomaly) -> AnomalyView:
    released = row.released_at
    if released is not None and released.tzinfo is None:  # SQLite keeps no offset: stored in UTC
        released = released.replace(tzinfo=UTC)
    return AnomalyView(row.kind, row.score, row.reason, released, row.release_note)


def invoice_anomalies(session: Session, invoice_id: int) -> list[AnomalyView]:
    """The guard's findings on one invoice (released or not), in the order found."""
    return [_view(row) for row in anomaly_store.findings_of(session, [invoice_id]).get(invoice_id, [])]


def list_held_invoices(session: Session, *, after: int | None = None, limit: int = 50) -> list[HeldInvoice]:
    """The drafts held for anomalies, by id, with their findings (``after``: the last id of the
    previous page)."""
    if not 1 <= limit <= 1000:
        raise InvalidInputError("limit", f"{limit} is not between 1 and 1000")
    invoices = anomaly_store.held_invoices(session, after=after, limit=limit)
    findings = anomaly_store.findings_of(session, [inv.id for inv in invoices if inv.id is not None])
    names = catalog_store.customer_names(session, sorted({inv.customer_id for inv in invoices}))
    return [HeldInvoice(inv.id, inv.customer_id, names.get(inv.customer_id, ""), inv.currency, inv.bill_run_on,
                        Money(inv.total, inv.currency), [_view(row) for row in findings.get(inv.id, [])])
            for inv in invoices if inv.id is not None]


def release_invoice(session: Session, invoice_id: int, *, note: str, on: date,
                    now: datetime | None = None) -> FinalizedInvoice:
    """Finance's decision on a draft held for anomalies: the findings are released with ``note``
    (why the invoice is right after all) and the invoice is finalized, issued ``on``; its events
    go to the outbox (so to Salesforce) in this transaction. Refused (``ConflictError``) for an
    invoice not held for anomalies."""
    note = note.strip()
    if not note:
        raise InvalidInputError("note", "say why the invoice is released (what was checked)")
    if len(note) > 500:
        raise InvalidInputError("note", f"at most 500 characters, got {len(note)}")
    inv = get_invoice_for_update(session, invoice_id)
    if inv.status != "draft" or not anomaly_store.is_held(session, invoice_id):
        raise ConflictError(f"invoice {inv.number or inv.id}", "is not held for anomalies")
    moment = ob.changed_at(now, on)
    anomaly_store.release(session, invoice_id, note, moment)
    return finalize_invoice(session, invoice_id, issued_on=on, now=moment)


__all__ = ["FLAG", "HOLD", "MODES", "AnomalyGuard", "AnomalyView", "GuardRules", "HeldInvoice", "held_reason", "invoice_anomalies",
            "invoice_facts", "list_held_invoices", "release_invoice", "screen_drafts",
           "subscription_changes", "terms_changes"]
