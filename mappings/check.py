"""``check_specs``: validate mapping specs against the org's describe metadata.

``describe(object_name)`` returns Salesforce's describe JSON for an object, or ``None``
when the org has no such object. Checked:

- the object exists; every field path resolves, walking ``Account.CurrencyIsoCode``
  through the reference field whose relationshipName is ``Account`` (names are
  case-sensitive in mapping files, because record JSON keys are);
- the transform reads (inbound) or writes (outbound) the field's type: ``decimal`` on a
  text field is a wrong type; ``date`` on a datetime field is one too (use
  ``datetime_to_date``, which takes the date in the customer's time zone); ``integer``
  on a number field with decimal places is one too;
- picklist maps use the picklist's values; constants written to a picklist are values of it;
- line sources: the child relationship exists and leads to the line object; ``match`` and
  ``when`` fields exist;
- outbound: the key field is ``Id`` or an External ID field; every written field can be
  written (``updateable`` for updates by Id, ``createable`` or ``updateable`` for upserts);
  ``Parent__r.Ext__c`` names a relationship and an External ID field on its target.

Problems from loading (``MappingSet.problems``) are included, all sorted by file and line.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from mappings.errors import Problem
from mappings.spec import FieldSpec, InboundSpec, MappingSet, OutboundSpec

Describe = Callable[[str], dict[str, Any] | None]


class _Unresolved(Exception):
    pass


def _did_you_mean(word: str, choices: list[str]) -> str:
    for choice in choices:
        if choice.lower() == word.lower():
            return f" (names are case-sensitive: write {choice!r})"
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Org:
    def __init__(self, describe: Describe):
        self._describe = describe
        self._cache: dict[str, dict[str, Any] | None] = {}

    def describe(self, name: str) -> dict[str, Any] | None:
        if name not in self._cache:
            self._cache[name] = self._describe(name)
        return self._cache[name]

    def fields(self, name: str) -> dict[str, dict[str, Any]]:
        described = self.describe(name) or {}
        return {f["name"]: f for f in described.get("fields", [])}

    def field(self, obj: str, name: str) -> dict[str, Any]:
        fields = self.fields(obj)
        if name in fields:
            return fields[name]
        raise _Unresolved(f"no field {name!r} on {obj}{_did_you_mean(name, list(fields))}")

    def relationship(self, obj: str, name: str) -> dict[str, Any]:
        fields = self.fields(obj)
        for f in fields.values():
            if f.get("relationshipName") == name:
                return f
        names = [f["relationshipName"] for f in fields.values() if f.get("relationshipName")]
        raise _Unresolved(f"{name!r} is not a relationship on {obj}{_did_you_mean(name, names)}")

    def target(self, obj: str, reference: dict[str, Any]) -> str:
        targets = reference.get("referenceTo") or []
        if not targets:
            raise _Unresolved(f"{obj}.{reference['name']} refers to no object")
        if self.describe(targets[0]) is None:
            raise _Unresolved(f"{obj}.{reference['name']} refers to {targets[0]}, which the org does not have")
        return targets[0]

    def resolve(self, obj: str, path: str) -> tuple[str, dict[str, Any]]:
        """(object holding the field, the field's describe) for ``Parent.Field`` paths."""
        *parents, last = path.split(".")
        current = obj
        for segment in parents:
            current = self.target(current, self.relationship(current, segment))
        return current, self.field(current, last)


def _type_reason(transform_name: str, allowed: frozenset[str], path: str, field: dict[str, Any]) -> str:
    hint = ""
    if transform_name == "date" and field["type"] == "datetime":
        hint = "; use datetime_to_date, which takes the date in the customer's time zone"
    return (f"wrong type: {path} is a {field['type']} field, and transform {transform_name!r} takes "
            f"{', '.join(sorted(allowed))}{hint}")


def _picklist_values(field: dict[str, Any]) -> list[str] | None:
    if field.get("type") not in ("picklist", "multipicklist"):
        return None
    return [v["value"] for v in field.get("picklistValues") or []]


class _Checker:
    def __init__(self, org: _Org):
        self.org = org
        self.problems: list[Problem] = []

    def add(self, file: str, line: int, where: str, reason: str) -> None:
        self.problems.append(Problem(file, line, where, reason))

    def object_exists(self, file: str, line: int, name: str, where: str = "object") -> bool:
        if self.org.describe(name) is not None:
            return True
        self.add(file, line, where, f"the org has no object {name!r}")
        return False

    # inbound ------------------------------------------------------------------------------

    def inbound_field(self, file: str, obj: str, spec: FieldSpec) -> None:
        transform = spec.transform
        for path in spec.reads:
            from_source = path in spec.sources
            line = spec.line_of("from" if from_source else "template")
            try:
                _, field = self.org.resolve(obj, path)
            except _Unresolved as unresolved:
                self.add(file, line, spec.label, str(unresolved))
                continue
            if transform is None or not from_source:
                continue
            if not transform.accepts_type(field["type"], outbound=False):
                self.add(file, spec.line_of("transform"), spec.label,
                         _type_reason(transform.name, transform.reads, f"{obj}.{path}", field))
                continue
            if transform.name == "integer" and (field.get("scale") or 0) > 0:
                self.add(file, spec.line_of("transform"), spec.label,
                         f"wrong type: {path} has {field['scale']} decimal places; use decimal")
            values = _picklist_values(field)
            if transform.name == "picklist_map" and values is not None:
                for key in spec.params.get("map", {}):
                    if key not in values:
                        self.add(file, spec.line_of("map"), spec.label,
                                 f"map key {key!r} is not a value of the {path} picklist{_did_you_mean(key, values)}"
                                 f"; values: {', '.join(values)}")

    def inbound(self, spec: InboundSpec) -> None:
        file = spec.file
        if not self.object_exists(file, spec.line_of("object"), spec.object):
            return
        self.inbound_field(file, spec.object, spec.key)
        choice = spec.command_choice
        if choice is not None:
            try:
                _, field = self.org.resolve(spec.object, choice.source)
                values = _picklist_values(field)
                for key in choice.map if values is not None else ():
                    if key not in values:
                        self.add(file, choice.option_lines.get("map", choice.line), "command.map",
                                 f"{key!r} is not a value of the {choice.source} picklist"
                                 f"{_did_you_mean(key, values)}; values: {', '.join(values)}")
            except _Unresolved as unresolved:
                self.add(file, choice.option_lines.get("from", choice.line), "command.from", str(unresolved))
        for field_spec in spec.fields:
            self.inbound_field(file, spec.object, field_spec)
        for attribute in spec.attributes:
            self.inbound_field(file, spec.object, attribute.value)
        if spec.lines is None:
            return
        children = (self.org.describe(spec.object) or {}).get("childRelationships") or []
        for index, source in enumerate(spec.lines.sources):
            where = f"lines.sources[{index}]"
            if source.when is not None:
                try:
                    self.org.resolve(spec.object, source.when)
                except _Unresolved as unresolved:
                    self.add(file, source.option_lines.get("when", source.line), f"{where}.when", str(unresolved))
            if not self.object_exists(file, source.option_lines.get("object", source.line), source.object,
                                      f"{where}.object"):
                continue
            if source.relationship is not None:
                found = [c for c in children if c.get("relationshipName") == source.relationship]
                names = [c["relationshipName"] for c in children if c.get("relationshipName")]
                if not found:
                    self.add(file, source.option_lines.get("relationship", source.line), f"{where}.relationship",
                             f"{source.relationship!r} is not a child relationship of {spec.object}"
                             f"{_did_you_mean(source.relationship, names)}")
                elif found[0].get("childSObject") != source.object:
                    self.add(file, source.option_lines.get("relationship", source.line), f"{where}.relationship",
                             f"{source.relationship!r} leads to {found[0].get('childSObject')}, not {source.object}")
            if source.match is not None:
                try:
                    self.org.field(source.object, source.match)
                except _Unresolved as unresolved:
                    self.add(file, source.option_lines.get("match", source.line), f"{where}.match", str(unresolved))
            for field_spec in spec.lines.fields:
                self.inbound_field(file, source.object, field_spec)

    # outbound -----------------------------------------------------------------------------

    def writable(self, file: str, spec: OutboundSpec, field_spec: FieldSpec, field: dict[str, Any]) -> None:
        if spec.is_update_by_id:
            if not field.get("updateable"):
                self.add(file, field_spec.line, field_spec.label,
                         f"{spec.object}.{field['name']} can't be updated (updateable is false)")
        elif not (field.get("createable") or field.get("updateable")):
            self.add(file, field_spec.line, field_spec.label,
                     f"{spec.object}.{field['name']} is read-only (neither createable nor updateable)")

    def outbound_field(self, spec: OutboundSpec, field_spec: FieldSpec) -> None:
        file, obj, name = spec.file, spec.object, field_spec.name
        try:
            if "." in name:
                relationship, external = name.split(".")
                reference = self.org.relationship(obj, relationship)
                self.writable(file, spec, field_spec, reference)
                target = self.org.target(obj, reference)
                field = self.org.field(target, external)
                if not field.get("externalId"):
                    raise _Unresolved(f"{target}.{external} is not an External ID field, so it can't "
                                      "identify the parent record")
                path = f"{target}.{external}"
            else:
                field = self.org.field(obj, name)
                self.writable(file, spec, field_spec, field)
                path = f"{obj}.{name}"
        except _Unresolved as unresolved:
            self.add(file, field_spec.line, field_spec.label, str(unresolved))
            return
        transform = field_spec.transform
        if transform is None:
            return
        if not transform.accepts_type(field["type"], outbound=True):
            self.add(file, field_spec.line_of("transform"), field_spec.label,
                     _type_reason(transform.name, transform.writes, path, field))
            return
        values = _picklist_values(field)
        if values is None:
            return
        written: list[tuple[str, Any]] = []
        if transform.name == "picklist_map":
            written = [("map", v) for v in field_spec.params.get("map", {}).values() if v is not None]
        elif transform.name in ("constant", "default"):
            value = field_spec.params.get("value")
            written = [("value", value)] if value is not None else []
        for option, value in written:
            if value not in values:
                self.add(file, field_spec.line_of(option), field_spec.label,
                         f"{value!r} is not a value of the {path} picklist{_did_you_mean(str(value), values)}; "
                         f"values: {', '.join(values)}")

    def outbound(self, spec: OutboundSpec) -> None:
        if not self.object_exists(spec.file, spec.line_of("object"), spec.object):
            return
        key = spec.key
        if not spec.is_update_by_id:
            try:
                field = self.org.field(spec.object, key.name)
            except _Unresolved as unresolved:
                self.add(spec.file, key.line_of("field"), "key.field", str(unresolved))
            else:
                if not field.get("externalId"):
                    self.add(spec.file, key.line_of("field"), "key.field",
                             f"{spec.object}.{key.name} is not an External ID field; mark it External ID "
                             "(and Unique) in Salesforce, or key the mapping by Id")
        for field_spec in spec.fields:
            self.outbound_field(spec, field_spec)


def check_specs(specs: MappingSet, describe: Describe) -> list[Problem]:
    """Every problem in the mapping set (loading problems included), by file and line."""
    checker = _Checker(_Org(describe))
    for spec in specs.inbound:
        checker.inbound(spec)
    for out in specs.outbound:
        checker.outbound(out)
    found = list(dict.fromkeys([*specs.problems, *checker.problems]))
    return sorted(found, key=lambda p: (p.file, p.line, p.field))
