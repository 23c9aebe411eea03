"""The Salesforce package (salesforce/) and docs/custom-objects.md against the one schema.

The schema (sfsandbox/schema.yaml) is the source; scripts/salesforce_package.py writes the
package and the reference page from it and from the shipped mappings. These tests fail when
the committed files differ from what it writes, when a metadata file breaks a Salesforce
limit, and when the integration user's permission set grants anything the mappings do not
need (or misses anything they do).
"""

from __future__ import annotations

import importlib.util
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mappings import load_specs
from mappings.soql import line_fields, selected_fields
from sfsandbox.schema import load_schema

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "salesforce" / "force-app" / "main" / "default"
NS = {"m": "http://soap.sforce.com/2006/04/metadata"}


def _load_generator():
    spec = importlib.util.spec_from_file_location("salesforce_package", ROOT / "scripts" / "salesforce_package.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["salesforce_package"] = module
    spec.loader.exec_module(module)
    return module


pkg = _load_generator()


@pytest.fixture(scope="module")
def schema():
    return load_schema()


@pytest.fixture(scope="module")
def specs():
    return load_specs(None)


def _xml(path: Path) -> ET.Element:
    return ET.parse(path).getroot()


def _text(root: ET.Element, tag: str) -> str | None:
    found = root.find(f"m:{tag}", NS)
    return found.text if found is not None else None


# ------------------------------------------------------------------ drift


def test_the_committed_package_and_docs_are_what_the_generator_writes():
    found = pkg.differences(ROOT)
    assert not found, ("the Salesforce package or docs/custom-objects.md differs from sfsandbox/schema.yaml and "
                       "the mappings; run `python scripts/salesforce_package.py`:\n" + "\n".join(found))


def test_a_changed_schema_shows_as_a_difference(tmp_path, schema, specs):
    files = pkg.generate(schema, specs)
    pkg.write(tmp_path, files)
    assert pkg.differences(tmp_path, files) == []
    changed = load_schema({"objects": {"Account": {"fields": {"Region__c": {"type": "string", "length": 40}}}}})
    found = pkg.differences(tmp_path, pkg.generate(changed, specs))
    assert "missing: salesforce/force-app/main/default/objects/Account/fields/Region__c.field-meta.xml" in found
    assert "differs: docs/custom-objects.md" in found
    stale = tmp_path / pkg.SOURCE / "objects" / "Account" / "fields" / "Old__c.field-meta.xml"
    stale.write_text("<CustomField/>")
    assert f"not generated (stale): {stale.relative_to(tmp_path)}" in pkg.differences(tmp_path, files)


def test_the_reference_page_says_it_is_generated_and_how_to_regenerate():
    head = (ROOT / "docs" / "custom-objects.md").read_text(encoding="utf-8").splitlines()[:8]
    assert any("Generated" in line and "sfsandbox/schema.yaml" in line for line in head)
    assert any("python scripts/salesforce_package.py" in line for line in head)


# ------------------------------------------------------------------ metadata against the schema and the limits


def test_every_metadata_file_is_well_formed_and_within_salesforce_limits():
    files = sorted(SOURCE.rglob("*-meta.xml"))
    assert len(files) > 100
    assert pkg.metadata_problems(SOURCE) == []


def _field_files() -> dict[tuple[str, str], Path]:
    return {(p.parent.parent.name, p.name.removesuffix(".field-meta.xml")): p
            for p in SOURCE.glob("objects/*/fields/*.field-meta.xml")}


def test_every_custom_field_of_the_schema_has_its_field_file_and_no_other(schema):
    expected = {(o.name, f.name) for o in schema.objects.values() for f in o.fields.values() if f.custom}
    assert set(_field_files()) == expected
    for obj in schema.objects.values():
        object_file = SOURCE / "objects" / obj.name / f"{obj.name}.object-meta.xml"
        assert object_file.is_file() == obj.custom, obj.name  # standard objects: only their fields


@pytest.mark.parametrize("key", sorted(_field_files()), ids=lambda k: ".".join(k))
def test_each_field_file_matches_the_schema(schema, key):
    obj_name, field_name = key
    spec = schema.get(obj_name).field(field_name)
    root = _xml(_field_files()[key])
    kind = _text(root, "type")
    assert _text(root, "fullName") == field_name
    assert kind == pkg.metadata_type(spec)
    assert _text(root, "label") == spec.label
    if kind in ("Number", "Currency", "Percent"):
        assert (int(_text(root, "precision")), int(_text(root, "scale"))) == (spec.precision, spec.scale)
        assert int(_text(root, "precision")) <= 18
    if kind in ("Text", "LongTextArea"):
        assert int(_text(root, "length")) == spec.length
    if kind in ("Text", "Number", "Email"):
        assert (_text(root, "externalId"), _text(root, "unique")) == (str(spec.external_id).lower(),
                                                                      str(spec.unique).lower())
    if kind == "Picklist":
        values = [v.text for v in root.findall("m:valueSet/m:valueSetDefinition/m:value/m:fullName", NS)]
        assert values == spec.values
        assert _text(root.find("m:valueSet", NS), "restricted") == str(spec.restricted).lower()
    if kind in ("Lookup", "MasterDetail"):
        assert _text(root, "referenceTo") == spec.reference_to
        assert _text(root, "relationshipName") + "__r" == spec.child_relationship
    if kind == "MasterDetail":
        assert spec.required and root.find("m:required", NS) is None


def test_a_field_of_22_digits_is_refused_by_the_limits_check(tmp_path):
    # Setup's Number(16,6): 16 digits before the point and 6 after, precision 22 in the metadata
    folder = tmp_path / "objects" / "Product2" / "fields"
    folder.mkdir(parents=True)
    (folder / "Included_Units__c.field-meta.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<CustomField xmlns="http://soap.sforce.com/2006/04/metadata">'
        "<fullName>Included_Units__c</fullName><label>Included Units</label><precision>22</precision>"
        "<scale>6</scale><type>Number</type></CustomField>")
    assert pkg.metadata_problems(tmp_path) == [
        "Product2.Included_Units__c: precision 22 (16 digits before the point + 6 after): Salesforce allows at "
        "most 18 digits in all"]
    (folder / "Included_Units__c.field-meta.xml").write_text(
        (folder / "Included_Units__c.field-meta.xml").read_text().replace("<precision>22", "<precision>18"))
    assert pkg.metadata_problems(tmp_path) == []


def test_long_names_text_lengths_and_bad_external_ids_are_refused(tmp_path):
    folder = tmp_path / "objects" / "Invoice__c" / "fields"
    folder.mkdir(parents=True)
    name = "A" * 41 + "__c"

    def field(file: str, body: str) -> None:
        (folder / f"{file}.field-meta.xml").write_text(
            f'<CustomField xmlns="http://soap.sforce.com/2006/04/metadata"><fullName>{file}</fullName>{body}'
            "</CustomField>")

    field(name, "<length>10</length><type>Text</type>")
    field("Note__c", "<length>300</length><type>Text</type>")
    field("Due__c", "<externalId>true</externalId><type>Date</type>")
    field("Key__c", "<externalId>false</externalId><length>64</length><type>Text</type><unique>true</unique>")
    problems = pkg.metadata_problems(tmp_path)
    assert f"Invoice__c.{name}: a custom name has at most 40 characters before __c, this one 41" in problems
    assert "Invoice__c.Note__c: Text holds 1 to 255 characters, not 300" in problems
    assert "Invoice__c.Due__c: an external id is a Text, Number or Email field, not Date" in problems
    assert "Invoice__c.Key__c: unique but not an external id: billsync cannot upsert by it" in problems


def test_every_key_billsync_upserts_by_is_an_external_id_and_unique(schema, specs):
    keys = [(s.object, s.key.name) for s in specs.outbound if s.key.name != "Id"]
    keys += [(s.object, f.name.split(".")[1]) for s in specs.outbound for f in s.fields if "." in f.name]
    assert ("Invoice__c", "Billsync_Invoice_Id__c") in keys
    for obj_name, key in keys:
        target = obj_name
        if key not in schema.get(obj_name).fields:  # a parent's key, through a relationship
            target = next(o.name for o in schema.objects.values() if key in o.fields)
        spec = schema.get(target).field(key)
        assert spec.external_id and spec.unique, f"{target}.{key}"
        root = _xml(SOURCE / "objects" / target / "fields" / f"{key}.field-meta.xml")
        assert (_text(root, "externalId"), _text(root, "unique")) == ("true", "true"), f"{target}.{key}"


def test_picklist_values_are_the_ones_the_mappings_read_and_write(schema, specs):
    checked = 0
    for spec in specs.inbound:
        for f in spec.fields:
            if f.transform is not None and f.transform.name == "picklist_map":
                values = schema.get(spec.object).field(f.sources[0]).values
                assert set(f.params["map"]) <= set(values), f"{spec.object}.{f.sources[0]}"
                checked += 1
    for spec in specs.outbound:
        for f in spec.fields:
            if f.transform is not None and f.transform.name == "picklist_map":
                values = schema.get(spec.object).field(f.name).values
                assert set(f.params["map"].values()) <= set(values), f"{spec.object}.{f.name}"
                checked += 1
    assert checked >= 8


def test_child_objects_are_master_detail_and_controlled_by_their_parent(schema):
    for child, parent in (("Invoice_Line__c", "Invoice__c"), ("Billsync_Subscription_Item__c", "Billsync_Subscription__c")):
        spec = next(f for f in schema.get(child).fields.values() if f.reference_to == parent)
        assert spec.master_detail and spec.required
        root = _xml(SOURCE / "objects" / child / f"{child}.object-meta.xml")
        assert _text(root, "sharingModel") == "ControlledByParent"


# ------------------------------------------------------------------ the integration user's permission set


def _mapped(schema, specs) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Per object, the custom fields the mappings read and the ones they write."""
    reads: dict[str, set[str]] = {}
    writes: dict[str, set[str]] = {}

    def walk(obj_name: str, path: str, into: dict[str, set[str]]) -> None:
        obj = schema.get(obj_name)
        *hops, last = path.split(".")
        for hop in hops:
            ref = obj.relationships[hop.lower()]
            reads.setdefault(obj.name, set()).add(ref.name)
            obj = schema.get(ref.reference_to)
        into.setdefault(obj.name, set()).add(obj.field(last).name)

    for spec in specs.inbound:
        for path in selected_fields(spec):
            walk(spec.object, path, reads)
        for source in spec.lines.sources if spec.lines else []:
            for path in line_fields(spec, source):
                walk(source.object, path, reads)
    for spec in specs.outbound:
        for f in spec.fields:
            relation, _, key = f.name.rpartition(".")
            if relation:
                ref = schema.get(spec.object).relationships[relation.lower()]
                writes.setdefault(spec.object, set()).add(ref.name)
                walk(ref.reference_to, key, reads)
            else:
                writes.setdefault(spec.object, set()).add(f.name)
        if spec.key.name != "Id":
            writes.setdefault(spec.object, set()).add(spec.key.name)
    return reads, writes


def test_the_integration_permission_set_grants_exactly_what_the_mappings_read_and_write(schema, specs):
    """... and what the push writes on the records of a self-service order (connector/sync/deals.py): it
    creates Accounts and Opportunities."""
    root = _xml(SOURCE / "permissionsets" / "Billsync_Integration.permissionset-meta.xml")
    granted = {p.find("m:field", NS).text: (p.find("m:readable", NS).text, p.find("m:editable", NS).text)
               for p in root.findall("m:fieldPermissions", NS)}
    reads, writes = _mapped(schema, specs)
    writes = {**writes, **{o: set(writes.get(o, set())) | set(n) for o, n in pkg.CONNECTOR_WRITES.items()}}
    expected: dict[str, tuple[str, str]] = {}
    for obj, names in [*reads.items(), *writes.items()]:
        for name in names:
            spec = schema.get(obj).field(name)
            if spec.custom and not spec.required:  # required fields take no field permission
                expected[f"{obj}.{name}"] = ("true", "true" if name in writes.get(obj, set()) else "false")
    assert granted == expected
    assert granted["Invoice__c.Total__c"] == ("true", "true")
    assert granted["Account.Tax_Rate__c"] == ("true", "false")  # read, never written
    assert "Account.Billsync_Customer_Id__c" in granted and "Invoice_Line__c.Invoice__c" not in granted

    objects = {p.find("m:object", NS).text: {c.tag.split("}")[1]: c.text for c in p}
               for p in root.findall("m:objectPermissions", NS)}
    parents = {"OpportunityLineItem": "Opportunity", "QuoteLineItem": "Quote", "PricebookEntry": "Pricebook2"}
    mapped_objects = {parents.get(o, o) for o in [*reads, *writes]}
    assert set(objects) == mapped_objects
    for name, flags in objects.items():
        # deleting is only for the stale invoice lines left by moving records to this installation's keys
        assert flags["allowDelete"] == ("true" if name == "Invoice_Line__c" else "false"), name
        assert flags["modifyAllRecords"] == "false", name
        assert flags["allowEdit"] == ("true" if name in writes else "false"), name
        assert flags["allowCreate"] == ("true" if name.endswith("__c") or name in pkg.CONNECTOR_CREATES else "false"), name
    assert root.find("m:userPermissions/m:name", NS).text == "ApiEnabled"
    assert granted["Opportunity.Term_Months__c"] == ("true", "true")  # set on the deals it sells


def test_reps_read_billsync_figures_and_set_only_what_billsync_reads_on_deals():
    root = _xml(SOURCE / "permissionsets" / "Billsync_Sales.permissionset-meta.xml")
    granted = {p.find("m:field", NS).text: p.find("m:editable", NS).text for p in root.findall("m:fieldPermissions", NS)}
    assert granted["Opportunity.Subscription_Reference__c"] == "true"
    assert granted["Opportunity.Billsync_Preview_MRR__c"] == "false"
    assert granted["Invoice__c.Total__c"] == "false" and granted["Account.MRR__c"] == "false"
    objects = {p.find("m:object", NS).text: p.find("m:allowCreate", NS).text for p in root.findall("m:objectPermissions", NS)}
    assert objects["Opportunity"] == "true" and objects["Invoice__c"] == "false"
