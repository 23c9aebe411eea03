"""check_specs against the org's describe: what `billsync mappings check` prints."""

from __future__ import annotations

from pathlib import Path

from mappings import Problem, check_specs, load_specs
from mappings.spec import DEFAULTS_DIR

BROKEN = """\
inbound:
  - name: broken_customer
    object: Account
    command: upsert_customer
    fields:
      name:     {from: Nmae, transform: string}
      currency: {from: CurrencyIsoCode, transform: currency_code}
      tax_rate: {from: Name, transform: decimal}
      vat_id:   {from: VAT_Id__c, transform: upper_case}
outbound:
  - name: broken_invoice
    object: Invoice__c
    source: invoice
    key: {field: Name, from: id}
    fields:
      Total__c: {from: total, transform: decimal}
"""


def line_in(path: Path, fragment: str) -> int:
    """The line of a default file holding ``fragment`` (so comments can change freely)."""
    [line] = [n for n, text in enumerate(path.read_text().splitlines(), 1) if fragment in text]
    return line


def check_text(tmp_path: Path, describe, text: str) -> list[str]:
    (tmp_path / "broken.yaml").write_text(text)
    return [str(p) for p in check_specs(load_specs(tmp_path, include_defaults=False), describe)]


def test_the_defaults_pass_against_the_org(defaults, describe):
    assert check_specs(defaults, describe) == []


def test_a_broken_file_gets_one_line_per_problem_with_file_and_line(tmp_path, describe):
    file = tmp_path / "broken.yaml"
    assert check_text(tmp_path, describe, BROKEN) == [
        f"{file}:6: fields.name: no field 'Nmae' on Account (did you mean 'Name'?)",
        f"{file}:8: fields.tax_rate: wrong type: Account.Name is a string field, and transform 'decimal' takes "
        "currency, double, int, long, percent",
        f"{file}:9: fields.vat_id.transform: unknown transform 'upper_case'; known: string, decimal, integer, "
        "boolean, date, datetime_to_date, datetime, percent, picklist_map, default, constant, currency_code, "
        "timezone, json_tiers, split_codes, id18, template",
        f"{file}:14: key.field: Invoice__c.Name is not an External ID field; mark it External ID (and Unique) "
        "in Salesforce, or key the mapping by Id",
    ]


def test_problem_format():
    assert str(Problem("a.yaml", 3, "fields.name", "bad")) == "a.yaml:3: fields.name: bad"


def test_a_field_the_org_lacks_is_reported_in_the_default_file(defaults, org, describe):
    org["Account"]["fields"] = [f for f in org["Account"]["fields"] if f["name"] != "MRR__c"]
    org["Invoice__c"]["fields"] = [dict(f, externalId=False) if f["name"] == "Billsync_Invoice_Id__c" else f
                                   for f in org["Invoice__c"]["fields"]]
    problems = [str(p) for p in check_specs(defaults, describe)]
    account, credit_note, invoice, payment = (DEFAULTS_DIR / f"{n}.yaml"
                                              for n in ("account", "credit_note", "invoice", "payment"))
    assert problems == [
        f"{account}:{line_in(account, 'MRR__c:')}: fields.MRR__c: no field 'MRR__c' on Account (did you mean 'ARR__c'?)",
        f"{credit_note}:{line_in(credit_note, 'Invoice__r.')}: fields.Invoice__r.Billsync_Invoice_Id__c: Invoice__c."
        "Billsync_Invoice_Id__c is not an External ID field, so it can't identify the parent record",
        f"{invoice}:{line_in(invoice, 'key: {field: Billsync_Invoice_Id__c')}: key.field: Invoice__c.Billsync_Invoice_Id__c is not an External ID field; mark it "
        "External ID (and Unique) in Salesforce, or key the mapping by Id",
        f"{invoice}:{line_in(invoice, 'Invoice__r.Billsync_Invoice_Id__c:')}: fields.Invoice__r.Billsync_Invoice_Id__c: Invoice__c.Billsync_Invoice_Id__c is not an "
        "External ID field, so it can't identify the parent record",
        f"{payment}:{line_in(payment, 'Invoice__r.')}: fields.Invoice__r.Billsync_Invoice_Id__c: Invoice__c."
        "Billsync_Invoice_Id__c is not an External ID field, so it can't identify the parent record",
    ]


def test_an_object_the_org_lacks(tmp_path, org, describe):
    del org["Invoice__c"]
    assert check_text(tmp_path, describe, BROKEN)[-1] == (
        f"{tmp_path / 'broken.yaml'}:12: object: the org has no object 'Invoice__c'")


INBOUND = """\
inbound:
  - name: deal
    object: Opportunity
    command: {from: Type, map: {New Business: start_subscription, Upsell: amend_subscription}}
    fields:
      salesforce_account_id: {from: account.Id, transform: id18}
      currency:  {from: Acount.CurrencyIsoCode, transform: currency_code}
      starts_on: {from: [Service_Start_Date__c, LastModifiedDate], transform: date}
      term_months: {from: Term_Months__c, transform: integer}
      name: {from: Account.Name, transform: string}
      cancellation_mode: {from: Cancellation_Mode__c, transform: picklist_map, map: {end_of_term: x, Immediate: y}}
    lines:
      into: items
      sources:
        - {object: OpportunityLineItem, relationship: LineItems}
        - {object: QuoteLineItem, when: SyncedQuote.Nme, match: Quote}
      fields:
        salesforce_line_id: {from: Id, transform: id18}
        product_code: {from: PricebookEntry.Product2.ProductCode, transform: string}
        quantity: {from: Quantity, transform: decimal}
"""


def test_inbound_paths_types_picklists_and_line_sources(tmp_path, org, describe):
    for field in org["Opportunity"]["fields"]:
        if field["name"] == "Term_Months__c":
            field["scale"] = 2
    file = tmp_path / "broken.yaml"
    assert check_text(tmp_path, describe, INBOUND) == [
        f"{file}:4: command.map: 'Upsell' is not a value of the Type picklist; values: New Business, Amendment, "
        "Renewal, Cancellation",
        f"{file}:6: fields.salesforce_account_id: 'account' is not a relationship on Opportunity (names are "
        "case-sensitive: write 'Account')",
        f"{file}:7: fields.currency: 'Acount' is not a relationship on Opportunity (did you mean 'Account'?)",
        f"{file}:8: fields.starts_on: wrong type: Opportunity.LastModifiedDate is a datetime field, and transform "
        "'date' takes date; use datetime_to_date, which takes the date in the customer's time zone",
        f"{file}:9: fields.term_months: wrong type: Term_Months__c has 2 decimal places; use decimal",
        f"{file}:11: fields.cancellation_mode: map key 'Immediate' is not a value of the Cancellation_Mode__c "
        "picklist (names are case-sensitive: write 'immediate'); values: end_of_term, immediate",
        f"{file}:15: lines.sources[0].relationship: 'LineItems' is not a child relationship of Opportunity "
        "(did you mean 'OpportunityLineItems'?)",
        f"{file}:16: lines.sources[1].match: no field 'Quote' on QuoteLineItem (did you mean 'QuoteId'?)",
        f"{file}:16: lines.sources[1].when: no field 'Nme' on Quote (did you mean 'Name'?)",
    ]


OUTBOUND = """\
outbound:
  - name: summary
    object: Account
    source: account_summary
    key: {field: Id, from: salesforce_account_id}
    fields:
      SystemModstamp: {from: last_invoice_on, transform: datetime}
      MRR__c: {from: mrr, transform: string}
      Billing_Status__c: {from: billing_status, transform: picklist_map, map: {active: Active}}
      Type: {transform: constant, value: Partner}
  - name: line
    object: Invoice_Line__c
    source: invoice_line
    key: {field: Billsync_Line_Id__c, from: id}
    fields:
      Invoice__r.Name: {from: invoice_id, transform: string}
      Product__r.ProductCode: {from: product_code, transform: string}
      Invoice__c: {from: invoice_id, transform: id18}
  - name: summary_by_name
    object: Account
    source: account_summary
    key: {field: Nope__c, from: customer_id}
    fields: {}
"""


def test_outbound_keys_writability_types_and_picklists(tmp_path, org, describe):
    file = tmp_path / "broken.yaml"
    assert check_text(tmp_path, describe, OUTBOUND) == [
        f"{file}:7: fields.SystemModstamp: Account.SystemModstamp can't be updated (updateable is false)",
        f"{file}:8: fields.MRR__c: wrong type: Account.MRR__c is a currency field, and transform 'string' takes "
        "combobox, email, encryptedstring, phone, picklist, string, textarea, url",
        f"{file}:9: fields.Billing_Status__c: 'Active' is not a value of the Account.Billing_Status__c picklist "
        "(names are case-sensitive: write 'active'); values: active, cancelling, past_due, cancelled, none",
        f"{file}:10: fields.Type: 'Partner' is not a value of the Account.Type picklist; values: Prospect, Customer",
        f"{file}:16: fields.Invoice__r.Name: Invoice__c.Name is not an External ID field, so it can't identify "
        "the parent record",
        f"{file}:17: fields.Product__r.ProductCode: Product2.ProductCode is not an External ID field, so it can't "
        "identify the parent record",
        f"{file}:22: key.field: no field 'Nope__c' on Account",
    ]


def test_a_read_only_field_in_an_upsert(tmp_path, org, describe):
    for field in org["Invoice_Line__c"]["fields"]:
        if field["name"] == "Description__c":
            field["createable"] = field["updateable"] = False
    problems = check_specs(load_specs(None), describe)
    invoice = DEFAULTS_DIR / "invoice.yaml"
    assert [str(p) for p in problems] == [
        f"{invoice}:{line_in(invoice, 'Description__c:')}: fields.Description__c: Invoice_Line__c.Description__c is read-only "
        "(neither createable nor updateable)"]
