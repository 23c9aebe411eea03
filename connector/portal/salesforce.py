"""What customers do in the portal, written to Salesforce by the push, exactly once.

Three outbox topics, delivered here after the other rows claimed with them:

- ``subscription.self_service_changed`` (a quantity change, a plan switch or a cancellation
  confirmed in the portal) → the mapping ``portal_change`` (``mappings/defaults/portal.yaml``): a Closed Won
  Opportunity of Type Amendment or Cancellation, LeadSource Self-Service, naming the subscription in
  ``Subscription_Reference__c``, upserted by ``Billsync_Change_Id__c`` (``<installation>-chg-<change
  id>``): a row sent twice (a worker died before settling it, Salesforce was down) is the same deal.
  The pull's opportunity mapping leaves deals with that key out: billsync applied the change already.
- ``customer.sales_requested`` (a message to sales) → the mapping ``sales_request``: a Task on the
  Account for its owner (``OwnerId`` read from the Account when it is sent), upserted by
  ``Billsync_Message_Id__c``.
- ``customer.billing_details_changed`` (billing address and VAT number edited) → the mapping
  ``billing_details``: the Account updated by Id, so that the pull reads back what the customer
  entered.

A customer without a Salesforce Account has nothing to write: its rows are done with a note.
Outcomes per row as for documents: done, transient (a lock, an unavailable Salesforce), failed
(Salesforce refused the record: a dead letter after the queue's attempts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from simple_salesforce.format import format_external_id
from sqlmodel import Session

from billing_engine import outbox as ob
from billing_engine.errors import NotFoundError
from billing_engine.use_cases import customers as customers_uc
from connector.documents.push import answer_error
from connector.queue import Outcome
from connector.salesforce.errors import (
    RETRYABLE_CODES,
    SalesforceAuthError,
    SalesforceError,
    SalesforceLimitError,
    SalesforceRetryableError,
)
from connector.sync.installation import Keys
from connector.sync.outbox_claims import ClaimedRow, Settlement, unsent
from mappings import InvalidRecordError, MappingsError, apply_outbound

PER_CALL = 12  # a look-up and an upsert each at most: 24 of a composite's 25 subrequests


@dataclass
class PortalDelivery:
    settlements: list[Settlement] = field(default_factory=list)
    stop: SalesforceError | None = None
    sent: int = 0
    calls: int = 0


@dataclass
class _Item:
    row: ClaimedRow
    account_id: str | None = None
    record: dict[str, Any] | None = None
    outcome: Settlement | None = None


def _change_record(row: ClaimedRow, keys: Keys, account_id: str) -> dict[str, Any]:
    p = row.payload
    before, after = Decimal(str(p["mrr_before"])), Decimal(str(p["mrr_after"]))
    cancellation = p["kind"] == "cancellation"
    name = (f"Self-service cancellation of {p['subscription_id']}" if cancellation
            else f"Self-service change of {p['subscription_id']}")
    return {
        "id": keys.portal_change(p["change_id"]), "name": name, "kind": p["kind"],
        "salesforce_account_id": account_id, "subscription_id": p["subscription_id"],
        "changed_on": p["changed_on"], "effective_on": p["effective_on"],
        "cancellation_mode": "end_of_term" if cancellation else None, "mrr_change": after - before,
        "currency": p["currency"],
        "description": f"{p['description']} (customer portal). MRR {before} → {after} {p['currency']} from "
                       f"{p['effective_on']}.",
    }


def _request_record(row: ClaimedRow, keys: Keys, account_id: str, owner_id: str | None) -> dict[str, Any]:
    p = row.payload
    contact = f"\n\nFrom: {p['contact']}" if p.get("contact") else ""
    return {"id": keys.sales_request(p["message_id"]), "subject": f"Customer portal: {p['customer_name']} asks "
                                                                  "to talk to sales",
            "message": f"{p['message']}{contact}", "salesforce_account_id": account_id, "owner_id": owner_id,
            "sent_on": p["sent_on"]}


def _details_record(row: ClaimedRow, account_id: str) -> dict[str, Any]:
    p = row.payload
    return {"salesforce_account_id": account_id, "street": p["street"], "city": p["city"],
            "postal_code": p["postal_code"], "country": p["country"], "vat_id": p["vat_id"] or None}


def deliver_portal_rows(client: Any, specs: Any, engine: Any, keys: Keys, rows: Sequence[ClaimedRow],
                        now: datetime) -> PortalDelivery:
    """Write the deals and tasks of these rows; one settlement per row."""
    result = PortalDelivery()
    items = [_Item(row) for row in rows]
    with Session(engine) as session:
        for item in items:
            try:
                customer = customers_uc.get_customer(session, str(item.row.payload["customer_id"]))
            except (NotFoundError, KeyError):
                item.outcome = Settlement(item.row.id, Outcome.FAILED, "its customer is not found")
                continue
            item.account_id = customer.salesforce_account_id
            if item.account_id is None:
                item.outcome = Settlement(item.row.id, Outcome.DONE,
                                          f"customer {customer.customer_id} has no Salesforce Account: nothing to push")
        session.rollback()
    todo = [i for i in items if i.outcome is None]
    base = f"/services/data/v{client.api_version}/sobjects"
    try:
        for start in range(0, len(todo), PER_CALL):
            chunk = todo[start:start + PER_CALL]
            owners = _owners(client, base, [i for i in chunk if i.row.topic == ob.CUSTOMER_SALES_REQUESTED], result)
            _upsert(client, base, specs, keys, chunk, owners, result)
    except (SalesforceLimitError, SalesforceRetryableError, SalesforceAuthError) as stop:
        result.stop = stop
    for item in items:
        result.settlements.append(item.outcome or unsent(item.row, result.stop, now))
    return result


def _owners(client: Any, base: str, items: list[_Item], result: PortalDelivery) -> dict[str, str | None]:
    """Each Account's owner, read in one call."""
    accounts = sorted({i.account_id for i in items if i.account_id})
    if not accounts:
        return {}
    answers = client.composite([{"method": "GET", "referenceId": f"account{n}",
                                 "url": f"{base}/Account/{account}?fields=OwnerId"}
                                for n, account in enumerate(accounts)], all_or_none=False)
    result.calls += 1
    by_reference = {a.reference_id: a for a in answers}
    owners: dict[str, str | None] = {}
    for n, account in enumerate(accounts):
        answer = by_reference.get(f"account{n}")
        owners[account] = answer.body.get("OwnerId") if answer is not None and answer.success \
            and isinstance(answer.body, dict) else None
    return owners


def _upsert(client: Any, base: str, specs: Any, keys: Keys, items: list[_Item], owners: dict[str, str | None],
            result: PortalDelivery) -> None:
    subrequests, sending = [], []
    for n, item in enumerate(items):
        account = item.account_id or ""
        try:
            if item.row.topic == ob.SUBSCRIPTION_SELF_SERVICE_CHANGED:
                source, key_field = "portal_change", "Billsync_Change_Id__c"
                engine_record = _change_record(item.row, keys, account)
            elif item.row.topic == ob.CUSTOMER_SALES_REQUESTED:
                source, key_field = "sales_request", "Billsync_Message_Id__c"
                engine_record = _request_record(item.row, keys, account, owners.get(account))
            else:
                source, key_field = "billing_details", "Id"
                engine_record = _details_record(item.row, account)
            [spec] = specs.outbound_for(source)
            record = apply_outbound(spec, engine_record)
        except (InvalidRecordError, MappingsError, ValueError, KeyError) as exc:
            item.outcome = Settlement(item.row.id, Outcome.FAILED, f"mapping {item.row.topic!r}: {exc}")
            continue
        obj = spec.object
        key = record[key_field]
        body = {k: v for k, v in record.items() if k not in ("attributes", key_field)}
        url = f"{base}/{obj}/{key}" if key_field == "Id" else f"{base}/{obj}/{format_external_id(key_field, key)}"
        subrequests.append({"method": "PATCH", "referenceId": f"upsert{n}", "body": body, "url": url})
        sending.append((n, item, f"{obj} {key}"))
    if not subrequests:
        return
    answers = {a.reference_id: a for a in client.composite(subrequests, all_or_none=False)}
    result.calls += 1
    for n, item, what in sending:
        answer = answers.get(f"upsert{n}")
        if answer is not None and answer.success:
            record_id = answer.body.get("id") if isinstance(answer.body, dict) else item.account_id
            item.outcome = Settlement(item.row.id, Outcome.DONE, None, result=record_id)
            result.sent += 1
            continue
        code, message = answer_error(answer.body if answer else None, answer.status if answer else 0)
        transient = answer is None or code in RETRYABLE_CODES or answer.status >= 500
        item.outcome = Settlement(item.row.id, Outcome.TRANSIENT if transient else Outcome.FAILED,
                                  f"{what}: {code}: {message}")
