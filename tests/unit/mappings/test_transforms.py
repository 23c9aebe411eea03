"""Every transform of the registry, with good and bad input, through apply_inbound:
each bad value's message names the field and the value."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from mappings import TRANSFORMS, InvalidRecordError, MappingContext, apply_inbound
from mappings.spec import FieldSpec, InboundSpec

ACCOUNT_ID = "0017F00000AbCdEQAV"


def spec_with(transform: str, params: dict | None = None, sources=("Value__c",)) -> InboundSpec:
    t = TRANSFORMS[transform]
    field = FieldSpec(name="value", sources=sources if t.uses_source else (), transform=t, params=params or {})
    key = FieldSpec(name="key", sources=("Id",), transform=TRANSFORMS["string"], required=True)
    return InboundSpec(name="t", file="t.yaml", line=1, object="Thing__c", key=key, command="upsert_customer",
                       command_choice=None, filter="", fields=[field], lines=None)


def run(transform, value, params=None, context=None, record=None):
    record = {"Id": ACCOUNT_ID, "Value__c": value, **(record or {})}
    out = apply_inbound(spec_with(transform, params), record, context or MappingContext("Europe/Paris"))
    return out["data"]["value"]


TIERS = '[{"up_to": 5, "unit_price": "200"}, {"up_to": 10, "unit_price": 150}, {"up_to": null, "unit_price": "100", "flat_fee": "0"}]'

GOOD = [
    ("string", None, "  Acme GmbH ", "Acme GmbH"),
    ("string", {"max_length": 5, "truncate": True}, "abcdefgh", "abcd…"),
    ("decimal", None, Decimal("12.50"), Decimal("12.50")),
    ("decimal", None, "0.0004", Decimal("0.0004")),
    ("decimal", {"places": 2, "min": 0}, 7, Decimal(7)),
    ("integer", None, Decimal("30.0"), 30),
    ("integer", {"min": 1, "max": 31}, "31", 31),
    ("boolean", None, True, True),
    ("boolean", None, "false", False),
    ("date", None, "2026-02-28", date(2026, 2, 28)),
    ("datetime_to_date", None, "2026-01-31T23:30:00.000+0000", date(2026, 2, 1)),  # 00:30 in Paris
    ("datetime", None, "2026-01-31T23:30:00.000+0000", datetime(2026, 1, 31, 23, 30, tzinfo=UTC)),
    ("datetime", None, "2026-02-01T00:30:00+01:00", datetime(2026, 1, 31, 23, 30, tzinfo=UTC)),
    ("datetime", None, 1714156685000, datetime(2024, 4, 26, 18, 38, 5, tzinfo=UTC)),
    ("percent", None, "20", Decimal(20)),
    ("percent", None, Decimal("12.5"), Decimal("12.5")),
    ("picklist_map", {"map": {"Closed Won": "won", "Lost": None}}, "Closed Won", "won"),
    ("default", {"value": "fallback"}, "", "fallback"),
    ("default", {"value": "fallback"}, " given ", "given"),
    ("constant", {"value": "recurring"}, "ignored", "recurring"),
    ("currency_code", None, "eur", "EUR"),
    ("timezone", None, "America/New_York", "America/New_York"),
    ("json_tiers", None, TIERS, [
        {"up_to": Decimal(5), "unit_price": Decimal(200), "flat_fee": Decimal(0)},
        {"up_to": Decimal(10), "unit_price": Decimal(150), "flat_fee": Decimal(0)},
        {"up_to": None, "unit_price": Decimal(100), "flat_fee": Decimal(0)},
    ]),
    ("json_tiers", None, '[{"up_to": null, "unit_price": 0.10, "flat_fee": 5}]',
     [{"up_to": None, "unit_price": Decimal("0.10"), "flat_fee": Decimal(5)}]),
    ("split_codes", None, " LIC, SUPPORT,,LIC ", ["LIC", "SUPPORT"]),
    ("split_codes", {"separator": ";"}, "A;B", ["A", "B"]),
    ("id18", None, "0067F000003pmdW", "0067F000003pmdWQAQ"),
    ("id18", None, "00D7F00000107XsUAI", "00D7F00000107XsUAI"),
    ("template", {"template": "{Name} ({Value__c})"}, "7", "Acme (7)"),
]

BAD = [
    ("string", None, 42, "Value__c: 42 is not text"),
    ("string", {"max_length": 3}, "abcd", "Value__c: 'abcd' is longer than 3 characters (4)"),
    ("decimal", None, "abc", "Value__c: 'abc' is not a decimal number"),
    ("decimal", None, 12.5, "Value__c: 12.5 is a binary float; exact values must arrive as Decimal or text"),
    ("decimal", None, "NaN", "Value__c: 'NaN' is not a decimal number"),
    ("decimal", None, Decimal("Infinity"), "Value__c: Infinity is not a finite decimal number"),
    ("decimal", None, True, "Value__c: True is not a decimal number"),
    ("decimal", {"places": 2}, "1.005", "Value__c: '1.005' has more than 2 decimal places"),
    ("decimal", {"min": 0}, "-1", "Value__c: '-1' is below the minimum 0"),
    ("decimal", {"max": 10}, Decimal("10.01"), "Value__c: 10.01 is above the maximum 10"),
    ("integer", None, "3.5", "Value__c: '3.5' is not a whole number"),
    ("integer", None, 3.0, "Value__c: 3.0 is a binary float; exact values must arrive as Decimal or text"),
    ("integer", {"max": 31}, 32, "Value__c: 32 is above the maximum 31"),
    ("boolean", None, "yes", "Value__c: 'yes' is not true or false"),
    ("boolean", None, 1, "Value__c: 1 is not true or false"),
    ("date", None, "2026-02-30", "Value__c: '2026-02-30' is not a valid calendar date"),
    ("date", None, "31/01/2026", "Value__c: '31/01/2026' is not a date (YYYY-MM-DD)"),
    ("date", None, "2026-01-31T23:30:00.000+0000",
     "Value__c: '2026-01-31T23:30:00.000+0000' is a datetime, not a date (YYYY-MM-DD); "
     "use the datetime_to_date transform"),
    ("datetime_to_date", None, "2026-01-31", "Value__c: '2026-01-31' is a date, not a datetime; use the date transform"),
    ("datetime_to_date", None, "2026-01-31T23:30:00", "Value__c: '2026-01-31T23:30:00' has no timezone offset"),
    ("datetime", None, "tomorrow", "Value__c: 'tomorrow' is not a datetime like 2026-01-31T23:30:00.000+0000"),
    ("datetime", None, "2026-13-01T00:00:00Z", "Value__c: '2026-13-01T00:00:00Z' is not a valid datetime"),
    ("percent", None, "150", "Value__c: '150' is not a percentage between 0 and 100"),
    ("percent", None, "-1", "Value__c: '-1' is not a percentage between 0 and 100"),
    ("picklist_map", {"map": {"Closed Won": "won"}}, "Upsell", "Value__c: 'Upsell' is not one of the mapped values: 'Closed Won'"),
    ("default", {"value": "x"}, 0.5, "Value__c: 0.5 is a binary float; exact values must arrive as Decimal or text"),
    ("currency_code", None, "EURO", "Value__c: 'EURO' is not a 3-letter ISO 4217 currency code"),
    ("timezone", None, "Mars/Olympus", "Value__c: 'Mars/Olympus' is not an IANA time zone (e.g. Europe/Paris)"),
    ("timezone", None, "../../etc/passwd", "Value__c: '../../etc/passwd' is not an IANA time zone (e.g. Europe/Paris)"),
    ("json_tiers", None, '[{"up_to": 5,', "is not valid JSON (Expecting property name enclosed in double quotes at line 1 column 14)"),
    ("json_tiers", None, '{"up_to": 5}', 'is not a JSON list of tiers'),
    ("json_tiers", None, '[{"up_to": NaN, "unit_price": "1"}]', "is not valid JSON (NaN is not a number)"),
    ("json_tiers", None, '[{"up_to": null, "unit_price": "abc"}]', "tier 1: unit_price 'abc' is not a decimal number"),
    ("json_tiers", None, '[{"up_to": null, "unit_price": "1", "fee": "2"}]', "tier 1: unknown key 'fee'"),
    ("json_tiers", None, '[{"up_to": 10, "unit_price": "1"}, {"up_to": 5, "unit_price": "1"}, {"up_to": null, "unit_price": "1"}]',
     "tier 2: up_to 5 is not above the previous tier's 10"),
    ("json_tiers", None, '[{"up_to": 5, "unit_price": "1"}]', "tier 1: the last tier must have up_to null"),
    ("json_tiers", None, '[{"up_to": null, "unit_price": "1"}, {"up_to": null, "unit_price": "1"}]',
     "tier 1: only the last tier may have up_to null"),
    ("json_tiers", None, [{"up_to": None, "unit_price": 0.1}], "tier 1: unit_price 0.1 is a binary float"),
    ("json_tiers", None, '[{"up_to": null, "unit_price": "-1"}]', "tier 1: unit_price -1 is negative"),
    ("split_codes", None, 5, "Value__c: 5 is not text"),
    ("id18", None, "001abc", "Value__c: '001abc' is not a Salesforce id (15 or 18 letters and digits)"),
    ("id18", None, "0067F000003pmdWAAA", "Value__c: '0067F000003pmdWAAA' has a wrong 18-character suffix (expected 'QAQ')"),
]


@pytest.mark.parametrize(("transform", "params", "value", "expected"), GOOD)
def test_good_input(transform, params, value, expected):
    assert run(transform, value, params, record={"Name": "Acme"}) == expected


@pytest.mark.parametrize(("transform", "params", "value", "expected"), BAD)
def test_bad_input_names_the_field_and_the_value(transform, params, value, expected):
    with pytest.raises(InvalidRecordError) as raised:
        run(transform, value, params)
    [error] = raised.value.errors
    assert expected in str(error)
    assert str(error).startswith("Value__c: ")
    assert error.field == "Value__c" and error.value == value


def test_every_transform_has_good_and_bad_cases():
    # constant and template read no field, so their bad input is a bad spec: see below and test_loading;
    # base64 only writes (a file's bytes to a blob field): see the next test.
    assert {t for t, *_ in GOOD} == set(TRANSFORMS) - {"base64"}
    assert {t for t, *_ in BAD} == set(TRANSFORMS) - {"constant", "template", "base64"}


def test_base64_writes_a_files_bytes_and_refuses_anything_else():
    from mappings import apply_outbound, load_specs

    specs = load_specs(None)
    [spec] = specs.outbound_for("document")
    record = {"id": "inst-doc-1", "number": "INV-1", "kind": "invoice", "title": "INV-1", "file_name": "INV-1.pdf",
              "pdf": b"%PDF-1.7", "sha256": "ab", "description": "", "salesforce_record_id": "a00000000000001AAA"}
    assert apply_outbound(spec, record)["VersionData"] == "JVBERi0xLjc="
    with pytest.raises(InvalidRecordError, match="document inst-doc-1: pdf: '%PDF' is str text, not the bytes of a file"):
        apply_outbound(spec, {**record, "pdf": "%PDF"})


def test_a_template_whose_placeholder_is_missing_from_the_record_names_it():
    with pytest.raises(InvalidRecordError) as raised:
        run("template", "x", {"template": "{Nmae}"})
    assert str(raised.value) == "Nmae: is missing from the record (the query did not select it)"


def test_a_template_falls_back_to_otherwise_when_a_placeholder_is_empty():
    params = {"template": "{Number__c}", "otherwise": "DRAFT-{Value__c}"}
    assert run("template", "42", params, record={"Number__c": None}) == "DRAFT-42"
    assert run("template", "42", params, record={"Number__c": "INV-1"}) == "INV-1"


def test_datetime_to_date_prefers_the_customer_timezone():
    late_utc = "2026-01-31T23:30:00.000+0000"
    assert run("datetime_to_date", late_utc, context=MappingContext("Europe/Paris")) == date(2026, 2, 1)
    new_york = MappingContext("Europe/Paris", customer_timezone="America/New_York")
    assert run("datetime_to_date", late_utc, context=new_york) == date(2026, 1, 31)
    assert run("datetime_to_date", late_utc, context=MappingContext("UTC")) == date(2026, 1, 31)


def test_a_context_with_a_bad_timezone_is_refused():
    with pytest.raises(ValueError, match="'Europe/Pariss' is not an IANA time zone"):
        MappingContext("Europe/Pariss")


def test_empty_values_are_empty_not_errors_unless_required():
    assert run("decimal", None) is None
    assert run("string", "   ") is None
    spec = spec_with("decimal")
    spec.fields[0].required = True
    with pytest.raises(InvalidRecordError, match=r"^Value__c: is required but empty$"):
        apply_inbound(spec, {"Id": ACCOUNT_ID, "Value__c": ""}, MappingContext())
