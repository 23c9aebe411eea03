"""Deals billsync sold itself (a self-service checkout, docs/self-service.md): writing the Account,
the Closed Won Opportunity and its OpportunityLineItems in Salesforce, exactly once.

A ``subscription.sold_online`` outbox row (written with the order) is delivered here by the push
(``connector.sync.push``), one row at a time:

1. **The Account.** The customer's own Account when it has one; else the Account billsync created
   for this customer (found by its external id ``Billsync_Customer_Id__c`` = the customer id, so a
   retry finds it and leaves it as it is), else a new Account created with that external id. An
   order from the public form never takes an existing Account: one with the same VAT number, or
   the same name and a website in the contact's mail domain, is only named in the Opportunity's
   description as a possible duplicate (nothing of it is written).
2. **The Opportunity and its lines**, in one all-or-none composite call: the Opportunity upserted by
   its external id ``Billsync_Subscription_Id__c`` = the subscription id (``StageName`` Closed Won,
   ``Type`` New Business, ``LeadSource`` Self-Service), then each line the Opportunity does not
   have yet (looked up first by its PricebookEntry: Salesforce gives OpportunityLineItem no
   external id), with ``TotalPrice`` the line's price per period.
3. **The link**: the customer gets the Account, the subscription the Opportunity as its external
   key (``self_service.link_sold_deal``), so the pull knows that deal as this subscription. A link
   that cannot be recorded (the Account is another customer's) fails the row with the reason. Should
   the link not be recorded (a crash after the send), the pull still recognises both records by
   the billsync ids written on them (``connector.sync.apply``, ``HINT_KEYS``).

Outcomes per row: done (with the Opportunity's id), failed (Salesforce refused a record: retried
with backoff, then a dead letter), transient. A limit pause or an unavailable Salesforce stops the
delivery: the rows not sent are released or retried later.

Other deals billsync writes (the portal's plan changes) reuse ``write_deal``: give it the
Opportunity's fields and lines; it upserts by ``Billsync_Subscription_Id__c`` or any key given.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from simple_salesforce.format import format_external_id
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from billing_engine.customers import Customer
from billing_engine.errors import BillingError
from billing_engine.use_cases import self_service
from connector.queue import Outcome
from connector.salesforce.errors import (
    SalesforceAuthError,
    SalesforceError,
    SalesforceLimitError,
    SalesforceRetryableError,
)
from connector.salesforce.soql import build_soql
from connector.sync.outbox_claims import ClaimedRow, Settlement, unsent

log = logging.getLogger("billsync.push")

#: The Lead Source of every deal sold on the checkout (a value of Opportunity.LeadSource).
LEAD_SOURCE = "Self-Service"
#: Mail domains shared by many companies: no Account is a possible duplicate by them.
PUBLIC_MAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "hotmail.fr",
                                 "live.com", "yahoo.com", "yahoo.fr", "icloud.com", "me.com", "gmx.de", "gmx.net",
                                 "orange.fr", "free.fr", "laposte.net", "protonmail.com", "proton.me", "web.de"})


class DealError(Exception):
    """Salesforce refused a record of the deal; ``str()`` says which and why."""


@dataclass
class DealDelivery:
    settlements: list[Settlement] = field(default_factory=list)
    stop: SalesforceError | None = None
    sent: int = 0
    calls: int = 0


def deliver_sold_deals(client: Any, engine: Any, rows: Sequence[ClaimedRow], now: datetime) -> DealDelivery:
    """Write the Account, Opportunity and lines of these ``subscription.sold_online`` rows."""
    result = DealDelivery()
    for row in rows:
        if result.stop is not None:
            result.settlements.append(unsent(row, result.stop, now))
            continue
        try:
            opportunity_id = _deliver(client, engine, row, now, result)
        except (SalesforceLimitError, SalesforceRetryableError, SalesforceAuthError) as stop:
            result.stop = stop
            result.settlements.append(unsent(row, stop, now))
        except (DealError, SalesforceError, BillingError) as exc:
            log.warning("push: deal of %s not written: %s", row.aggregate_id, exc)
            result.settlements.append(Settlement(row.id, Outcome.FAILED, str(exc)))
        else:
            result.settlements.append(Settlement(row.id, Outcome.DONE, None, result=opportunity_id))
    return result


def _deliver(client: Any, engine: Any, row: ClaimedRow, now: datetime, result: DealDelivery) -> str:
    subscription_id = str(row.aggregate_id)
    with Session(engine) as session:
        deal = self_service.sold_deals(session, [subscription_id], now.date()).get(subscription_id)
        session.rollback()
    if deal is None:
        raise DealError(f"subscription {subscription_id} not found")
    contact = str(row.payload.get("contact_email") or "")
    customer = deal.customer
    account_id = customer.salesforce_account_id or _own_account(client, customer, result)
    duplicate = None if customer.salesforce_account_id else possible_duplicate(
        client, account_id, customer.name, customer.vat_id, contact, result)
    opportunity_id = write_deal(client, key_field="Billsync_Subscription_Id__c", key=subscription_id,
                                fields=opportunity_fields(deal, account_id, contact, duplicate),
                                lines=[line_fields(line) for line in deal.lines], result=result)
    try:
        with Session(engine) as session, session.begin():
            self_service.link_sold_deal(session, subscription_id, account_id=account_id,
                                        opportunity_id=opportunity_id, now=now)
    except IntegrityError as exc:  # the Account or the deal is another's: a database outage is raised as it is
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise DealError(f"Account {account_id} and Opportunity {opportunity_id} of {subscription_id} "
                        f"not linked: {reason}") from exc
    return opportunity_id


# ---------------------------------------------------------------- the Account


def _own_account(client: Any, customer: Customer, result: DealDelivery) -> str:
    """The Account billsync created for this customer (left as it is), else a new one."""
    by_key = build_soql("SELECT Id FROM Account WHERE Billsync_Customer_Id__c = {} LIMIT 1", customer.customer_id)
    found = _query_ids(client, by_key, result)
    if found:
        return found[0]
    fields = {"Name": customer.name, "CurrencyIsoCode": customer.currency,
              "BillingCountry": customer.billing_address.country or None, "VAT_Id__c": customer.vat_id,
              "Billing_Language__c": customer.language, "Type": "Customer - Direct"}
    upserted = client.upsert("Account", "Billsync_Customer_Id__c", customer.customer_id,
                             {k: v for k, v in fields.items() if v is not None})
    result.calls += 1
    result.sent += 1
    if upserted.id:
        return upserted.id
    found = _query_ids(client, by_key, result)
    if not found:
        raise DealError(f"Account {customer.customer_id}: Salesforce gave no id for it")
    return found[0]


def possible_duplicate(client: Any, account_id: str, name: str, vat_id: str | None, contact: str,
                       result: DealDelivery) -> str | None:
    """Another Account that may be this buyer's (it is only named, never written): the same VAT
    number, else the same name and a website in the contact's mail domain (public mail domains
    never match)."""
    if vat_id:
        found = _query_ids(client, build_soql("SELECT Id FROM Account WHERE VAT_Id__c = {} AND Id != {} "
                                              "ORDER BY CreatedDate LIMIT 1", vat_id, account_id), result)
        if found:
            return found[0]
    domain = contact.rpartition("@")[2].strip().lower()
    if domain and "." in domain and domain not in PUBLIC_MAIL_DOMAINS:
        pattern = "%" + domain.replace("\\", "").replace("%", "").replace("_", "\\_") + "%"
        found = _query_ids(client, build_soql("SELECT Id FROM Account WHERE Name = {} AND Website LIKE {} AND "
                                              "Id != {} ORDER BY CreatedDate LIMIT 1", name, pattern, account_id),
                           result)
        if found:
            return found[0]
    return None


def _query_ids(client: Any, soql: str, result: DealDelivery) -> list[str]:
    page = client.query_page(soql)
    result.calls += 1
    return [r["Id"] for r in page.get("records", [])]


# ---------------------------------------------------------------- the Opportunity and its lines


def opportunity_fields(deal: self_service.SoldDeal, account_id: str, contact: str,
                       duplicate: str | None = None) -> dict[str, Any]:
    products = ", ".join(line.product_name for line in deal.lines)
    description = f"Ordered online by {contact}" if contact else "Ordered online"
    if duplicate:
        description += f". Possible duplicate of Account {duplicate}"
    return {
        "Name": f"{deal.customer.name} – {products}"[:120], "AccountId": account_id, "StageName": "Closed Won",
        "CloseDate": deal.starts_on, "Type": "New Business", "LeadSource": LEAD_SOURCE,
        "CurrencyIsoCode": deal.currency, "Service_Start_Date__c": deal.starts_on, "Term_Months__c": 0,
        "Auto_Renew__c": True, "Description": description,
    }


def line_fields(line: self_service.SoldLine) -> dict[str, Any]:
    if not line.price_id.startswith("price-"):
        raise DealError(f"price {line.price_id} of {line.product_code} is not a Salesforce Price Book entry")
    return {"PricebookEntryId": line.price_id.removeprefix("price-"), "Quantity": line.quantity,
            "TotalPrice": line.amount}


def write_deal(client: Any, *, key_field: str, key: str, fields: Mapping[str, Any],
               lines: Sequence[Mapping[str, Any]], result: DealDelivery) -> str:
    """Upsert an Opportunity by ``key_field`` = ``key`` and add the lines (each with its
    ``PricebookEntryId``) it does not have yet, in one all-or-none composite call; returns its Id.
    Safe to repeat: the Opportunity is found by its key, and a line already there is not added."""
    page = client.query_page(build_soql("SELECT Id, (SELECT Id, PricebookEntryId FROM OpportunityLineItems) "
                                        "FROM Opportunity WHERE {:literal} = {} LIMIT 1", key_field, key))
    result.calls += 1
    records = page.get("records", [])
    have: set[str] = set()
    if records:
        children = (records[0].get("OpportunityLineItems") or {}).get("records") or []
        have = {str(c.get("PricebookEntryId") or "")[:15] for c in children}
    missing = [line for line in lines if str(line["PricebookEntryId"])[:15] not in have]
    base = f"/services/data/v{client.api_version}/sobjects"
    subrequests: list[dict[str, Any]] = [{
        "method": "PATCH", "referenceId": "deal", "url": f"{base}/Opportunity/{format_external_id(key_field, key)}",
        "body": dict(fields)}]
    opportunity_ref = records[0]["Id"] if records else "@{deal.id}"
    for n, line in enumerate(missing):
        subrequests.append({"method": "POST", "referenceId": f"line{n}", "url": f"{base}/OpportunityLineItem",
                            "body": {**line, "OpportunityId": opportunity_ref}})
    answers = client.composite(subrequests, all_or_none=True)
    result.calls += 1
    result.sent += len(subrequests)
    by_ref = {a.reference_id: a for a in answers}
    for sub in subrequests:
        answer = by_ref.get(sub["referenceId"])
        if answer is None or not (200 <= answer.status < 300):
            raise DealError(f"Opportunity {key}: {_why(answers)}")
    if records:
        return str(records[0]["Id"])
    body = by_ref["deal"].body
    if isinstance(body, dict) and body.get("id"):
        return str(body["id"])
    found = _query_ids(client, build_soql("SELECT Id FROM Opportunity WHERE {:literal} = {} LIMIT 1", key_field, key),
                       result)
    if not found:
        raise DealError(f"Opportunity {key}: Salesforce gave no id for it")
    return found[0]


def _why(answers: Sequence[Any]) -> str:
    for answer in answers:
        body = answer.body
        item = body[0] if isinstance(body, list) and body else body
        if isinstance(item, dict) and item.get("errorCode") and item.get("errorCode") != "PROCESSING_HALTED":
            return f"{item.get('errorCode')}: {item.get('message')}"
    return "refused by Salesforce"
