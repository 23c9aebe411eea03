"""The org's schema (schema.yaml): objects, fields, relationships, validation rules.

Also the describe output built from it, and the SchemaView the SOQL engine reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sfsandbox.formula import Formula

SCHEMA_PATH = Path(__file__).with_name("schema.yaml")

NUMBER_TYPES = {"currency", "double", "percent", "int"}
TEXT_TYPES = {"string", "textarea", "picklist", "multipicklist", "email", "phone", "url", "id", "reference"}
SYSTEM_FIELDS = ("Id", "IsDeleted", "CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById", "SystemModstamp")
_SOAP_TYPES = {
    "id": "tns:ID", "reference": "tns:ID", "boolean": "xsd:boolean", "currency": "xsd:double",
    "double": "xsd:double", "percent": "xsd:double", "int": "xsd:int", "date": "xsd:date",
    "datetime": "xsd:dateTime",
}


class SchemaFileError(ValueError):
    """schema.yaml (or an extension of it) is not well-formed."""


@dataclass
class FieldSpec:
    name: str
    type: str
    label: str = ""
    length: int = 0
    precision: int = 0
    scale: int = 0
    required: bool = False
    readonly: bool = False
    create_only: bool = False
    external_id: bool = False
    unique: bool = False
    case_sensitive: bool = False
    values: list[str] = field(default_factory=list)
    restricted: bool = False
    default: Any = None
    reference_to: str | None = None
    relationship_name: str | None = None
    child_relationship: str | None = None
    cascade_delete: bool = False
    master_detail: bool = False
    currency: bool = False
    system: bool = False
    description: str = ""

    @property
    def createable(self) -> bool:
        return not self.readonly and not self.system

    @property
    def updateable(self) -> bool:
        return not self.readonly and not self.create_only and not self.system

    @property
    def nillable(self) -> bool:
        return not self.required and self.type not in ("boolean", "id") and self.name != "IsDeleted"

    @property
    def custom(self) -> bool:
        return self.name.endswith("__c")


@dataclass
class ValidationRule:
    object: str
    name: str
    formula: Formula
    message: str
    error_field: str | None


@dataclass
class ObjectDef:
    name: str
    key_prefix: str
    label: str
    custom: bool
    fields: dict[str, FieldSpec]
    plural_label: str = ""
    description: str = ""
    by_lower: dict[str, FieldSpec] = field(default_factory=dict)
    children: dict[str, tuple[str, str, bool]] = field(default_factory=dict)  # lower relname -> (child, fk, cascade)
    child_names: dict[str, str] = field(default_factory=dict)  # lower relname -> canonical relname
    rules: list[ValidationRule] = field(default_factory=list)
    relationships: dict[str, FieldSpec] = field(default_factory=dict)  # lower relname -> reference field

    def field(self, name: str) -> FieldSpec | None:
        return self.by_lower.get(name.lower())

    def external_id_fields(self) -> list[FieldSpec]:
        return [f for f in self.fields.values() if f.external_id or f.name == "Id"]


class Schema:
    def __init__(self, objects: dict[str, ObjectDef], currencies: list[str]):
        self.objects = objects
        self.currencies = currencies
        self._lower = {name.lower(): obj for name, obj in objects.items()}
        self.by_prefix = {obj.key_prefix: obj for obj in objects.values()}

    def get(self, name: str) -> ObjectDef | None:
        return self._lower.get(name.lower())

    def object_for_id(self, record_id: str) -> ObjectDef | None:
        return self.by_prefix.get(record_id[:3])


def load_schema(*extra: dict | str | Path) -> Schema:
    """schema.yaml, then each extension merged over it (objects/fields added or replaced)."""
    doc = _read(SCHEMA_PATH)
    for ext in extra:
        more = ext if isinstance(ext, dict) else _read(Path(ext))
        for name, spec in (more.get("objects") or {}).items():
            if name in doc["objects"]:
                doc["objects"][name].setdefault("fields", {}).update(spec.get("fields") or {})
                for key, value in spec.items():
                    if key != "fields":
                        doc["objects"][name][key] = value
            else:
                doc["objects"][name] = spec
        doc.setdefault("validation_rules", []).extend(more.get("validation_rules") or [])
    return build_schema(doc)


def _read(path: Path) -> dict:
    with open(path, encoding="utf-8") as handle:
        doc = yaml.safe_load(handle) or {}
    doc.setdefault("objects", {})
    return doc


_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")

#: Salesforce's limits on custom fields (what the metadata API refuses to deploy).
MAX_DIGITS = 18  # Number, Currency, Percent: digits before and after the point together
MAX_TEXT = 255
LONG_TEXT = (256, 131_072)
MAX_NAME = 40  # a custom object's or field's name, before its __c
EXTERNAL_ID_TYPES = {"string", "double", "int", "email"}


def name_problems(name: str) -> list[str]:
    """A custom object or field name that Salesforce refuses."""
    base = name[:-3] if name.endswith("__c") else name
    if len(base) > MAX_NAME:
        return [f"{name}: a custom name has at most {MAX_NAME} characters before __c, this one {len(base)}"]
    if "__" in base or base.endswith("_"):
        return [f"{name}: a custom name has no double underscore and does not end with one"]
    return []


def field_limit_problems(obj: str, spec: FieldSpec) -> list[str]:
    """Why Salesforce would refuse this custom field (none for standard fields: Salesforce owns them)."""
    if not spec.custom:
        return []
    where = f"{obj}.{spec.name}"
    problems = [f"{obj}.{p}" for p in name_problems(spec.name)]
    if spec.type in ("currency", "double", "percent"):
        if not 1 <= spec.precision <= MAX_DIGITS:
            problems.append(f"{where}: precision {spec.precision} (digits before the point "
                            f"{spec.precision - spec.scale} + after {spec.scale}): Salesforce allows at most "
                            f"{MAX_DIGITS} digits in all")
        elif not 0 <= spec.scale < spec.precision:
            problems.append(f"{where}: scale {spec.scale} must be below the precision {spec.precision} "
                            "(at least one digit before the point)")
    elif spec.type in ("string", "email", "phone", "url") and not 1 <= spec.length <= MAX_TEXT:
        problems.append(f"{where}: a text field holds 1 to {MAX_TEXT} characters, not {spec.length}")
    elif spec.type == "textarea" and spec.length != MAX_TEXT and not LONG_TEXT[0] <= spec.length <= LONG_TEXT[1]:
        problems.append(f"{where}: a text area holds {MAX_TEXT} characters, a long one {LONG_TEXT[0]} to "
                        f"{LONG_TEXT[1]:,}, not {spec.length}")
    if spec.external_id and spec.type not in EXTERNAL_ID_TYPES:
        problems.append(f"{where}: an external id is a text, number or email field, not {spec.type}")
    if spec.master_detail and not spec.required:
        problems.append(f"{where}: a master-detail field is always required")
    if spec.type == "picklist" and not spec.currency and not spec.values:
        problems.append(f"{where}: a picklist needs values")
    return problems


def build_schema(doc: dict) -> Schema:
    currencies = list(doc.get("currencies") or ["USD"])
    objects: dict[str, ObjectDef] = {}
    limits: list[str] = []
    for name, spec in doc["objects"].items():
        if not _NAME.match(name):
            raise SchemaFileError(f"bad object name {name!r}")
        if name.endswith("__c"):
            limits.extend(name_problems(name))
        prefix = str(spec.get("key_prefix") or "")
        if len(prefix) != 3:
            raise SchemaFileError(f"{name}: key_prefix must have 3 characters")
        fields: dict[str, FieldSpec] = {}
        fields["Id"] = FieldSpec("Id", "id", "Record ID", length=18, system=True, unique=True)
        fields["IsDeleted"] = FieldSpec("IsDeleted", "boolean", "Deleted", system=True, default=False)
        if spec.get("owner"):
            fields["OwnerId"] = FieldSpec("OwnerId", "reference", "Owner ID", length=18, reference_to="User",
                                          relationship_name="Owner")
        for fname, fspec in (spec.get("fields") or {}).items():
            fspec = dict(fspec or {})
            if not _NAME.match(fname) or "type" not in fspec:
                raise SchemaFileError(f"{name}.{fname}: needs a name and a type")
            unknown = set(fspec) - set(FieldSpec.__dataclass_fields__)
            if unknown:
                raise SchemaFileError(f"{name}.{fname}: unknown keys {sorted(unknown)}")
            spec_obj = FieldSpec(name=fname, **fspec)
            if spec_obj.currency:
                spec_obj.values = currencies
                spec_obj.restricted = True
                spec_obj.length = 3
            if spec_obj.type == "reference":
                spec_obj.length = 18
            spec_obj.label = spec_obj.label or _label(fname)
            limits.extend(field_limit_problems(name, spec_obj))
            fields[fname] = spec_obj
        for sysname, stype in (("CreatedDate", "datetime"), ("CreatedById", "reference"),
                               ("LastModifiedDate", "datetime"), ("LastModifiedById", "reference"),
                               ("SystemModstamp", "datetime")):
            f = FieldSpec(sysname, stype, _label(sysname), system=True)
            if stype == "reference":
                f.reference_to, f.relationship_name, f.length = "User", sysname[:-2], 18
            fields[sysname] = f
        label = str(spec.get("label") or _label(name))
        obj = ObjectDef(name=name, key_prefix=prefix, label=label,
                        custom=bool(spec.get("custom", name.endswith("__c"))), fields=fields,
                        plural_label=str(spec.get("plural_label") or label + "s"),
                        description=str(spec.get("description") or ""))
        obj.by_lower = {k.lower(): v for k, v in fields.items()}
        obj.relationships = {f.relationship_name.lower(): f for f in fields.values() if f.relationship_name}
        objects[name] = obj
    if limits:
        raise SchemaFileError("fields Salesforce would refuse:\n" + "\n".join(f"  {p}" for p in limits))
    for obj in objects.values():
        for f in obj.fields.values():
            if f.type == "reference":
                if f.reference_to not in objects:
                    raise SchemaFileError(f"{obj.name}.{f.name}: reference_to {f.reference_to!r} is not an object")
                if f.child_relationship:
                    parent = objects[f.reference_to]
                    parent.children[f.child_relationship.lower()] = (obj.name, f.name, f.cascade_delete)
                    parent.child_names[f.child_relationship.lower()] = f.child_relationship
    for raw in doc.get("validation_rules") or []:
        obj = objects.get(raw.get("object", ""))
        if obj is None:
            raise SchemaFileError(f"validation rule {raw.get('name')!r}: unknown object {raw.get('object')!r}")
        formula = Formula(str(raw["error_condition"]))
        for ref in formula.fields:
            if obj.field(ref) is None:
                raise SchemaFileError(f"validation rule {raw.get('name')!r}: unknown field {ref!r}")
        error_field = raw.get("error_field")
        if error_field and obj.field(error_field) is None:
            raise SchemaFileError(f"validation rule {raw.get('name')!r}: unknown error_field {error_field!r}")
        obj.rules.append(ValidationRule(obj.name, str(raw.get("name") or "rule"), formula,
                                        str(raw.get("message") or "Validation failed"),
                                        obj.field(error_field).name if error_field else None))
    return Schema(objects, currencies)


def _label(name: str) -> str:
    base = name[:-3] if name.endswith("__c") else name
    suffix = ""
    if base.endswith("Id") and len(base) > 2:
        base, suffix = base[:-2], " ID"
    base = base.replace("_", " ")
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", base).strip() + suffix


# ------------------------------------------------------------------ describe


def describe_global(schema: Schema, version: str) -> dict:
    return {
        "encoding": "UTF-8",
        "maxBatchSize": 200,
        "sobjects": [_object_summary(obj, version) for obj in schema.objects.values()],
    }


def _object_summary(obj: ObjectDef, version: str) -> dict:
    base = f"/services/data/v{version}/sobjects/{obj.name}"
    return {
        "activateable": False, "createable": True, "custom": obj.custom, "customSetting": False,
        "deletable": True, "deprecatedAndHidden": False, "feedEnabled": False, "hasSubtypes": False,
        "isSubtype": False, "keyPrefix": obj.key_prefix, "label": obj.label, "labelPlural": obj.plural_label,
        "layoutable": True, "mergeable": False, "mruEnabled": False, "name": obj.name, "queryable": True,
        "replicateable": True, "retrieveable": True, "searchable": True, "triggerable": True,
        "undeletable": True, "updateable": True,
        "urls": {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"},
    }


def describe_object(schema: Schema, obj: ObjectDef, version: str) -> dict:
    out = _object_summary(obj, version)
    out["fields"] = [describe_field(f) for f in obj.fields.values()]
    children = []
    for other in schema.objects.values():
        for f in other.fields.values():
            if f.type == "reference" and f.reference_to == obj.name:
                children.append({
                    "cascadeDelete": f.cascade_delete, "childSObject": other.name, "deprecatedAndHidden": False,
                    "field": f.name, "junctionIdListNames": [], "junctionReferenceTo": [],
                    "relationshipName": f.child_relationship, "restrictedDelete": False,
                })
    out["childRelationships"] = children
    out["recordTypeInfos"] = []
    return out


def describe_field(f: FieldSpec) -> dict:
    number = f.type in NUMBER_TYPES
    return {
        "autoNumber": False,
        "byteLength": f.length * 3 if f.type in TEXT_TYPES else 0,
        "calculated": False,
        "caseSensitive": f.case_sensitive,
        "createable": f.createable,
        "custom": f.custom,
        "defaultValue": f.default if f.default is not None and f.type != "boolean" else None,
        "defaultedOnCreate": f.default is not None or f.system,
        "digits": 0 if f.type != "int" else 9,
        "externalId": f.external_id,
        "filterable": f.type != "textarea" or f.length <= 255,
        "groupable": f.type not in ("textarea", "currency", "double", "percent"),
        "idLookup": f.name == "Id" or f.external_id,
        "label": f.label,
        "length": f.length if f.type in TEXT_TYPES else 0,
        "name": f.name,
        "nameField": f.name == "Name",
        "nillable": f.nillable,
        "picklistValues": [
            {"active": True, "defaultValue": v == f.default, "label": v, "validFor": None, "value": v}
            for v in f.values
        ],
        "precision": f.precision if number and f.type != "int" else 0,
        "referenceTo": [f.reference_to] if f.reference_to else [],
        "relationshipName": f.relationship_name,
        "restrictedPicklist": f.restricted,
        "scale": f.scale if number else 0,
        "soapType": _SOAP_TYPES.get(f.type, "xsd:string"),
        "sortable": f.type != "textarea" or f.length <= 255,
        "type": f.type,
        "unique": f.unique,
        "updateable": f.updateable,
    }
