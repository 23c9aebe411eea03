"""The contract between the mappings and the connector: engine commands and engine records.

Inbound specs produce *commands* (``{"command": ..., "key": ..., "data": {...}}``); the
data keys each command may carry are listed here, so ``load_specs`` catches a misspelled
engine key. Outbound specs read *engine records* (plain dicts the connector builds from
engine objects); their keys are listed here too. docs/mappings.md explains each key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class CommandContract:
    names: tuple[str, ...]  # the commands sharing this data shape
    data_keys: frozenset[str]  # dotted keys nest: billing_address.city → data["billing_address"]["city"]
    required_keys: frozenset[str] = frozenset()
    takes_attributes: bool = False  # the command carries an admin's custom attributes (``attributes:``)
    list_key: str | None = None  # the key line items go into
    item_keys: frozenset[str] = frozenset()
    required_item_keys: frozenset[str] = frozenset()


SUBSCRIPTION_COMMANDS = ("start_subscription", "amend_subscription", "renew_subscription", "cancel_subscription")

_CONTRACTS = [
    CommandContract(
        ("upsert_customer",),
        frozenset({
            "name", "currency", "timezone", "billing_address.street", "billing_address.city",
            "billing_address.state", "billing_address.postal_code", "billing_address.country",
            "payment_terms_days", "tax_rate", "tax_exempt_reason", "vat_id", "salesforce_account_id", "language",
            "customer_id",
        }),
        required_keys=frozenset({"name", "currency"}),
    ),
    CommandContract(
        ("upsert_product",),
        frozenset({
            "code", "name", "pricing_model", "charge_type", "interval", "package_size", "included_units",
            "percent", "percent_of_products", "unit_of_measure", "active", "salesforce_product_id",
            "tax_category", "tax_rate", "tax_exemption_reason", "self_service",
        }),
        required_keys=frozenset({"code", "name", "pricing_model"}),
    ),
    CommandContract(
        ("upsert_price",),
        frozenset({
            "salesforce_product_id", "product_code", "salesforce_pricebook_id", "currency", "unit_price",
            "tiers", "overage_price", "active",
        }),
        required_keys=frozenset({"product_code", "currency", "unit_price"}),
    ),
    CommandContract(
        SUBSCRIPTION_COMMANDS,
        frozenset({
            "salesforce_account_id", "salesforce_opportunity_id", "name", "subscription_reference",
            "starts_on", "term_months", "auto_renew", "anchor_day", "renewal_uplift", "minimum_commitment",
            "cancellation_mode", "currency", "billed_through", "purchase_order", "buyer_reference",
            "billsync_subscription_id",
        }),
        required_keys=frozenset({"salesforce_account_id", "starts_on"}),
        takes_attributes=True,
        list_key="items",
        item_keys=frozenset({
            "salesforce_line_id", "product_code", "salesforce_product_id", "quantity", "unit_price",
            "list_price", "discount_percent", "discount_amount", "service_date",
        }),
        required_item_keys=frozenset({"salesforce_line_id", "product_code", "quantity"}),
    ),
]

COMMANDS: dict[str, CommandContract] = {name: c for c in _CONTRACTS for name in c.names}

# Engine records the connector hands to apply_outbound, by kind (an outbound spec's ``source``).
ENGINE_RECORDS: dict[str, frozenset[str]] = {
    "invoice": frozenset({
        "id", "number", "status", "payment_status", "issued_on", "due_on", "period_starts_on",
        "period_ends_before", "currency", "subtotal", "discount", "tax", "total", "amount_paid", "amount_credited",
        "balance", "tax_note", "customer_id", "salesforce_account_id", "salesforce_opportunity_id",
        "dunning_step", "dunning_step_on", "purchase_order", "buyer_reference", "attributes",
    }),
    "invoice_line": frozenset({
        "id", "invoice_id", "product_code", "salesforce_product_id", "kind", "description", "explanation",
        "starts_on", "ends_before", "quantity", "unit_price", "discount", "amount", "tax_rate", "tax",
        "tax_category",
    }),
    "payment": frozenset({
        "id", "name", "salesforce_account_id", "first_invoice_id", "currency", "amount", "unapplied_amount",
        "paid_on", "method", "reference", "status",
    }),
    "refund": frozenset({
        "id", "name", "payment_id", "salesforce_account_id", "currency", "amount", "from_credit", "refunded_on",
        "reason",
    }),
    "credit_note": frozenset({
        "id", "number", "invoice_id", "customer_id", "salesforce_account_id", "currency", "issued_on", "reason",
        "net", "tax", "total", "applied_to_invoice", "to_credit_balance", "status",
    }),
    "credit_note_line": frozenset({
        "id", "credit_note_id", "invoice_line_id", "description", "amount", "tax_rate", "tax",
    }),
    "account_summary": frozenset({
        "salesforce_account_id", "customer_id", "currency", "mrr", "arr", "balance", "last_invoice_on",
        "billing_status", "billing_ends_on", "churn_risk", "churn_risk_reasons",
    }),
    # an invoice's or credit note's PDF, attached to its Invoice__c or Credit_Note__c (connector/documents/push.py)
    "document": frozenset({
        "id", "number", "kind", "title", "file_name", "pdf", "sha256", "description", "salesforce_record_id",
    }),
    "subscription_link": frozenset({"salesforce_opportunity_id", "subscription_id", "status", "ends_on"}),
    # a subscription as the CRM's subscription record shows it, and its current items
    "subscription": frozenset({
        "id", "subscription_id", "salesforce_account_id", "salesforce_opportunity_id", "currency", "status",
        "ends_on", "starts_on", "term_months", "auto_renew", "term_ends_on", "renews_on", "next_invoice_on",
        "mrr", "arr",
    }),
    "subscription_item": frozenset({
        "id", "subscription_key", "item_id", "product_code", "salesforce_product_id", "quantity",
        "pricing_model", "contract_price", "discount_percent", "currency",
    }),
    "deal_preview": frozenset({
        "salesforce_opportunity_id", "currency", "total", "mrr", "arr", "note", "lines", "previewed_at",
    }),
    # billsync's open reviews of a record: a checkbox and a plain-language reason (both cleared when resolved)
    "opportunity_review": frozenset({"salesforce_opportunity_id", "flagged", "reason"}),
    "account_review": frozenset({"salesforce_account_id", "flagged", "reason"}),
    # a change a customer made in the portal, recorded as a won deal (connector/portal/salesforce.py)
    "portal_change": frozenset({
        "id", "name", "kind", "salesforce_account_id", "subscription_id", "changed_on", "effective_on",
        "cancellation_mode", "mrr_change", "currency", "description",
    }),
    # a customer's message to sales from the portal, a task for the Account's owner
    "sales_request": frozenset({"id", "subject", "message", "salesforce_account_id", "owner_id", "sent_on"}),
    # billing details a customer edited in the portal, written back to the Account
    "billing_details": frozenset({"salesforce_account_id", "street", "city", "postal_code", "country", "vat_id"}),
}

# An admin's custom attributes (an inbound spec's ``attributes:``), carried from a deal to the
# subscription and its invoices; the engine enforces the same bounds (billing_engine/subscriptions.py).
MAX_ATTRIBUTES = 10
MAX_ATTRIBUTE_LENGTH = 255
MAX_ATTRIBUTE_LABEL = 40
ATTRIBUTE_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
ATTRIBUTE_LANGUAGES = ("en", "fr")  # the languages of invoice documents
ATTRIBUTE_TRANSFORMS = ("string", "picklist_map", "id18", "integer", "decimal", "date")
# Where an attribute goes in the Factur-X XML: a note (BT-22, subject code ACB), or the buyer
# accounting reference (BT-19), which one attribute at most may be.
EN16931_ROLES = ("note", "buyer_accounting_reference")
# An engine record key under which the record carries the attributes: ``attributes.<name>``.
ATTRIBUTES_KEY = "attributes"

# What a field's ``default_from`` may name: values the connector puts in the MappingContext.
CONTEXT_VALUES = ("org_timezone", "customer_timezone", "default_currency")
