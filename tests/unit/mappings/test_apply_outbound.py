"""The default outbound specs: engine records (plain dicts) → Salesforce records to upsert."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest

from mappings import InvalidRecordError, apply_outbound

ACC = "0017F00000AbCdEQAV"
OPP = "0067F000003pmdWQAQ"


def invoice(**overrides):
    record = {
        "id": "inv_01", "number": "INV-2026-000001", "status": "open", "payment_status": "unpaid",
        "issued_on": date(2026, 12, 1), "due_on": date(2026, 12, 31), "period_starts_on": date(2026, 12, 1),
        "period_ends_before": date(2027, 1, 1), "currency": "EUR", "subtotal": Decimal("1950.00"),
        "discount": Decimal("0.00"), "tax": Decimal("370.50"), "total": Decimal("2320.50"),
        "amount_paid": Decimal("0.00"), "amount_credited": Decimal("0.00"), "balance": Decimal("2320.50"),
        "tax_note": None, "customer_id": "cus_1",
        "salesforce_account_id": ACC, "salesforce_opportunity_id": None, "dunning_step": None,
        "dunning_step_on": None, "purchase_order": "PO-2026-0042", "buyer_reference": "",
    }
    return {**record, **overrides}


def test_an_invoice_becomes_an_invoice__c_upsert(defaults):
    out = apply_outbound(defaults.get_outbound("invoice"), invoice())
    assert out == {
        "attributes": {"type": "Invoice__c"}, "Billsync_Invoice_Id__c": "inv_01", "Name": "INV-2026-000001",
        "Account__c": ACC, "Opportunity__c": None, "Status__c": "open", "Payment_Status__c": "unpaid",
        "Issue_Date__c": "2026-12-01", "Due_Date__c": "2026-12-31", "Period_Start__c": "2026-12-01",
        "Period_End__c": "2027-01-01", "CurrencyIsoCode": "EUR", "Subtotal__c": Decimal("1950.00"),
        "Discount__c": Decimal("0.00"), "Tax__c": Decimal("370.50"), "Total__c": Decimal("2320.50"),
        "Amount_Paid__c": Decimal("0.00"), "Amount_Credited__c": Decimal("0.00"), "Balance__c": Decimal("2320.50"),
        "Tax_Note__c": None, "Dunning_Step__c": None, "Dunning_Step_Date__c": None,
        "PO_Number__c": "PO-2026-0042", "Buyer_Reference__c": None,
    }


def test_an_invoice_in_dunning_shows_its_last_step_and_its_date(defaults):
    out = apply_outbound(defaults.get_outbound("invoice"), invoice(payment_status="overdue", dunning_step="second",
                                                                   dunning_step_on=date(2027, 1, 15)))
    assert (out["Payment_Status__c"], out["Dunning_Step__c"], out["Dunning_Step_Date__c"]) == (
        "overdue", "second", "2027-01-15")


def test_a_partly_credited_invoice_reads_credited_not_paid(defaults):
    out = apply_outbound(defaults.get_outbound("invoice"), invoice(
        payment_status="partially_credited", amount_credited=Decimal("120.00"), balance=Decimal("2200.50")))
    assert (out["Payment_Status__c"], out["Amount_Paid__c"], out["Amount_Credited__c"], out["Balance__c"]) == (
        "partially_credited", Decimal("0.00"), Decimal("120.00"), Decimal("2200.50"))


def test_a_draft_invoice_is_named_after_its_id(defaults):
    out = apply_outbound(defaults.get_outbound("invoice"), invoice(number=None, status="draft"))
    assert out["Name"] == "DRAFT-inv_01"


def test_bad_engine_values_are_named(defaults):
    record = invoice(total=2320.5, status="sent", issued_on="01/12/2026")
    del record["balance"]
    with pytest.raises(InvalidRecordError) as raised:
        apply_outbound(defaults.get_outbound("invoice"), record)
    assert str(raised.value).splitlines() == [
        "invoice inv_01: status: 'sent' is not one of the mapped values: 'draft', 'open', 'paid', 'void', "
        "'uncollectible'",
        "invoice inv_01: issued_on: '01/12/2026' is not a date (YYYY-MM-DD)",
        "invoice inv_01: total: 2320.5 is a binary float; exact values must arrive as Decimal or text",
        "invoice inv_01: balance: is missing from the engine record",
    ]


def test_an_invoice_line_refers_to_its_invoice_by_external_id_and_explains_itself(defaults):
    record = {
        "id": "inl_01", "invoice_id": "inv_01", "product_code": "LIC", "salesforce_product_id": "01t7F000000AbCd",
        "kind": "recurring", "description": "Licences", "explanation": "Licences 12 × graduated: 5 × 200 + 5 × 150 + 2 × 100",
        "starts_on": date(2026, 12, 1), "ends_before": date(2027, 1, 1), "quantity": Decimal("12"),
        "unit_price": Decimal("162.5"), "discount": Decimal("0"), "amount": Decimal("1950.00"),
        "tax_rate": Decimal("19"), "tax": Decimal("370.50"),
    }
    out = apply_outbound(defaults.get_outbound("invoice_line"), record)
    assert out["Invoice__r"] == {"Billsync_Invoice_Id__c": "inv_01"}
    assert out["Billsync_Line_Id__c"] == "inl_01" and out["Product__c"] == "01t7F000000AbCdQAK"
    assert out["Explanation__c"] == "Licences 12 × graduated: 5 × 200 + 5 × 150 + 2 × 100"
    assert out["Amount__c"] == Decimal("1950.00") and out["Period_End__c"] == "2027-01-01"
    long = apply_outbound(defaults.get_outbound("invoice_line"), {**record, "description": "x" * 300})
    assert long["Description__c"] == "x" * 254 + "…"
    with pytest.raises(InvalidRecordError, match="^invoice_line inl_01: invoice_id: is required but empty$"):
        apply_outbound(defaults.get_outbound("invoice_line"), {**record, "invoice_id": None})


def test_a_payment_without_an_invoice_clears_the_lookup(defaults):
    record = {"id": "pay_01", "name": "SEPA-123", "salesforce_account_id": ACC, "first_invoice_id": None,
              "currency": "EUR",
              "amount": Decimal("100.00"), "unapplied_amount": Decimal("100.00"), "paid_on": date(2026, 12, 3),
              "method": "transfer", "reference": "SEPA-123", "status": "succeeded"}
    out = apply_outbound(defaults.get_outbound("payment"), record)
    assert out["Invoice__c"] is None and "Invoice__r" not in out
    assert out["Billsync_Payment_Id__c"] == "pay_01" and out["Payment_Date__c"] == "2026-12-03"
    paid = apply_outbound(defaults.get_outbound("payment"), {**record, "first_invoice_id": "inv_01"})
    assert paid["Invoice__r"] == {"Billsync_Invoice_Id__c": "inv_01"} and "Invoice__c" not in paid
    assert out["Name"] == "SEPA-123"


def credit_note(**overrides):
    record = {
        "id": "cn_01", "number": "CN-2026-000001", "invoice_id": "inv_01", "customer_id": "cus_1",
        "salesforce_account_id": ACC, "currency": "EUR", "issued_on": date(2026, 12, 10), "reason": "SLA credit",
        "net": Decimal("100.00"), "tax": Decimal("19.00"), "total": Decimal("119.00"),
        "applied_to_invoice": Decimal("119.00"), "to_credit_balance": Decimal("0.00"), "status": "applied",
    }
    return {**record, **overrides}


def test_a_credit_note_is_upserted_under_its_invoice_and_account(defaults):
    out = apply_outbound(defaults.get_outbound("credit_note"), credit_note())
    assert out == {
        "attributes": {"type": "Credit_Note__c"}, "Billsync_Credit_Note_Id__c": "cn_01", "Name": "CN-2026-000001",
        "Account__c": ACC, "Invoice__r": {"Billsync_Invoice_Id__c": "inv_01"}, "Issue_Date__c": "2026-12-10",
        "CurrencyIsoCode": "EUR", "Net__c": Decimal("100.00"), "Tax__c": Decimal("19.00"),
        "Total__c": Decimal("119.00"), "Applied_To_Invoice__c": Decimal("119.00"),
        "To_Credit_Balance__c": Decimal("0.00"), "Reason__c": "SLA credit", "Status__c": "applied",
    }
    loose = apply_outbound(defaults.get_outbound("credit_note"), credit_note(invoice_id=None))
    assert loose["Invoice__c"] is None and "Invoice__r" not in loose
    with pytest.raises(InvalidRecordError, match="salesforce_account_id: is required but empty"):
        apply_outbound(defaults.get_outbound("credit_note"), credit_note(salesforce_account_id=None))


def test_a_credit_note_line_names_the_invoice_line_it_credits(defaults):
    record = {"id": "cnl_01", "credit_note_id": "cn_01", "invoice_line_id": "line_07", "description": "Licences",
              "amount": Decimal("100.00"), "tax_rate": Decimal("19"), "tax": Decimal("19.00")}
    out = apply_outbound(defaults.get_outbound("credit_note_line"), record)
    assert out["Credit_Note__r"] == {"Billsync_Credit_Note_Id__c": "cn_01"}
    assert out["Invoice_Line__r"] == {"Billsync_Line_Id__c": "line_07"}
    assert (out["Amount__c"], out["Tax__c"], out["Description__c"]) == (Decimal("100.00"), Decimal("19.00"),
                                                                        "Licences")
    whole = apply_outbound(defaults.get_outbound("credit_note_line"), {**record, "invoice_line_id": None})
    assert whole["Invoice_Line__c"] is None and "Invoice_Line__r" not in whole


def test_a_refund_hangs_under_its_payment(defaults):
    out = apply_outbound(defaults.get_outbound("refund"), {
        "id": "ref_01", "name": "RFD-2026-000001", "payment_id": "pay_01", "salesforce_account_id": ACC,
        "currency": "EUR", "amount": Decimal("30.00"), "from_credit": Decimal("10.00"),
        "refunded_on": date(2026, 12, 12), "reason": None})
    assert out == {
        "attributes": {"type": "Refund__c"}, "Billsync_Refund_Id__c": "ref_01", "Name": "RFD-2026-000001",
        "Payment__r": {"Billsync_Payment_Id__c": "pay_01"}, "Account__c": ACC, "Amount__c": Decimal("30.00"),
        "From_Credit__c": Decimal("10.00"), "Refund_Date__c": "2026-12-12", "Reason__c": None,
    }


def test_the_account_summary_updates_the_account_by_id(defaults):
    spec = defaults.get_outbound("account_summary")
    assert spec.is_update_by_id
    out = apply_outbound(spec, {"salesforce_account_id": ACC[:15], "customer_id": "cus_1", "currency": "EUR",
                                "mrr": Decimal("11250.00"), "arr": Decimal("135000.00"), "balance": Decimal("0"),
                                "last_invoice_on": None, "billing_status": "past_due", "billing_ends_on": None,
                                "churn_risk": 72, "churn_risk_reasons": "an invoice overdue by 40 days; …"})
    assert out == {"attributes": {"type": "Account"}, "Id": ACC, "Billsync_Customer_Id__c": "cus_1",
                   "MRR__c": Decimal("11250.00"), "ARR__c": Decimal("135000.00"), "Balance__c": Decimal("0"),
                   "Last_Invoice_Date__c": None, "Billing_Status__c": "past_due", "Billing_Ends_On__c": None,
                   "Churn_Risk__c": 72, "Churn_Risk_Reasons__c": "an invoice overdue by 40 days; …"}
    assert json.loads(json.dumps(out, default=str))["MRR__c"] == "11250.00"  # exact through a str encoder


def test_an_account_summary_with_too_many_decimals_is_refused(defaults):
    with pytest.raises(InvalidRecordError, match=r"^account_summary 0017F00000AbCdEQAV: mrr: 8\.333 has more than 2 "
                                                 r"decimal places$"):
        apply_outbound(defaults.get_outbound("account_summary"), {
            "salesforce_account_id": ACC, "customer_id": "c", "currency": "EUR", "mrr": Decimal("8.333"),
            "arr": Decimal("100"), "balance": Decimal("0"), "last_invoice_on": None, "billing_status": "active",
            "billing_ends_on": None, "churn_risk": None, "churn_risk_reasons": None})


def test_a_cancelling_account_shows_the_last_day_it_is_billed(defaults):
    out = apply_outbound(defaults.get_outbound("account_summary"), {
        "salesforce_account_id": ACC, "customer_id": "cus_1", "currency": "EUR", "mrr": Decimal("500.00"),
        "arr": Decimal("6000.00"), "balance": Decimal("0"), "last_invoice_on": None, "billing_status": "cancelling",
        "billing_ends_on": date(2026, 12, 31), "churn_risk": None, "churn_risk_reasons": None})
    assert (out["Billing_Status__c"], out["Billing_Ends_On__c"]) == ("cancelling", "2026-12-31")
    assert (out["Churn_Risk__c"], out["Churn_Risk_Reasons__c"]) == (None, None)  # not scored: emptied


def test_the_subscription_id_goes_back_to_the_opportunity_with_its_status(defaults):
    out = apply_outbound(defaults.get_outbound("subscription_link"),
                         {"salesforce_opportunity_id": OPP, "subscription_id": "sub_1", "status": "active",
                          "ends_on": None})
    assert out == {"attributes": {"type": "Opportunity"}, "Id": OPP, "Billsync_Subscription_Id__c": "sub_1",
                   "Billsync_Subscription_Status__c": "active", "Billsync_Subscription_Ends_On__c": None}
    ending = apply_outbound(defaults.get_outbound("subscription_link"),
                            {"salesforce_opportunity_id": OPP, "subscription_id": "sub_1", "status": "cancelling",
                             "ends_on": date(2026, 12, 31)})
    assert (ending["Billsync_Subscription_Status__c"], ending["Billsync_Subscription_Ends_On__c"]) == \
        ("cancelling", "2026-12-31")
