"""load_specs: defaults, admin overrides, and every schema problem located by file and line."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from mappings import DEFAULTS_DIR, MappingContext, SpecError, UnknownSpecError, apply_inbound, load_specs

CUSTOMER = """\
inbound:
  - name: customer
    object: Account
    command: upsert_customer
    fields:
      name:     {from: Name, transform: string, required: true}
      currency: {from: CurrencyIsoCode, transform: currency_code, default: EUR}
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def problems_of(tmp_path: Path, text: str, name: str = "custom.yaml") -> list[str]:
    write(tmp_path, name, text)
    return [str(p) for p in load_specs(tmp_path, include_defaults=False).problems]


def test_the_defaults_load_without_problems(defaults):
    assert sorted(s.name for s in defaults.inbound) == ["customer", "price", "product", "subscription"]
    assert sorted(s.name for s in defaults.outbound) == [
        "account_review", "account_summary", "billing_details", "credit_note", "credit_note_line", "deal_preview", "document", "invoice",
        "invoice_line", "opportunity_review", "payment", "portal_change", "refund", "sales_request", "subscription",
        "subscription_item", "subscription_link"]
    assert [s.name for s in defaults.inbound_for("account")] == ["customer"]
    assert [s.object for s in defaults.outbound_for("invoice_line")] == ["Invoice_Line__c"]
    assert sorted(Path(f).name for f in defaults.files) == sorted(p.name for p in DEFAULTS_DIR.glob("*.yaml"))


def test_get_raises_for_an_unknown_name(defaults):
    with pytest.raises(UnknownSpecError, match="no inbound mapping named 'custmer'"):
        defaults.get_inbound("custmer")


def test_an_admin_file_replaces_the_default_of_the_same_name_and_others_add(tmp_path):
    write(tmp_path, "account.yaml", CUSTOMER.replace("default: EUR", "default: CHF"))
    write(tmp_path, "extra.yaml", CUSTOMER.replace("name: customer", "name: partner_customer"))
    specs = load_specs(tmp_path)
    assert specs.problems == []
    customer = specs.get_inbound("customer")
    assert customer.file == str(tmp_path / "account.yaml")
    assert specs.get_inbound("partner_customer").object == "Account"
    with pytest.raises(UnknownSpecError):
        specs.get_outbound("account_summary")  # the default account.yaml (with it) was replaced
    out = apply_inbound(customer, {"Id": "0017F00000AbCdEQAV", "Name": "Acme", "CurrencyIsoCode": None},
                        MappingContext())
    assert out["data"]["currency"] == "CHF"


def test_an_empty_admin_file_switches_a_default_off(tmp_path):
    write(tmp_path, "payment.yaml", "")
    specs = load_specs(tmp_path)
    assert specs.problems == [] and specs.outbound_for("payment") == []


def test_a_spec_name_defined_twice_is_reported_with_both_places(tmp_path):
    write(tmp_path, "mine.yaml", CUSTOMER)
    [problem] = load_specs(tmp_path).problems
    assert str(problem) == (f"{tmp_path / 'mine.yaml'}:2: name: inbound mapping 'customer' is already defined "
                            f"at {DEFAULTS_DIR / 'account.yaml'}:5")


def test_a_missing_directory_and_a_yml_file_are_reported(tmp_path):
    assert [str(p) for p in load_specs(tmp_path / "nope").problems] == [
        f"{tmp_path / 'nope'}:0: MAPPINGS_DIR: is not a directory"]
    write(tmp_path, "account.yml", CUSTOMER)
    assert [str(p) for p in load_specs(tmp_path).problems] == [
        f"{tmp_path / 'account.yml'}:0: file: is ignored: mapping files end in .yaml"]


def test_yaml_syntax_errors_give_file_and_line(tmp_path):
    [problem] = problems_of(tmp_path, CUSTOMER.replace("required: true}", "required: true"))
    assert problem.startswith(f"{tmp_path / 'custom.yaml'}:7: file: YAML: ")


def test_a_key_written_twice_is_an_error_not_silently_the_last(tmp_path):
    text = CUSTOMER + "      name:     {from: Name, transform: string}\n"
    [problem] = problems_of(tmp_path, text)
    assert problem.startswith(f"{tmp_path / 'custom.yaml'}:8: file: YAML: key 'name' is written twice")


def test_unknown_and_missing_keys(tmp_path):
    text = CUSTOMER.replace("transform: string, required", "tranform: string, required").replace(
        "    object: Account\n", "")
    assert problems_of(tmp_path, text) == [
        f"{tmp_path / 'custom.yaml'}:2: object: missing key 'object'",
        f"{tmp_path / 'custom.yaml'}:5: fields.name: missing key 'transform' (one of: string, decimal, integer, "
        "boolean, date, datetime_to_date, datetime, percent, picklist_map, default, constant, currency_code, "
        "timezone, json_tiers, split_codes, id18, template, base64)",
        f"{tmp_path / 'custom.yaml'}:5: fields.name.tranform: unknown key (did you mean 'transform'?); allowed here: "
        "from, transform, required, required_for, default, default_from, description, "
        "map, max, max_length, min, otherwise, places, separator, template, truncate, value",
    ]


def test_engine_keys_and_commands_are_checked_against_the_contract(tmp_path):
    text = CUSTOMER.replace("currency:", "curency: ").replace("upsert_customer", "upsert_custmer")
    problems = problems_of(tmp_path, text)
    assert problems[0] == (f"{tmp_path / 'custom.yaml'}:4: command: unknown command 'upsert_custmer' "
                           "(did you mean 'upsert_customer'?); known: upsert_customer, upsert_product, "
                           "upsert_price, start_subscription, amend_subscription, renew_subscription, "
                           "cancel_subscription")
    problems = problems_of(tmp_path, CUSTOMER.replace("currency:", "curency: "))
    assert problems[0].startswith(f"{tmp_path / 'custom.yaml'}:7: fields.curency: is not a key of this command "
                                  "(did you mean 'currency'?)")
    assert problems[1] == f"{tmp_path / 'custom.yaml'}:5: fields: missing 'currency', which the command needs"


def test_bad_transform_parameters_and_defaults_are_located(tmp_path):
    text = CUSTOMER.replace("default: EUR}", "default: EURO}") + (
        "      tax_rate: {from: Tax_Rate__c, transform: decimal, min: low}\n"
        "      payment_terms_days:\n"
        "        from: Payment_Terms_Days__c\n"
        "        transform: picklist_map\n"
        "        map: {yes: 30, 'no': '0'}\n"
    )
    assert problems_of(tmp_path, text) == [
        f"{tmp_path / 'custom.yaml'}:7: fields.currency.default: 'EURO' is not a 3-letter ISO 4217 currency code",
        f"{tmp_path / 'custom.yaml'}:8: fields.tax_rate.min: 'low' is not a decimal number",
        f"{tmp_path / 'custom.yaml'}:12: fields.payment_terms_days.map: key True is not text; quote it, e.g. 'True'",
        f"{tmp_path / 'custom.yaml'}:12: fields.payment_terms_days.map.True: 30 is not text; quote it",
    ]


def test_a_transform_in_the_wrong_direction_and_a_constant_with_from(tmp_path):
    text = CUSTOMER + "      vat_id: {from: VAT_Id__c, transform: constant, value: x}\n" + (
        "outbound:\n"
        "  - name: x\n    object: Invoice__c\n    source: invoice\n"
        "    key: {field: Billsync_Invoice_Id__c, from: id}\n"
        "    fields:\n"
        "      Tax_Note__c: {from: tax_note, transform: json_tiers}\n"
        "      Total__c: {from: totl, transform: decimal}\n"
        "      Name: {transform: constant, value: [1, 2]}\n"
    )
    file = tmp_path / "custom.yaml"
    assert problems_of(tmp_path, text) == [
        f"{file}:8: fields.vat_id.from: transform 'constant' reads no field: remove 'from'",
        f"{file}:15: fields.Tax_Note__c.transform: transform 'json_tiers' can't be used in outbound mappings",
        f"{file}:16: fields.Total__c: 'totl' is not a key of this engine record (did you mean 'total'?)",
        f"{file}:17: fields.Name.value: [1, 2] must be a single value",
    ]


def test_yaml_decimals_are_exact(tmp_path):
    write(tmp_path, "custom.yaml", CUSTOMER + "      tax_rate: {from: Tax_Rate__c, transform: decimal, max: 0.1}\n")
    specs = load_specs(tmp_path, include_defaults=False)
    assert specs.get_inbound("customer").fields[2].params["max"] == Decimal("0.1")
    [problem] = problems_of(tmp_path, CUSTOMER.replace("default: EUR}", "default: EUR, x: .nan}"))
    assert problem == f"{tmp_path / 'custom.yaml'}:7: file: YAML: '.nan' is not a finite decimal number"


def test_mapping_with_an_incomplete_spec_is_refused(tmp_path):
    write(tmp_path, "custom.yaml", CUSTOMER.replace("transform: string, required", "transform: strng, required"))
    specs = load_specs(tmp_path, include_defaults=False)
    spec = specs.get_inbound("customer")
    assert not spec.is_complete
    with pytest.raises(SpecError, match="this mapping has problems; run `billsync mappings check`"):
        apply_inbound(spec, {"Id": "0017F00000AbCdEQAV", "Name": "A", "CurrencyIsoCode": "EUR"}, MappingContext())


def test_a_file_that_is_not_a_mapping(tmp_path):
    assert problems_of(tmp_path, "- just\n- a list\n") == [
        f"{tmp_path / 'custom.yaml'}:1: file: must be a mapping with 'inbound' and/or 'outbound'"]
    assert problems_of(tmp_path, "inbound: 5\n") == [
        f"{tmp_path / 'custom.yaml'}:1: inbound: must be a list of mappings (or one mapping)"]


# ---------------------------------------------------------------- bounded files


def alias_bomb(levels: int = 9) -> str:
    text = 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    for level in range(1, levels):
        text += f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]\n"
    return text + f"inbound: *l{levels - 1}\n"


def test_an_alias_bomb_is_one_problem_not_an_exhausted_memory(tmp_path):
    assert problems_of(tmp_path, alias_bomb()) == [
        f"{tmp_path}/custom.yaml:1: file: YAML: its aliases expand to more than 100000 values"]


def test_twenty_thousand_nested_brackets_are_one_problem_not_a_recursion_error(tmp_path):
    for text in ("inbound: " + "[" * 20_000 + "]" * 20_000 + "\n", "inbound: " + "{a: " * 20_000 + "}" * 20_000):
        (problem,) = problems_of(tmp_path, text)
        assert problem == f"{tmp_path}/custom.yaml:1: file: YAML: nested more than 50 levels deep"


def test_too_many_aliases_and_an_oversized_file_are_refused(tmp_path):
    many = "base: &b x\nitems: [" + ", ".join(["*b"] * 1001) + "]\n"
    assert problems_of(tmp_path, many) == [
        f"{tmp_path}/custom.yaml:2: file: YAML: more than 1000 aliases (*name) in one file"]
    big = "# " + "x" * (1024 * 1024) + "\n" + CUSTOMER
    assert problems_of(tmp_path, big) == [f"{tmp_path}/custom.yaml:1: file: is larger than 1024 KiB"]


def test_anchors_and_merge_keys_within_the_bounds_still_work(tmp_path):
    text = CUSTOMER.replace("    fields:\n", "    fields: &fields\n") + """\
  - name: customer_again
    object: Account
    command: upsert_customer
    fields: *fields
"""
    write(tmp_path, "custom.yaml", text)
    loaded = load_specs(tmp_path, include_defaults=False)
    assert loaded.problems == []
    assert [s.name for s in loaded.inbound] == ["customer", "customer_again"]
