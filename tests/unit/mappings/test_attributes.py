"""Custom attributes declared in the subscription mapping: loading, checking against the org, mapping a
deal, and reading them in the outbound invoice mapping (docs/mappings.md, Custom attributes)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from mappings import MappingContext, apply_inbound, apply_outbound, check_specs, load_specs, soql_for
from mappings.spec import DEFAULTS_DIR
from tests.unit.mappings.conftest import f
from tests.unit.mappings.test_apply_outbound import invoice

ATTRIBUTES = """\
    attributes:
      cost_centre:
        from: [Cost_Centre__c, Account.Cost_Centre__c]
        transform: string
        max_length: 80
        label: {en: Cost centre, fr: Centre de coûts}
        en16931: buyer_accounting_reference
      budget:
        from: Budget__c
        transform: decimal
        label: Budget
"""
OUTBOUND = """\
      Cost_Centre__c:      {from: attributes.cost_centre, transform: string, max_length: 80}
"""


def admin_files(tmp_path: Path, attributes: str = ATTRIBUTES, outbound: str = OUTBOUND) -> Path:
    """The shipped opportunity and invoice files with ``attributes`` and ``outbound`` added."""
    opportunity = (DEFAULTS_DIR / "opportunity.yaml").read_text()
    (tmp_path / "opportunity.yaml").write_text(opportunity.replace("    lines:\n", attributes + "    lines:\n", 1))
    invoice = (DEFAULTS_DIR / "invoice.yaml").read_text()
    marker = "      PO_Number__c:"
    (tmp_path / "invoice.yaml").write_text(invoice.replace(marker, outbound + marker, 1))
    return tmp_path


def line_of(path: Path, fragment: str) -> int:
    return next(n for n, text in enumerate(path.read_text().splitlines(), 1) if fragment in text)


def with_custom_fields(org: dict) -> dict:
    org["Opportunity"]["fields"] += [f("Cost_Centre__c", "string"), f("Budget__c", "currency", scale=2)]
    org["Account"]["fields"] += [f("Cost_Centre__c", "string")]
    org["Invoice__c"]["fields"] += [f("Cost_Centre__c", "string")]
    return org


def deal(**values) -> dict:
    record = {
        "attributes": {"type": "Opportunity"}, "Id": "006000000000001AAA", "AccountId": "001000000000001AAA",
        "Name": "Acme 2026", "Type": "New Business", "Subscription_Reference__c": None,
        "Billsync_Subscription_Id__c": None,
        "Service_Start_Date__c": None, "CloseDate": "2026-01-01", "Term_Months__c": None, "Auto_Renew__c": None,
        "Billing_Anchor_Day__c": None, "Renewal_Uplift__c": None, "Minimum_Commitment__c": None,
        "Cancellation_Mode__c": None, "CurrencyIsoCode": "EUR", "Billed_Through__c": None, "PO_Number__c": None,
        "Buyer_Reference__c": None, "Account": {"Buyer_Reference__c": None, "Cost_Centre__c": "CC-ACCOUNT"},
        "Cost_Centre__c": None, "Budget__c": None, "SyncedQuoteId": None, "OpportunityLineItems": None,
    }
    record.update(values)
    return record


def test_declared_attributes_load_in_their_order_with_labels_and_xml_role(tmp_path):
    specs = load_specs(admin_files(tmp_path))
    assert specs.problems == []
    cost_centre, budget = specs.get_inbound("subscription").attributes
    assert (cost_centre.name, cost_centre.labels, cost_centre.en16931) == (
        "cost_centre", {"en": "Cost centre", "fr": "Centre de coûts"}, "buyer_accounting_reference")
    assert (budget.name, budget.labels, budget.en16931) == ("budget", {"en": "Budget"}, "note")
    assert (cost_centre.label("fr"), budget.label("fr")) == ("Centre de coûts", "Budget")
    assert list(specs.attributes) == ["cost_centre", "budget"]


def test_a_deal_maps_its_attributes_as_text_and_leaves_empty_ones_out(tmp_path):
    spec = load_specs(admin_files(tmp_path)).get_inbound("subscription")
    context = MappingContext(org_timezone="Europe/Paris")
    mapped = apply_inbound(spec, deal(Cost_Centre__c=" CC-42 ", Budget__c=Decimal("1200.50")), context, lines=[])
    assert mapped["data"]["attributes"] == {"cost_centre": "CC-42", "budget": "1200.50"}
    # No value on the deal: its Account's; no budget: left out.
    assert apply_inbound(spec, deal(), context, lines=[])["data"]["attributes"] == {"cost_centre": "CC-ACCOUNT"}


def test_the_pull_query_selects_the_attribute_fields(tmp_path):
    query = soql_for(load_specs(admin_files(tmp_path)).get_inbound("subscription"))
    assert "Cost_Centre__c" in query and "Account.Cost_Centre__c" in query and "Budget__c" in query


def test_the_invoice_mapping_writes_an_attribute_and_clears_the_field_without_one(tmp_path):
    spec = load_specs(admin_files(tmp_path)).get_outbound("invoice")
    record = invoice(attributes={"cost_centre": "CC-42"})
    assert apply_outbound(spec, record)["Cost_Centre__c"] == "CC-42"
    assert apply_outbound(spec, dict(record, attributes={}))["Cost_Centre__c"] is None


def test_the_declarations_pass_the_check_against_an_org_with_the_fields(tmp_path, org):
    specs = load_specs(admin_files(tmp_path))
    assert check_specs(specs, with_custom_fields(org).get) == []


def test_the_check_names_a_field_the_org_does_not_have(tmp_path, org):
    folder = admin_files(tmp_path, ATTRIBUTES.replace("from: Budget__c", "from: Budjet__c"))
    problems = [str(p) for p in check_specs(load_specs(folder), with_custom_fields(org).get)]
    file = folder / "opportunity.yaml"
    assert problems == [f"{file}:{line_of(file, 'Budjet__c')}: attributes.budget: no field 'Budjet__c' on "
                        "Opportunity (did you mean 'Budget__c'?)"]


BAD = """\
    attributes:
      Cost_Centre:
        from: Cost_Centre__c
        transform: string
        label: Cost centre
      region:
        from: Cost_Centre__c
        transform: boolean
        label: {en: Region, de: Gebiet}
      project:
        from: Cost_Centre__c
        transform: string
        max_length: 300
        label: {fr: Projet}
      contract:
        from: Cost_Centre__c
        transform: string
        label: {en: The number of the framework contract this order belongs to}
        en16931: accounting
      ledger:
        from: Cost_Centre__c
        transform: string
        label: Ledger
        en16931: buyer_accounting_reference
      account_code:
        from: Cost_Centre__c
        transform: string
        label: Account code
        en16931: buyer_accounting_reference
"""


def test_each_bad_declaration_is_one_line_at_its_place(tmp_path):
    folder = admin_files(tmp_path, BAD, outbound="      Cost_Centre__c: {from: attributes.cost_center, "
                                                  "transform: string}\n")
    file, invoice = folder / "opportunity.yaml", folder / "invoice.yaml"
    problems = [str(p) for p in load_specs(folder).problems]

    def at(fragment: str, *, after: str | None = None) -> int:
        lines = file.read_text().splitlines()
        start = next(n for n, text in enumerate(lines) if after in text) if after else 0
        return next(n for n, text in enumerate(lines[start:], start + 1) if fragment in text)

    assert problems == [
        f"{file}:{at('Cost_Centre:')}: attributes.Cost_Centre: is not an attribute name: lower_case letters, "
        "digits and _, starting with a letter, at most 40 characters (like cost_centre)",
        f"{file}:{at('transform: boolean', after='      region:')}: attributes.region.transform: an attribute is text: use one of "
        "string, picklist_map, id18, integer, decimal, date",
        f"{file}:{at('de: Gebiet')}: attributes.region.label.de: unknown language; invoices are written in en, fr",
        f"{file}:{at('max_length: 300', after='      project:')}: attributes.project.max_length: 300 is more than 255, the longest "
        "attribute value",
        f"{file}:{at('fr: Projet')}: attributes.project.label: needs an English label ('en'), printed when the "
        "customer's language has none",
        f"{file}:{at('framework contract')}: attributes.contract.label.en: is 58 characters long; a label has at "
        "most 40",
        f"{file}:{at('en16931: accounting')}: attributes.contract.en16931: 'accounting' is not one of note, "
        "buyer_accounting_reference",
        f"{file}:{at('en16931: buyer', after='account_code')}: attributes.account_code.en16931: only one attribute "
        "can be the buyer accounting reference (BT-19); ledger already is",
        f"{invoice}:{line_of(invoice, 'attributes.cost_center')}: fields.Cost_Centre__c: 'attributes.cost_center': "
        "no inbound mapping declares the attribute 'cost_center'; declared: ledger",
    ]


def test_more_than_ten_attributes_is_one_line(tmp_path):
    many = "    attributes:\n" + "".join(
        f"      a{n}: {{from: Cost_Centre__c, transform: string, label: A{n}}}\n" for n in range(11))
    folder = admin_files(tmp_path, many, outbound="")
    file = folder / "opportunity.yaml"
    assert [str(p) for p in load_specs(folder).problems] == [
        f"{file}:{file.read_text().splitlines().index('    attributes:') + 1}: attributes: declares 11 attributes; "
        "at most 10"]


def test_a_command_without_subscriptions_takes_no_attributes(tmp_path):
    (tmp_path / "custom.yaml").write_text("""\
inbound:
  - name: customer_codes
    object: Account
    command: upsert_customer
    fields:
      name:     {from: Name, transform: string}
      currency: {from: CurrencyIsoCode, transform: currency_code}
    attributes:
      cost_centre: {from: Cost_Centre__c, transform: string, label: Cost centre}
""")
    assert [str(p) for p in load_specs(tmp_path, include_defaults=False).problems] == [
        f"{tmp_path / 'custom.yaml'}:8: attributes: this command takes no custom attributes (only "
        "start_subscription, amend_subscription, renew_subscription, cancel_subscription do)"]
