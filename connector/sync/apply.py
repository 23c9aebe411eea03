"""CRM command → engine service: what a mapped Salesforce record does to the billing engine.

``apply_command(session, command, object_name=...)`` takes the output of
``mappings.apply_inbound`` (``{"command", "key", "data"}``) and calls the engine service
inside the caller's transaction (the caller commits or rolls back). Pull, preview and
webhook processing all go through it, so a record means the same thing whichever way it
arrives. It is idempotent: a command identical to the one last applied for that record
changes nothing (``sync_records`` keeps a hash of it).

Engine ids are derived from Salesforce ids, so nothing is created twice:

- customer: the one whose ``salesforce_account_id`` is the Account Id, else ``cus-<AccountId>``;
- product: ``prod-<Product2Id>``; price: ``price-<PricebookEntryId>`` (a price joins the
  PricebookEntry with its product's pricing model, charge type and interval);
- subscription: ``sub-<OpportunityId>`` with ``external_key`` = the Opportunity Id; its items
  are ``item_id`` = the line's Salesforce Id.

Subscriptions:

- ``start_subscription`` is applied once: a won deal whose subscription exists is
  ``unchanged``; a won deal changed after its subscription was started is **flagged for
  review**, never re-applied (changes are Amendment opportunities).
- ``amend_subscription``: each line names a product and its new quantity on the
  subscription from ``starts_on``: a product not on the subscription is added, a
  different quantity changes it, quantity 0 removes it, and a contract price (UnitPrice
  ≠ ListPrice) that differs from the item's current one reprices it. Products not on the
  deal are left alone. Amendment ids are ``<OpportunityId>-<n>``.
- ``renew_subscription`` / ``cancel_subscription`` record one amendment with id
  ``<OpportunityId>`` (cancellation at the end of the term unless ``immediate``).

A missing dependency (the Account, a product's price in the deal's currency, or the won
deal whose ``sub-<OpportunityId>`` an amendment, renewal or cancellation references, not
pulled yet) raises ``MissingDependencyError``: the pull fetches it by Id and applies the
record again, or records it and retries later.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlmodel import Session, select

from billing_engine.catalog import Price, Product, make_price
from billing_engine.customers import Address, Customer
from billing_engine.errors import BillingError, NotFoundError
from billing_engine.subscriptions import (
    Amendment,
    AmendmentAction,
    Subscription,
    SubscriptionItem,
    make_subscription,
)
from billing_engine.tax import EU_COUNTRIES, ProductTax, TaxCategory
from billing_engine.use_cases import catalog as catalog_uc
from billing_engine.use_cases import customers as customers_uc
from billing_engine.use_cases import subscriptions as subscriptions_uc
from connector.sync.review import changed_summary, raise_review_flag
from connector.sync.tables import SyncedRecord

APPLIED, UNCHANGED, FLAGGED = "applied", "unchanged", "flagged"
SUBSCRIPTION_COMMANDS = ("start_subscription", "amend_subscription", "renew_subscription", "cancel_subscription")
_UNIT_PRICE_MODELS = ("flat", "per_unit", "package", "allowance")  # where PricebookEntry.UnitPrice is the price


class ApplyError(Exception):
    """A command the engine cannot apply as it stands; ``str()`` is the reason for people."""


class MissingDependencyError(ApplyError):
    """Something the command needs has not been pulled yet (retry after it is).

    ``object_name`` is the Salesforce object to pull, ``reference`` what is missing (an Id, or
    ``LIC in EUR`` for a price).
    """

    def __init__(self, object_name: str, reference: str, reason: str):
        self.object_name = object_name
        self.reference = reference
        super().__init__(reason)


@dataclass(frozen=True)
class ApplyResult:
    status: str  # APPLIED, UNCHANGED or FLAGGED
    engine_id: str | None
    message: str  # e.g. "created customer cus-001…", "unchanged"


# ------------------------------------------------------------------ plumbing


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def command_json(command: Mapping[str, Any]) -> str:
    """Canonical JSON of a command: sorted keys, exact decimals as strings, ISO dates."""
    return json.dumps(_plain(command), sort_keys=True, separators=(",", ":"))


def command_hash(command: Mapping[str, Any]) -> str:
    return hashlib.sha256(command_json(command).encode()).hexdigest()


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now


def find_synced(session: Session, object_name: str, record_id: str) -> SyncedRecord | None:
    return session.get(SyncedRecord, (object_name, record_id))


def _remember(session: Session, object_name: str, command: Mapping[str, Any], engine_id: str | None,
              modstamp: datetime | None, now: datetime, parent_id: str | None = None) -> None:
    record = find_synced(session, object_name, command["key"])
    if record is None:
        record = SyncedRecord(object_name=object_name, record_id=command["key"], command=command["command"],
                              command_hash="", command_json="", applied_at=now)
    record.command = command["command"]
    record.command_hash = command_hash(command)
    record.command_json = command_json(command)
    record.engine_id = engine_id
    record.parent_id = parent_id
    if modstamp is not None and (record.modstamp is None or modstamp > record.modstamp):
        record.modstamp = modstamp
    record.state = "applied"
    record.applied_at = now
    session.add(record)
    session.flush()


# ------------------------------------------------------------------ the use case


def apply_command(session: Session, command: Mapping[str, Any], *, object_name: str,
                  modstamp: datetime | None = None, now: datetime | None = None,
                  seller_country: str | None = None) -> ApplyResult:
    """Apply one mapped record to the engine inside the caller's transaction.

    ``object_name`` is the Salesforce object the record came from; ``modstamp`` its
    SystemModstamp (kept so a later pull of the same version skips it); ``seller_country``
    (``SELLER_COUNTRY``): a French seller's products must carry a VAT category. Raises
    ``MissingDependencyError``, ``ApplyError`` or the engine's ``BillingError`` (with the
    field and the reason); nothing is written then, as long as the caller rolls back.
    """
    now = _now(now)
    name = command.get("command")
    key = command.get("key")
    if not isinstance(key, str) or not key:
        raise ApplyError("the command has no key (the record's Id)")
    handler = _HANDLERS.get(name)
    if handler is None:
        raise ApplyError(f"unknown engine command {name!r}")
    command, hints = _without_hints(command)
    synced = find_synced(session, object_name, key)
    if synced is not None and synced.command_hash == command_hash(command):
        if modstamp is not None and (synced.modstamp is None or modstamp > synced.modstamp):
            synced.modstamp = modstamp
        synced.state = "applied"  # it is live and matches the mapping again
        session.add(synced)
        return ApplyResult(UNCHANGED, synced.engine_id, "unchanged")
    if handler is _upsert_product:
        return _upsert_product(session, command, object_name, synced, modstamp, now, seller_country)
    if handler is _upsert_customer or handler is _start_subscription:
        return handler(session, command, object_name, synced, modstamp, now, hints)
    return handler(session, command, object_name, synced, modstamp, now)


#: Keys that name the billsync record a Salesforce record was written for (a self-service
#: checkout's Account and Opportunity): they say which record it is, not what it holds, so they
#: are not part of the command that is compared and remembered.
HINT_KEYS = ("customer_id", "billsync_subscription_id")


def _without_hints(command: Mapping[str, Any]) -> tuple[Mapping[str, Any], dict[str, Any]]:
    data = command.get("data") or {}
    hints = {k: data[k] for k in HINT_KEYS if data.get(k)}
    if not any(k in data for k in HINT_KEYS):
        return command, hints
    return {**command, "data": {k: v for k, v in data.items() if k not in HINT_KEYS}}, hints


# ------------------------------------------------------------------ customers

_COUNTRIES = {
    "afghanistan": "AF", "argentina": "AR", "australia": "AU", "austria": "AT", "belgium": "BE",
    "brazil": "BR", "bulgaria": "BG", "canada": "CA", "chile": "CL", "china": "CN", "colombia": "CO",
    "croatia": "HR", "cyprus": "CY", "czech republic": "CZ", "czechia": "CZ", "denmark": "DK",
    "egypt": "EG", "estonia": "EE", "finland": "FI", "france": "FR", "germany": "DE", "greece": "GR",
    "hong kong": "HK", "hungary": "HU", "iceland": "IS", "india": "IN", "indonesia": "ID", "ireland": "IE",
    "israel": "IL", "italy": "IT", "japan": "JP", "latvia": "LV", "liechtenstein": "LI", "lithuania": "LT",
    "luxembourg": "LU", "malaysia": "MY", "malta": "MT", "mexico": "MX", "monaco": "MC", "morocco": "MA",
    "netherlands": "NL", "the netherlands": "NL", "new zealand": "NZ", "nigeria": "NG", "norway": "NO",
    "peru": "PE", "philippines": "PH", "poland": "PL", "portugal": "PT", "romania": "RO",
    "saudi arabia": "SA", "singapore": "SG", "slovakia": "SK", "slovenia": "SI", "south africa": "ZA",
    "south korea": "KR", "korea": "KR", "spain": "ES", "sweden": "SE", "switzerland": "CH", "taiwan": "TW",
    "thailand": "TH", "turkey": "TR", "türkiye": "TR", "ukraine": "UA", "united arab emirates": "AE",
    "united kingdom": "GB", "uk": "GB", "great britain": "GB", "united states": "US",
    "united states of america": "US", "usa": "US", "us": "US", "vietnam": "VN",
}


def country_code(value: str | None) -> str:
    """An ISO 3166 alpha-2 code from a BillingCountry (a code, or a common English name)."""
    if not value:
        return ""
    text = value.strip()
    if len(text) == 2 and text.isalpha():
        return text.upper()
    code = _COUNTRIES.get(text.lower())
    if code is None:
        raise ApplyError(f"billing_address.country: {text!r} is neither an ISO 3166 code nor a country "
                         "billsync knows by name; use the two-letter code (e.g. FR)")
    return code


_VAT_PROBLEMS = {
    "InvalidChecksum": "its check digits are wrong",
    "InvalidLength": "it has the wrong number of characters",
    "InvalidFormat": "it is not in the format of its country's VAT numbers",
    "InvalidComponent": "it does not start with an EU country code (FR, DE, …)",
}


def vat_number(value: str | None, country: str) -> str | None:
    """The customer's VAT number, checked (format and check digits, python-stdnum) when it is an EU one
    (an EU country prefix, or a customer in the EU), in its compact form; another country's tax
    number is kept as written. A bad one is refused with the reason."""
    from stdnum import exceptions
    from stdnum.eu import vat

    if not value or not value.strip():
        return None
    text = value.strip()
    prefix = text[:2].upper()
    if prefix not in EU_COUNTRIES | {"EL"} and country not in EU_COUNTRIES:
        return text
    try:
        return str(vat.validate(text))
    except exceptions.ValidationError as exc:
        reason = _VAT_PROBLEMS.get(type(exc).__name__, str(exc))
        raise ApplyError(f"vat_id: {text!r} is not a valid VAT number: {reason}") from None


def customer_from(data: Mapping[str, Any], customer_id: str) -> Customer:
    address = data.get("billing_address") or {}
    street = (address.get("street") or "").splitlines()
    country = country_code(address.get("country"))
    return Customer(
        customer_id=customer_id, name=data.get("name") or "", currency=data.get("currency") or "",
        timezone=data.get("timezone") or "UTC",
        billing_address=Address(line1=street[0].strip() if street else "",
                                line2=", ".join(s.strip() for s in street[1:] if s.strip()),
                                city=address.get("city") or "", postal_code=address.get("postal_code") or "",
                                region=address.get("state") or "", country=country),
        payment_terms_days=30 if data.get("payment_terms_days") is None else data["payment_terms_days"],
        tax_rate_percent=data.get("tax_rate"), tax_exempt_reason=data.get("tax_exempt_reason"),
        vat_id=vat_number(data.get("vat_id"), country),
        salesforce_account_id=data.get("salesforce_account_id") or None, language=data.get("language") or None,
    )


def _upsert_customer(session, command, object_name, synced, modstamp, now, hints=None) -> ApplyResult:
    data = command["data"]
    account_id = data.get("salesforce_account_id") or command["key"]
    existing = customers_uc.find_customer_by_salesforce_id(session, account_id)
    if existing is None and (hints or {}).get("customer_id"):
        # An Account billsync wrote for a customer of its own (a self-service checkout): that customer.
        written_for = customers_uc.find_customer(session, hints["customer_id"])
        if written_for is not None and not written_for.salesforce_account_id:
            existing = written_for
    customer_id = existing.customer_id if existing else f"cus-{account_id}"
    customer = customer_from({**data, "salesforce_account_id": account_id}, customer_id)
    customers_uc.upsert_customer(session, customer)
    _remember(session, object_name, command, customer_id, modstamp, now)
    customers_uc.request_customer_summary(session, customer_id, now=now)
    return ApplyResult(APPLIED, customer_id, f"{'updated' if existing else 'created'} customer {customer_id}")


# ------------------------------------------------------------------ catalog


def product_id_for(salesforce_product_id: str) -> str:
    return f"prod-{salesforce_product_id}"


def price_from(product: Product, product_data: Mapping[str, Any], price_data: Mapping[str, Any],
               price_id: str) -> Price:
    """The engine price: the PricebookEntry's amounts with its product's model, charge type and interval."""
    model = product_data.get("pricing_model")
    charge_type = product_data.get("charge_type") or "recurring"
    interval = product_data.get("interval")
    if charge_type != "one_time" and interval is None:
        raise ApplyError(f"Product2 {product.code}: Billing_Interval__c is empty, but a {charge_type} product "
                         "needs an interval (week, month, quarter, year)")
    uses_unit_price = model in _UNIT_PRICE_MODELS
    return make_price(
        price_id, product, currency=price_data.get("currency") or "", model=model, charge_type=charge_type,
        interval=None if charge_type == "one_time" else interval,
        unit_price=price_data.get("unit_price") if uses_unit_price else None,
        tiers=price_data.get("tiers") or (), package_size=product_data.get("package_size"),
        included_units=product_data.get("included_units"), overage_unit_price=price_data.get("overage_price"),
        percent=product_data.get("percent"), covered_product_codes=product_data.get("percent_of_products") or (),
    )


def _product_command(session: Session, salesforce_product_id: str) -> Mapping[str, Any] | None:
    record = find_synced(session, "Product2", salesforce_product_id)
    if record is None or record.command != "upsert_product":
        return None
    return json.loads(record.command_json, parse_float=Decimal)


def _decimals(data: Mapping[str, Any]) -> dict[str, Any]:
    """Stored command data back to exact values (JSON keeps decimals as strings)."""
    out = dict(data)
    for name in ("package_size", "included_units", "percent", "unit_price", "overage_price", "tax_rate"):
        if isinstance(out.get(name), str):
            out[name] = Decimal(out[name])
    if isinstance(out.get("package_size"), Decimal) and out["package_size"] == out["package_size"].to_integral():
        out["package_size"] = int(out["package_size"])
    return out


def product_tax_from(data: Mapping[str, Any], seller_country: str | None = None) -> ProductTax:
    """A product's VAT from its record; a French seller's products must have a category."""
    category = data.get("tax_category")
    if not category and seller_country == "FR":
        raise ApplyError(f"tax_category: product {data.get('code')} has no VAT category (Tax_Category__c); a "
                         "French invoice needs the category of every line (standard, reduced, zero, exempt, "
                         "reverse_charge, out_of_scope)")
    tax = ProductTax(TaxCategory.parse(category) if category else None, data.get("tax_rate"),
                     data.get("tax_exemption_reason") or "")
    if tax.category is TaxCategory.REDUCED and not tax.percent:
        raise ApplyError(f"tax_rate: product {data.get('code')} has the reduced VAT category but no rate "
                         "(Tax_Rate__c, e.g. 5.5)")
    if tax.category is TaxCategory.EXEMPT and not tax.exemption_reason:
        raise ApplyError(f"tax_exemption_reason: product {data.get('code')} is exempt from VAT; say why "
                         "(Tax_Exemption_Reason__c, printed on the invoice)")
    return tax


def _upsert_product(session, command, object_name, synced, modstamp, now, seller_country=None) -> ApplyResult:
    data = command["data"]
    salesforce_id = data.get("salesforce_product_id") or command["key"]
    product_id = product_id_for(salesforce_id)
    existed = catalog_uc.find_product(session, product_id) is not None
    product = Product(product_id, data.get("code") or "", data.get("name") or "", salesforce_id,
                      True if data.get("active") is None else bool(data["active"]),
                      product_tax_from(data, seller_country), bool(data.get("self_service")))
    catalog_uc.upsert_product(session, product)
    _remember(session, object_name, command, product_id, modstamp, now)
    # Its prices carry the product's model, charge type and interval: derive them again.
    repriced = 0
    for price_record in session.exec(select(SyncedRecord).where(SyncedRecord.object_name == "PricebookEntry",
                                                                SyncedRecord.parent_id == salesforce_id)).all():
        price_data = _decimals(json.loads(price_record.command_json)["data"])
        catalog_uc.upsert_price(session, price_from(product, data, price_data, price_record.engine_id))
        repriced += 1
    verb = "updated" if existed else "created"
    extra = f" and re-derived {repriced} price(s)" if repriced else ""
    return ApplyResult(APPLIED, product_id, f"{verb} product {product_id} ({product.code}){extra}")


def _upsert_price(session, command, object_name, synced, modstamp, now) -> ApplyResult:
    data = command["data"]
    salesforce_product_id = data.get("salesforce_product_id")
    if not salesforce_product_id:
        raise ApplyError("salesforce_product_id is empty: a price needs its Product2")
    product_command = _product_command(session, salesforce_product_id)
    if product_command is None:
        raise MissingDependencyError("Product2", salesforce_product_id,
                                     f"product {data.get('product_code')} (Product2 {salesforce_product_id}) "
                                     "has not been pulled yet; it will be retried after the product")
    product_data = _decimals(product_command["data"])
    product = catalog_uc.get_product(session, product_id_for(salesforce_product_id))
    price_id = f"price-{command['key']}"
    existed = catalog_uc.find_price(session, price_id) is not None
    catalog_uc.upsert_price(session, price_from(product, product_data, data, price_id))
    _remember(session, object_name, command, price_id, modstamp, now, parent_id=salesforce_product_id)
    return ApplyResult(APPLIED, price_id, f"{'updated' if existed else 'created'} price {price_id} "
                                          f"({product.code} in {data.get('currency')})")


def find_price(session: Session, product_code: str, currency: str) -> Price | None:
    """The catalog price of a product in a currency (the recurring one first)."""
    return catalog_uc.find_price_of_product(session, product_code, currency)


# ------------------------------------------------------------------ subscriptions


def subscription_id_for(opportunity_id: str) -> str:
    return f"sub-{opportunity_id}"


def _customer_for(session: Session, data: Mapping[str, Any]) -> Customer:
    account_id = data.get("salesforce_account_id")
    customer = customers_uc.find_customer_by_salesforce_id(session, account_id) if account_id else None
    if customer is None:
        raise MissingDependencyError("Account", account_id or "",
                                     f"Account {account_id} has no billsync customer yet (not pulled, or it "
                                     "failed: see its error); the deal will be retried after it")
    return customer


def _price_for(session: Session, item: Mapping[str, Any], currency: str) -> Price:
    code = item.get("product_code")
    price = find_price(session, code, currency)
    if price is None:
        raise MissingDependencyError("PricebookEntry", f"{code} in {currency}",
                                     f"line {item.get('salesforce_line_id')}: product {code} has no price in "
                                     f"{currency} yet (its Product2 and standard PricebookEntry are not pulled, "
                                     "or failed)")
    return price


def _contract_price(item: Mapping[str, Any], price: Price) -> Decimal | None:
    """The line's UnitPrice when it differs from the list price (a negotiated contract price)."""
    unit_price = item.get("unit_price")
    if unit_price is None:
        return None
    reference = item.get("list_price")
    if reference is None:
        reference = price.terms.unit_price if price.terms.unit_price is not None else Decimal(0)
    return None if unit_price == reference else unit_price


def item_from(item: Mapping[str, Any], price: Price) -> SubscriptionItem:
    discount_percent = item.get("discount_percent") or None  # a 0 % discount is no discount
    discount_amount = item.get("discount_amount") or None
    return SubscriptionItem(item_id=item.get("salesforce_line_id") or "", price=price,
                            quantity=item.get("quantity") if item.get("quantity") is not None else Decimal(1),
                            contract_unit_price=_contract_price(item, price),
                            discount_percent=discount_percent, discount_amount=discount_amount)


def subscription_from(session: Session, command: Mapping[str, Any], customer: Customer) -> Subscription:
    data = command["data"]
    currency = data.get("currency") or customer.currency
    items = [item_from(item, _price_for(session, item, currency)) for item in data.get("items") or []]
    if not items:
        raise ApplyError("the deal has no line items (no synced quote lines and no opportunity products)")
    term = data.get("term_months")
    evergreen = term == 0
    return make_subscription(
        subscription_id_for(command["key"]), customer.customer_id, currency, data.get("starts_on"), items,
        billing_anchor_day=data.get("anchor_day"), term_months=None if evergreen else (term or 12),
        auto_renew=True if evergreen else (True if data.get("auto_renew") is None else bool(data["auto_renew"])),
        renewal_uplift_percent=data.get("renewal_uplift") or 0, minimum_amount=data.get("minimum_commitment"),
        external_key=command["key"], bills_from=_bills_from(data.get("billed_through")),
        purchase_order=data.get("purchase_order") or "", buyer_reference=data.get("buyer_reference") or "",
        attributes=data.get("attributes"),
    )


def _bills_from(billed_through: date | None) -> date | None:
    """Billed_Through__c is the last day already billed outside billsync (inclusive): billsync bills
    from the day after."""
    return None if billed_through is None else billed_through + timedelta(days=1)


def _changed_after_apply(session, command, object_name, synced, modstamp, now, engine_id: str) -> ApplyResult:
    reason = (f"the won deal changed in Salesforce after billsync applied it ({command['command']} → "
              f"{engine_id}); billsync does not re-apply a won deal: record the change as an Amendment "
              "opportunity, or correct the subscription by hand")
    before = json.loads(synced.command_json) if synced is not None and synced.command_json else None
    raise_review_flag(session, object_name, command["key"], "changed", reason, engine_id, now,
                      summary=changed_summary(before, command, engine_id))
    _remember(session, object_name, command, engine_id, modstamp, now)
    return ApplyResult(FLAGGED, engine_id, reason)


def _start_subscription(session, command, object_name, synced, modstamp, now, hints=None) -> ApplyResult:
    opportunity_id = command["key"]
    existing = subscriptions_uc.find_subscription_id_by_key(session, opportunity_id)
    if existing is None and (hints or {}).get("billsync_subscription_id"):
        # A won deal billsync wrote for a subscription of its own (a self-service checkout): that one.
        adopted = _adopt_written_deal(session, hints["billsync_subscription_id"], command, now)
        if adopted is not None:
            _remember(session, object_name, command, adopted, modstamp, now)
            return ApplyResult(UNCHANGED, adopted, f"subscription {adopted} already exists (written by billsync)")
    if synced is not None and existing is not None:
        return _changed_after_apply(session, command, object_name, synced, modstamp, now, existing)
    if existing is not None:  # applied before, e.g. by another path: adopt it
        _remember(session, object_name, command, existing, modstamp, now)
        return ApplyResult(UNCHANGED, existing, f"subscription {existing} already exists")
    customer = _customer_for(session, command["data"])
    subscription = subscription_from(session, command, customer)
    # The engine announces it: subscription.created (with the Opportunity id) and the Account summary.
    subscriptions_uc.start_subscription(session, subscription, now=now)
    _remember(session, object_name, command, subscription.subscription_id, modstamp, now)
    return ApplyResult(APPLIED, subscription.subscription_id,
                       f"started subscription {subscription.subscription_id} for customer {customer.customer_id} "
                       f"({len(subscription.items)} items, from {subscription.starts_on.isoformat()})")


def _adopt_written_deal(session: Session, subscription_id: str, command: Mapping[str, Any],
                        now: datetime) -> str | None:
    """The subscription a deal written by billsync names, linked to the deal (None when there is no
    such subscription, or it belongs to another deal or another Account's customer)."""
    try:
        subscription = subscriptions_uc.get_subscription(session, subscription_id)
    except NotFoundError:
        return None
    if subscription.external_key not in (None, "", command["key"]):
        return None
    customer = _customer_for(session, command["data"])
    if subscription.customer_id != customer.customer_id:
        return None
    subscriptions_uc.link_subscription_to_deal(session, subscription_id, command["key"], now=now)
    return subscription_id


def _subscription_changed(session: Session, subscription_id: str, opportunity_id: str, customer_id: str,
                          now: datetime) -> None:
    subscriptions_uc.announce_subscription_change(session, subscription_id, customer_id=customer_id,
                                                  opportunity_id=opportunity_id, now=now)


def _referenced(session: Session, command: Mapping[str, Any]) -> tuple[Subscription, Customer]:
    data = command["data"]
    reference = data.get("subscription_reference")
    if not reference:
        raise ApplyError(f"Subscription_Reference__c is empty: {command['command']} needs the billsync "
                         "subscription id")
    try:
        subscription = subscriptions_uc.get_subscription(session, reference)
    except NotFoundError:
        deal = _deal_of(reference)
        if deal is not None:  # the deal it names may just not be applied yet: the caller may pull it first
            raise MissingDependencyError(
                "Opportunity", deal, f"Subscription_Reference__c: no billsync subscription {reference!r} (the "
                f"deal {deal} it names is not a won deal billsync has applied)") from None
        raise ApplyError(f"Subscription_Reference__c: no billsync subscription {reference!r}") from None
    customer = _customer_for(session, data)
    if subscription.customer_id != customer.customer_id:
        raise ApplyError(f"Subscription_Reference__c: subscription {reference} belongs to customer "
                         f"{subscription.customer_id}, not to this deal's account ({customer.customer_id})")
    return subscription, customer


def _deal_of(reference: str) -> str | None:
    """The Opportunity id in a subscription id billsync derived from a deal (``sub-<OpportunityId>``)."""
    prefix = subscription_id_for("")
    deal = reference[len(prefix):] if reference.startswith(prefix) else ""
    if deal.startswith("006") and len(deal) in (15, 18) and deal.isalnum():
        return deal
    return None


def decimals_of(line: Mapping[str, Any]) -> dict[str, Any]:
    """A stored command's line back to exact values (JSON keeps decimals as strings)."""
    out = dict(line)
    for name in ("quantity", "unit_price", "list_price", "discount_percent", "discount_amount"):
        if isinstance(out.get(name), str):
            out[name] = Decimal(out[name])
    return out


def _already_recorded(subscription: Subscription, opportunity_id: str) -> bool:
    return any(a.amendment_id == opportunity_id or a.amendment_id.startswith(opportunity_id + "-")
               for a in subscription.amendments)


def amendment_actions(subscription: Subscription, command: Mapping[str, Any],
                      price_of: Any) -> list[Amendment]:
    """The engine amendments an Amendment deal's lines ask for (see the module docstring)."""
    data = command["data"]
    effective_on = data.get("starts_on")
    version = subscription.version_on(effective_on) if effective_on else None
    if version is None:
        raise ApplyError(f"starts_on: the subscription {subscription.subscription_id} is not active on "
                         f"{effective_on} (it runs from {subscription.starts_on.isoformat()}"
                         + (f" to {subscription.ends_before.isoformat()})" if subscription.ends_before else ")"))
    current = dict(version.items)
    actions: list[Amendment] = []
    reason = f"Salesforce opportunity {command['key']}"

    def add(action: AmendmentAction, **kw: Any) -> None:
        actions.append(Amendment(f"{command['key']}-{len(actions) + 1}", 0, action, effective_on,
                                 reason=reason, **kw))

    for line in data.get("items") or []:
        code = line.get("product_code")
        quantity = line.get("quantity")
        match = current.get(line.get("salesforce_line_id")) or next(
            (item for item in current.values() if item.price.product.code == code), None)
        if match is None:
            if quantity:
                price = price_of(line)
                add(AmendmentAction.ADD_ITEM, item=item_from(line, price))
            continue
        if quantity is not None and quantity == 0:
            add(AmendmentAction.REMOVE_ITEM, item_id=match.item_id)
            del current[match.item_id]
            continue
        if quantity is not None and quantity != match.quantity:
            add(AmendmentAction.CHANGE_QUANTITY, item_id=match.item_id, quantity=quantity)
        contract = _contract_price(line, match.price)
        if contract is not None and contract != (match.contract_unit_price
                                                 if match.contract_unit_price is not None
                                                 else match.price.terms.unit_price):
            add(AmendmentAction.CHANGE_PRICE, item_id=match.item_id, unit_price=contract)
    return actions


def _when_already_recorded(session, command, object_name, synced, modstamp, now, subscription,
                           what: str) -> ApplyResult | None:
    """A deal that already changed this subscription is applied once: later edits are flagged."""
    if not _already_recorded(subscription, command["key"]):
        return None
    if synced is not None:
        return _changed_after_apply(session, command, object_name, synced, modstamp, now,
                                    subscription.subscription_id)
    _remember(session, object_name, command, subscription.subscription_id, modstamp, now)
    return ApplyResult(UNCHANGED, subscription.subscription_id, f"{what} already recorded")


def _amend_subscription(session, command, object_name, synced, modstamp, now) -> ApplyResult:
    subscription, customer = _referenced(session, command)
    opportunity_id = command["key"]
    done = _when_already_recorded(session, command, object_name, synced, modstamp, now, subscription, "amendment")
    if done is not None:
        return done
    currency = subscription.currency
    actions = amendment_actions(subscription, command, lambda line: _price_for(session, line, currency))
    for amendment in actions:
        subscriptions_uc.amend_subscription(session, subscription.subscription_id, amendment)
    subscriptions_uc.update_subscription_attributes(session, subscription.subscription_id,
                                                    command["data"].get("attributes"))
    _remember(session, object_name, command, subscription.subscription_id, modstamp, now)
    if actions:
        _subscription_changed(session, subscription.subscription_id, opportunity_id, customer.customer_id, now)
    summary = ", ".join(_describe_amendment(a) for a in actions) or "nothing to change"
    return ApplyResult(APPLIED, subscription.subscription_id,
                       f"amended subscription {subscription.subscription_id} from "
                       f"{command['data'].get('starts_on')}: {summary}")


def _describe_amendment(amendment: Amendment) -> str:
    if amendment.action is AmendmentAction.ADD_ITEM:
        item = amendment.item
        return f"add {item.price.product.code} × {item.quantity}"
    if amendment.action is AmendmentAction.CHANGE_QUANTITY:
        return f"quantity of {amendment.item_id} → {amendment.quantity}"
    if amendment.action is AmendmentAction.CHANGE_PRICE:
        return f"price of {amendment.item_id} → {amendment.unit_price}"
    return f"{amendment.action.value} {amendment.item_id}"


def _renew_subscription(session, command, object_name, synced, modstamp, now) -> ApplyResult:
    subscription, customer = _referenced(session, command)
    opportunity_id = command["key"]
    done = _when_already_recorded(session, command, object_name, synced, modstamp, now, subscription, "renewal")
    if done is not None:
        return done
    renewed = subscriptions_uc.renew_subscription(session, subscription.subscription_id, amendment_id=opportunity_id,
                                     reason=f"Salesforce opportunity {opportunity_id}")
    subscriptions_uc.update_subscription_attributes(session, subscription.subscription_id,
                                                    command["data"].get("attributes"))
    _remember(session, object_name, command, subscription.subscription_id, modstamp, now)
    _subscription_changed(session, subscription.subscription_id, opportunity_id, customer.customer_id, now)
    end = renewed.ends_before.isoformat() if renewed.ends_before else "open-ended"
    return ApplyResult(APPLIED, subscription.subscription_id,
                       f"renewed subscription {subscription.subscription_id} (now ends before {end})")


def _cancel_subscription(session, command, object_name, synced, modstamp, now) -> ApplyResult:
    subscription, customer = _referenced(session, command)
    opportunity_id = command["key"]
    done = _when_already_recorded(session, command, object_name, synced, modstamp, now, subscription, "cancellation")
    if done is not None:
        return done
    data = command["data"]
    immediate = data.get("cancellation_mode") == "immediate"
    cancelled = subscriptions_uc.cancel_subscription(session, subscription.subscription_id, data.get("starts_on"),
                                        immediate=immediate, amendment_id=opportunity_id,
                                        reason=f"Salesforce opportunity {opportunity_id}")
    _remember(session, object_name, command, subscription.subscription_id, modstamp, now)
    _subscription_changed(session, subscription.subscription_id, opportunity_id, customer.customer_id, now)
    return ApplyResult(APPLIED, subscription.subscription_id,
                       f"cancelled subscription {subscription.subscription_id} "
                       f"({'immediately' if immediate else 'at the end of the term'}; ends before "
                       f"{cancelled.ends_before.isoformat() if cancelled.ends_before else '?'})")


_HANDLERS = {
    "upsert_customer": _upsert_customer,
    "upsert_product": _upsert_product,
    "upsert_price": _upsert_price,
    "start_subscription": _start_subscription,
    "amend_subscription": _amend_subscription,
    "renew_subscription": _renew_subscription,
    "cancel_subscription": _cancel_subscription,
}


def describe_failure(exc: BaseException) -> str:
    """One line (or a few, joined by '; ') saying why a record could not be applied."""
    if isinstance(exc, BillingError | ApplyError):
        return str(exc)
    errors = getattr(exc, "errors", None)  # mappings.InvalidRecordError
    if errors:
        return "; ".join(str(e) for e in errors)
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


__all__ = [
    "APPLIED", "FLAGGED", "UNCHANGED", "ApplyError", "ApplyResult", "MissingDependencyError", "amendment_actions",
    "apply_command", "command_hash", "command_json", "country_code", "customer_from", "decimals_of",
    "describe_failure",
    "find_price", "find_synced", "item_from", "price_from", "product_id_for", "raise_review_flag",
    "subscription_from", "subscription_id_for",
]
