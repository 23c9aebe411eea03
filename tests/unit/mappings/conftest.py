"""An org describe built from docs/custom-objects.md and the standard fields of the objects billsync
reads: what the sandbox declares (docs/sandbox.md), in the shape of Salesforce's describe."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from mappings import MappingContext, load_specs


def f(name: str, type_: str, *, ext: bool = False, ro: bool = False, create_only: bool = False,
      ref: str | None = None, rel: str | None = None, values: tuple[str, ...] = (), scale: int | None = None,
      ) -> dict[str, Any]:
    field = {
        "name": name, "type": type_, "externalId": ext, "unique": ext, "nillable": True,
        "createable": not ro, "updateable": not ro and not create_only,
        "picklistValues": [{"value": v, "active": True} for v in values],
        "referenceTo": [ref] if ref else [], "relationshipName": rel,
    }
    if scale is not None:
        field["scale"] = scale
    return field


SYSTEM = [f("Id", "id", ro=True), f("SystemModstamp", "datetime", ro=True), f("CreatedDate", "datetime", ro=True),
          f("LastModifiedDate", "datetime", ro=True)]
CURRENCY = f("CurrencyIsoCode", "picklist", values=("EUR", "USD", "GBP", "JPY"))


def line_fields(parent: tuple[str, str, str]) -> list[dict[str, Any]]:
    return [
        f(parent[0], "reference", ref=parent[1], rel=parent[2], create_only=True),
        f("PricebookEntryId", "reference", ref="PricebookEntry", rel="PricebookEntry", create_only=True),
        f("Product2Id", "reference", ref="Product2", rel="Product2", create_only=True),
        f("Quantity", "double", scale=2), f("UnitPrice", "currency", scale=2), f("Discount", "percent", scale=2),
        f("ListPrice", "currency", ro=True), f("Subtotal", "currency", ro=True), f("TotalPrice", "currency", ro=True),
        f("ServiceDate", "date"), f("Description", "string"), f("SortOrder", "int"), CURRENCY,
        f("Discount_Amount__c", "currency", scale=2),
    ]


OBJECTS: dict[str, dict[str, Any]] = {
    "Account": {"fields": [
        f("Name", "string"), CURRENCY, f("Type", "picklist", values=("Prospect", "Customer")),
        f("BillingStreet", "textarea"), f("BillingCity", "string"), f("BillingState", "string"),
        f("BillingPostalCode", "string"), f("BillingCountry", "string"),
        f("Billsync_Customer_Id__c", "string", ext=True), f("Payment_Terms_Days__c", "double", scale=0),
        f("Tax_Rate__c", "percent", scale=3), f("Tax_Exempt_Reason__c", "string"), f("VAT_Id__c", "string"),
        f("Billing_Timezone__c", "string"), f("MRR__c", "currency", scale=2), f("ARR__c", "currency", scale=2),
        f("Balance__c", "currency", scale=2), f("Last_Invoice_Date__c", "date"),
        f("Billing_Status__c", "picklist", values=("active", "cancelling", "past_due", "cancelled", "none")),
        f("Billing_Ends_On__c", "date"), f("Churn_Risk__c", "double", scale=0), f("Churn_Risk_Reasons__c", "textarea"),
        f("Billing_Review_Flag__c", "boolean"), f("Billing_Review_Reason__c", "string"),
        f("Billing_Language__c", "picklist", values=("en", "fr")), f("Buyer_Reference__c", "string"),
    ]},
    "Product2": {"fields": [
        f("Name", "string"), f("ProductCode", "string"), f("IsActive", "boolean"), f("Description", "textarea"),
        f("Pricing_Model__c", "picklist",
          values=("flat", "per_unit", "graduated", "volume", "package", "allowance", "percent_of")),
        f("Charge_Type__c", "picklist", values=("recurring", "usage", "one_time")),
        f("Billing_Interval__c", "picklist", values=("week", "month", "quarter", "year")),
        f("Package_Size__c", "double", scale=0), f("Included_Units__c", "double", scale=6),
        f("Percent__c", "percent", scale=4), f("Percent_Of_Products__c", "string"), f("Unit_Of_Measure__c", "string"),
        f("Tax_Category__c", "picklist",
          values=("standard", "reduced", "zero", "exempt", "reverse_charge", "out_of_scope")),
        f("Tax_Rate__c", "percent", scale=3), f("Tax_Exemption_Reason__c", "string"),
        f("Self_Service__c", "boolean"),
    ]},
    "Pricebook2": {"fields": [f("Name", "string"), f("IsActive", "boolean"), f("IsStandard", "boolean", ro=True)]},
    "PricebookEntry": {"fields": [
        f("Pricebook2Id", "reference", ref="Pricebook2", rel="Pricebook2", create_only=True),
        f("Product2Id", "reference", ref="Product2", rel="Product2", create_only=True),
        f("UnitPrice", "currency", scale=2), f("IsActive", "boolean"), f("UseStandardPrice", "boolean"), CURRENCY,
        f("Name", "string", ro=True), f("ProductCode", "string", ro=True), f("Price_Tiers__c", "textarea"),
        f("Overage_Price__c", "currency", scale=6),
    ]},
    "Opportunity": {"fields": [
        f("Name", "string"), f("AccountId", "reference", ref="Account", rel="Account"),
        f("StageName", "picklist", values=("Prospecting", "Closed Won", "Closed Lost")), f("CloseDate", "date"),
        f("Amount", "currency"), f("IsWon", "boolean", ro=True), f("IsClosed", "boolean", ro=True),
        f("Type", "picklist", values=("New Business", "Amendment", "Renewal", "Cancellation")),
        f("Pricebook2Id", "reference", ref="Pricebook2", rel="Pricebook2"),
        f("SyncedQuoteId", "reference", ref="Quote", rel="SyncedQuote"), CURRENCY,
        f("Subscription_Reference__c", "string"), f("Billsync_Subscription_Id__c", "string", ext=True),
        f("Billsync_Subscription_Status__c", "picklist", values=("active", "cancelling", "cancelled", "past_due")),
        f("Billsync_Subscription_Ends_On__c", "date"),
        f("Service_Start_Date__c", "date"), f("Term_Months__c", "double", scale=0), f("Auto_Renew__c", "boolean"),
        f("Billing_Anchor_Day__c", "double", scale=0), f("Renewal_Uplift__c", "percent", scale=2),
        f("Minimum_Commitment__c", "currency", scale=2),
        f("Cancellation_Mode__c", "picklist", values=("end_of_term", "immediate")), f("Billed_Through__c", "date"),
        f("Billing_Review_Flag__c", "boolean"), f("Billing_Review_Reason__c", "string"),
        f("Billsync_Preview_Total__c", "currency", scale=2), f("Billsync_Preview_MRR__c", "currency", scale=2),
        f("Billsync_Preview_ARR__c", "currency", scale=2), f("Billsync_Preview_Note__c", "string"),
        f("Billsync_Preview_Lines__c", "textarea"), f("Billsync_Previewed_At__c", "datetime"),
        f("PO_Number__c", "string"), f("Buyer_Reference__c", "string"), f("Description", "textarea"),
        f("LeadSource", "picklist", values=("Web", "Self-Service", "Other")),
        f("Billsync_Change_Id__c", "string", ext=True),
    ], "childRelationships": [
        {"childSObject": "OpportunityLineItem", "field": "OpportunityId", "relationshipName": "OpportunityLineItems"},
        {"childSObject": "Quote", "field": "OpportunityId", "relationshipName": "Quotes"},
    ]},
    "Quote": {"fields": [
        f("Name", "string"), f("OpportunityId", "reference", ref="Opportunity", rel="Opportunity"),
        f("IsSyncing", "boolean", ro=True), CURRENCY,
    ], "childRelationships": [
        {"childSObject": "QuoteLineItem", "field": "QuoteId", "relationshipName": "QuoteLineItems"},
    ]},
    "QuoteLineItem": {"fields": line_fields(("QuoteId", "Quote", "Quote"))},
    "OpportunityLineItem": {"fields": line_fields(("OpportunityId", "Opportunity", "Opportunity"))},
    "Invoice__c": {"fields": [
        f("Name", "string"), f("Billsync_Invoice_Id__c", "string", ext=True),
        f("Account__c", "reference", ref="Account", rel="Account__r"),
        f("Opportunity__c", "reference", ref="Opportunity", rel="Opportunity__r"),
        f("Status__c", "picklist", values=("draft", "open", "paid", "void", "uncollectible")),
        f("Payment_Status__c", "picklist", values=("unpaid", "partially_paid", "paid", "overdue", "credited",
                                                   "partially_credited")),
        f("Issue_Date__c", "date"), f("Due_Date__c", "date"), f("Period_Start__c", "date"), f("Period_End__c", "date"),
        CURRENCY, *[f(n, "currency", scale=2) for n in ("Subtotal__c", "Discount__c", "Tax__c", "Total__c",
                                                       "Amount_Paid__c", "Amount_Credited__c", "Balance__c")],
        f("Tax_Note__c", "string"),
        f("Dunning_Step__c", "picklist", values=("reminder", "second", "final")), f("Dunning_Step_Date__c", "date"),
        f("PO_Number__c", "string"), f("Buyer_Reference__c", "string"),
    ]},
    "Invoice_Line__c": {"fields": [
        f("Billsync_Line_Id__c", "string", ext=True),
        f("Invoice__c", "reference", ref="Invoice__c", rel="Invoice__r", create_only=True),
        f("Product__c", "reference", ref="Product2", rel="Product__r"),
        f("Kind__c", "picklist", values=("recurring", "proration_credit", "proration_charge", "usage", "one_time",
                                         "minimum_true_up", "discount")),
        f("Description__c", "string"), f("Explanation__c", "textarea"), f("Period_Start__c", "date"),
        f("Period_End__c", "date"), f("Quantity__c", "double", scale=6), f("Unit_Price__c", "currency", scale=6),
        f("Discount__c", "currency", scale=2), f("Amount__c", "currency", scale=2), f("Tax_Rate__c", "percent"),
        f("Tax__c", "currency", scale=2),
    ]},
    "ContentVersion": {"fields": [
        f("Title", "string"), f("Description", "textarea"), f("PathOnClient", "string", create_only=True),
        f("VersionData", "base64", create_only=True), f("FirstPublishLocationId", "reference", create_only=True),
        f("ContentDocumentId", "reference", ref="ContentDocument", rel="ContentDocument", create_only=True),
        f("Checksum", "string", ro=True), f("Billsync_Document_Id__c", "string", ext=True),
    ]},
    "Task": {"fields": [
        f("Subject", "string"), f("Description", "textarea"), f("WhatId", "reference", ref="Account", rel="What"),
        f("OwnerId", "reference", ref="User", rel="Owner"), f("ActivityDate", "date"),
        f("Status", "picklist", values=("Not Started", "Completed")),
        f("Priority", "picklist", values=("High", "Normal", "Low")), f("Billsync_Message_Id__c", "string", ext=True),
    ]},
    "Payment__c": {"fields": [
        f("Name", "string"), f("Billsync_Payment_Id__c", "string", ext=True),
        f("Account__c", "reference", ref="Account", rel="Account__r"),
        f("Invoice__c", "reference", ref="Invoice__c", rel="Invoice__r"), CURRENCY,
        f("Amount__c", "currency", scale=2), f("Unapplied_Amount__c", "currency", scale=2),
        f("Payment_Date__c", "date"), f("Method__c", "string"), f("Reference__c", "string"),
        f("Status__c", "picklist", values=("succeeded", "refunded", "partially_refunded")),
    ]},
    "Billsync_Subscription__c": {"fields": [
        f("Name", "string"), f("Billsync_Subscription_Key__c", "string", ext=True),
        f("Account__c", "reference", ref="Account", rel="Account__r"),
        f("Opportunity__c", "reference", ref="Opportunity", rel="Opportunity__r"), CURRENCY,
        f("Status__c", "picklist", values=("active", "cancelling", "cancelled", "past_due")),
        *[f(n, "date") for n in ("Ends_On__c", "Start_Date__c", "Term_End_Date__c", "Renewal_Date__c",
                                 "Next_Invoice_Date__c")],
        f("Term_Months__c", "double", scale=0), f("Auto_Renew__c", "boolean"),
        f("MRR__c", "currency", scale=2), f("ARR__c", "currency", scale=2),
    ]},
    "Billsync_Subscription_Item__c": {"fields": [
        f("Name", "string"), f("Billsync_Item_Key__c", "string", ext=True),
        f("Subscription__c", "reference", ref="Billsync_Subscription__c", rel="Subscription__r", create_only=True),
        f("Product__c", "reference", ref="Product2", rel="Product__r"), f("Product_Code__c", "string"),
        f("Quantity__c", "double", scale=6),
        f("Pricing_Model__c", "picklist", values=("flat", "per_unit", "graduated", "volume", "package", "allowance",
                                                  "percent_of")),
        f("Contract_Price__c", "currency", scale=6), f("Discount_Percent__c", "percent"),
    ]},
    "Refund__c": {"fields": [
        f("Name", "string"), f("Billsync_Refund_Id__c", "string", ext=True),
        f("Payment__c", "reference", ref="Payment__c", rel="Payment__r", create_only=True),
        f("Account__c", "reference", ref="Account", rel="Account__r"), f("Amount__c", "currency", scale=2),
        f("From_Credit__c", "currency", scale=2), f("Refund_Date__c", "date"), f("Reason__c", "string"),
        f("CurrencyIsoCode", "picklist", ro=True, values=("EUR", "USD", "GBP", "JPY")),
    ]},
    "Credit_Note__c": {"fields": [
        f("Name", "string"), f("Billsync_Credit_Note_Id__c", "string", ext=True),
        f("Account__c", "reference", ref="Account", rel="Account__r"),
        f("Invoice__c", "reference", ref="Invoice__c", rel="Invoice__r"), f("Issue_Date__c", "date"), CURRENCY,
        *[f(n, "currency", scale=2) for n in ("Net__c", "Tax__c", "Total__c", "Applied_To_Invoice__c",
                                               "To_Credit_Balance__c")],
        f("Reason__c", "string"),
        f("Status__c", "picklist", values=("applied", "partially_applied", "customer_credit")),
    ]},
    "Credit_Note_Line__c": {"fields": [
        f("Name", "string"), f("Billsync_Credit_Note_Line_Id__c", "string", ext=True),
        f("Credit_Note__c", "reference", ref="Credit_Note__c", rel="Credit_Note__r", create_only=True),
        f("Invoice_Line__c", "reference", ref="Invoice_Line__c", rel="Invoice_Line__r"),
        f("Description__c", "string"), f("Amount__c", "currency", scale=2), f("Tax_Rate__c", "percent"),
        f("Tax__c", "currency", scale=2),
    ]},
}


def build_org() -> dict[str, dict[str, Any]]:
    org = {}
    for name, body in OBJECTS.items():
        org[name] = {"name": name, "fields": SYSTEM + body["fields"],
                     "childRelationships": body.get("childRelationships", [])}
    return copy.deepcopy(org)


@pytest.fixture
def org() -> dict[str, dict[str, Any]]:
    """A fresh, editable describe of the whole org."""
    return build_org()


@pytest.fixture
def describe(org):
    return org.get


@pytest.fixture(scope="session")
def defaults():
    specs = load_specs(None)
    assert specs.problems == []
    return specs


@pytest.fixture
def context() -> MappingContext:
    return MappingContext(org_timezone="Europe/Paris")
