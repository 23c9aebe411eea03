"""Ids, exact JSON, formulas and the schema file against docs/custom-objects.md."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sfsandbox import ids, wire
from sfsandbox.formula import Formula, FormulaError
from sfsandbox.schema import SchemaFileError, load_schema

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(("id15", "id18"), [("00D7F00000107Xs", "00D7F00000107XsUAI"),
                                             ("0067F000003pmdW", "0067F000003pmdWQAQ")])
def test_to18_matches_real_ids(id15, id18):
    assert ids.to18(id15) == id18
    assert ids.normalize(id15) == id18 and ids.normalize(id18.lower()[:15]) != id18


def test_generated_ids_have_the_prefix_and_a_valid_suffix():
    factory = ids.IdFactory()
    made = [factory.next("0Q0") for _ in range(100)]
    assert len(set(made)) == 100
    assert all(i.startswith("0Q0") and len(i) == 18 and ids.to18(i[:15]) == i for i in made)
    assert ids.normalize("001Dn0000000001AAB") is None  # suffix disagrees with the case of the id
    assert ids.normalize("not-an-id") is None


@given(st.decimals(allow_nan=False, allow_infinity=False) | st.decimals(allow_nan=False, allow_infinity=False, places=4))
def test_decimals_round_trip_exactly(value):
    text = wire.dumps({"v": value, "l": [value]})
    back = wire.loads(text)
    assert Decimal(back["v"]) == value and Decimal(back["l"][0]) == value


def test_decimal_digits_are_written_as_given_and_floats_are_refused():
    assert wire.dumps({"a": Decimal("1.10"), "b": "x"}) == '{"a":1.10,"b":"x"}'
    assert wire.dumps({"mark": "\ue000\ue0011", "n": Decimal("2.50")}) == '{"mark":"\\ue000\\ue0011","n":2.50}'
    with pytest.raises(TypeError):
        wire.dumps({"a": 1.5})
    with pytest.raises(wire.JsonBodyError):
        wire.loads("{bad")


@pytest.mark.parametrize(("text", "record", "expected"), [
    ("Total__c < 0", {"Total__c": Decimal("-0.01")}, True),
    ("Total__c < 0", {"Total__c": None}, False),
    ("StageName = 'Closed Won' AND Amount > 1000", {"StageName": "Closed Won", "Amount": Decimal(5000)}, True),
    ("StageName = 'Closed Won' && Amount > 1000", {"StageName": "Closed Won", "Amount": Decimal(5)}, False),
    ("ISBLANK(VAT_Id__c) OR NOT(Tax_Rate__c = 0)", {"VAT_Id__c": "FR1", "Tax_Rate__c": 0}, False),
    ("(a = 1 || b = 2) && !(c = true)", {"a": 1, "b": 0, "c": False}, True),
])
def test_formulas(text, record, expected):
    assert Formula(text).evaluate(record) is expected


@pytest.mark.parametrize("text", ["Total__c <", "__import__('os')", "a = 1 extra", "f(x)"])
def test_formulas_reject_anything_outside_the_grammar(text):
    with pytest.raises(FormulaError):
        Formula(text)


def _contract() -> dict[str, dict[str, str]]:
    """docs/custom-objects.md: object -> {field: type text} from every table row."""
    found: dict[str, dict[str, str]] = {}
    current = None
    for line in (ROOT / "docs" / "custom-objects.md").read_text().splitlines():
        heading = re.match(r"^###\s+`?([A-Za-z0-9_]+)`?", line)
        if heading:
            current = heading.group(1)
            found.setdefault(current, {})
            continue
        row = re.match(r"^\|\s*(`[^|]+`)\s*\|\s*([^|]+)\|", line)
        if row and current:
            for name in re.findall(r"`([A-Za-z0-9_]+)`", row.group(1)):
                found[current][name] = row.group(2).strip()
    return found


TYPE_WORDS = {"Text": {"string"}, "Number": {"double", "int"}, "Percent": {"percent"}, "Currency": {"currency"},
              "Date": {"date"}, "Date/Time": {"datetime"}, "Picklist": {"picklist"}, "Lookup": {"reference"}, "Master-Detail": {"reference"},
              "Long Text": {"textarea"}, "Checkbox": {"boolean"}}


def test_schema_declares_every_field_of_the_custom_objects_contract():
    schema = load_schema()
    contract = _contract()
    assert {"Account", "Product2", "PricebookEntry", "Opportunity", "Invoice__c", "Invoice_Line__c",
            "Payment__c"} <= set(contract)
    checked = 0
    for obj_name, fields in contract.items():
        obj = schema.get(obj_name)
        if obj is None:
            continue  # e.g. "QuoteLineItem and OpportunityLineItem" heading: checked below
        for field_name, type_text in fields.items():
            spec = obj.field(field_name)
            assert spec is not None, f"{obj_name}.{field_name} missing from schema.yaml"
            allowed: set[str] = set()
            for part in type_text.split(" / "):  # "Currency(16,2) / Percent": one of them per field
                word = next((w for w in sorted(TYPE_WORDS, key=len, reverse=True) if part.startswith(w)), None)
                allowed |= TYPE_WORDS.get(word or "", set())
            if allowed:
                assert spec.type in allowed, f"{obj_name}.{field_name}: {type_text} vs {spec.type}"
            if "ext id" in type_text:
                assert spec.external_id and spec.unique and spec.case_sensitive, f"{obj_name}.{field_name}"
            if type_text.startswith("Picklist:"):
                assert spec.values == re.findall(r"`([^`]+)`", type_text), f"{obj_name}.{field_name}"
            checked += 1
    assert checked > 60
    for obj_name in ("QuoteLineItem", "OpportunityLineItem"):
        assert schema.get(obj_name).field("Discount_Amount__c").type == "currency"
    for obj_name in ("Account", "Opportunity", "Quote", "QuoteLineItem", "OpportunityLineItem", "PricebookEntry",
                     "Invoice__c", "Invoice_Line__c", "Payment__c"):
        assert schema.get(obj_name).field("CurrencyIsoCode") is not None, obj_name


def test_schema_extensions_are_checked():
    with pytest.raises(SchemaFileError):
        load_schema({"objects": {"Thing__c": {"key_prefix": "a09", "fields": {"Bad": {"type": "reference",
                                                                                         "reference_to": "Nope"}}}}})
    with pytest.raises(SchemaFileError):
        load_schema({"validation_rules": [{"object": "Account", "error_condition": "Missing__c > 1"}]})


def _field(**spec):
    return {"objects": {"Thing__c": {"key_prefix": "a09", "fields": {"Amount__c": spec}}}}


def test_the_schema_respects_salesforce_field_limits():
    schema = load_schema()
    for obj in schema.objects.values():
        for spec in obj.fields.values():
            if spec.custom and spec.type in ("currency", "double", "percent"):
                assert spec.precision <= 18 and spec.scale < spec.precision, f"{obj.name}.{spec.name}"
    assert (schema.get("Product2").field("Included_Units__c").precision,
            schema.get("Product2").field("Included_Units__c").scale) == (18, 6)


@pytest.mark.parametrize(("spec", "message"), [
    # Setup's Number(16,6): 16 digits before the point and 6 after, 22 in all
    ({"type": "double", "precision": 22, "scale": 6}, "Thing__c.Amount__c: precision 22 (digits before the point 16 "
                                                       "+ after 6): Salesforce allows at most 18 digits in all"),
    ({"type": "currency", "precision": 6, "scale": 6}, "scale 6 must be below the precision 6"),
    ({"type": "string", "length": 256}, "a text field holds 1 to 255 characters, not 256"),
    ({"type": "textarea", "length": 200_000}, "not 200000"),
    ({"type": "date", "external_id": True}, "an external id is a text, number or email field, not date"),
    ({"type": "reference", "reference_to": "Account", "master_detail": True}, "a master-detail field is always required"),
])
def test_a_field_salesforce_would_refuse_fails_loading_with_its_reason(spec, message):
    with pytest.raises(SchemaFileError) as err:
        load_schema(_field(**spec))
    assert message in str(err.value)


def test_custom_names_longer_than_forty_characters_fail_loading():
    long_name = "A" * 41 + "__c"
    with pytest.raises(SchemaFileError, match="at most 40 characters before __c, this one 41"):
        load_schema({"objects": {"Thing__c": {"key_prefix": "a09", "fields": {long_name: {"type": "date"}}}}})
    assert load_schema({"objects": {"Thing__c": {"key_prefix": "a09", "fields": {"A" * 40 + "__c": {"type": "date"}}}}})
