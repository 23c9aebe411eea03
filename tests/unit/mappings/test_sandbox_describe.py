"""The acceptance check: the default mappings pass `mappings check` against the sandbox org's
describe (sfsandbox/schema.yaml, built into describe JSON the way the sandbox serves it)."""

from __future__ import annotations

from pathlib import Path

from mappings import check_specs, load_specs
from sfsandbox.schema import describe_object, load_schema


def sandbox_describe():
    schema = load_schema()

    def describe(name: str):
        obj = schema.objects.get(name)
        return describe_object(schema, obj, "59.0") if obj else None

    return describe


def test_the_defaults_pass_against_the_sandbox(defaults):
    assert [str(p) for p in check_specs(defaults, sandbox_describe())] == []


def test_a_broken_file_fails_against_the_sandbox(tmp_path: Path):
    (tmp_path / "broken.yaml").write_text(
        "outbound:\n  - name: x\n    object: Invoice__c\n    source: invoice\n"
        "    key: {field: Name, from: id}\n    fields:\n      Totl__c: {from: total, transform: decimal}\n")
    problems = [str(p) for p in check_specs(load_specs(tmp_path, include_defaults=False), sandbox_describe())]
    assert problems == [
        f"{tmp_path / 'broken.yaml'}:5: key.field: Invoice__c.Name is not an External ID field; mark it External ID "
        "(and Unique) in Salesforce, or key the mapping by Id",
        f"{tmp_path / 'broken.yaml'}:7: fields.Totl__c: no field 'Totl__c' on Invoice__c (did you mean 'Total__c'?)",
    ]
