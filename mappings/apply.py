"""Applying specs to records: Salesforce record → engine command, engine record → Salesforce fields.

Both functions are pure: plain dicts in, plain dicts out, exact values (``Decimal``,
``date``, ``str``, ``bool``, ``int``). Every bad value becomes a ``MappingError`` naming the
field and the value; all of a record's errors are raised together as
``InvalidRecordError``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mappings.contract import ATTRIBUTES_KEY
from mappings.errors import MISSING, InvalidRecordError, MappingError, Problem, SpecError
from mappings.spec import FieldSpec, InboundSpec, LineSource, OutboundSpec
from mappings.transforms import ValueRejected, reject_float, render_template


@dataclass(frozen=True)
class MappingContext:
    """What a mapping needs besides the record.

    ``org_timezone``: the org's IANA zone (``BILLSYNC_TIMEZONE``). ``customer_timezone``: the
    customer's zone when the connector knows it; datetimes become dates in it (else the
    org's). ``default_currency``: for orgs without multi-currency.
    """

    org_timezone: str = "UTC"
    customer_timezone: str | None = None
    default_currency: str | None = None

    def __post_init__(self) -> None:
        for name in (self.org_timezone, self.customer_timezone):
            if name is not None:
                try:
                    ZoneInfo(name)
                except (ZoneInfoNotFoundError, ValueError):
                    raise ValueError(f"{name!r} is not an IANA time zone") from None

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.customer_timezone or self.org_timezone)

    def value(self, name: str) -> Any:
        if name == "customer_timezone":
            return self.customer_timezone or self.org_timezone
        return getattr(self, name)


def _lookup(record: Mapping[str, Any], path: str) -> Any:
    """The value at ``Parent.Field`` (``None`` when a parent is null), or MISSING when absent."""
    current: Any = record
    for part in path.split("."):
        if current is None:
            return None
        if not isinstance(current, Mapping) or part not in current:
            return MISSING
        current = current[part]
    return current


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


class _Mapper:
    def __init__(self, tz: ZoneInfo, context: MappingContext | None, outbound: bool, record_label: str | None = None):
        self.tz = tz
        self.context = context
        self.outbound = outbound
        self.record_label = record_label
        self.errors: list[MappingError] = []

    def fail(self, field: str, value: Any, reason: str) -> None:
        self.errors.append(MappingError(field, value, reason, self.record_label))

    def missing_reason(self) -> str:
        return ("is missing from the engine record" if self.outbound
                else "is missing from the record (the query did not select it)")

    def value(self, spec: FieldSpec, record: Mapping[str, Any], command: str | None = None) -> Any:
        transform = spec.transform
        assert transform is not None  # incomplete specs are refused before mapping
        label = spec.sources[0] if spec.sources else spec.name
        raw: Any = None
        if not transform.uses_source:
            if transform.name == "template":
                raw = self.render(spec, record)
                if raw is MISSING:
                    return None
            else:
                raw = spec.params.get("value")
        else:
            for path in spec.sources:
                found = _lookup(record, path)
                if found is MISSING and self.outbound and path.startswith(f"{ATTRIBUTES_KEY}.") \
                        and isinstance(record.get(ATTRIBUTES_KEY), Mapping):
                    found = None  # a custom attribute the record has no value for
                if found is MISSING:
                    self.fail(path, MISSING, self.missing_reason())
                    return None
                label, raw = path, found
                if not _is_empty(found):
                    break
        if _is_empty(raw):
            if spec.default is not MISSING:
                raw = spec.default
            elif transform.name == "default":
                raw = spec.params.get("value")
            elif spec.default_from is not None and self.context is not None:
                raw = self.context.value(spec.default_from)
        if _is_empty(raw):
            if spec.required:
                self.fail(label, MISSING, "is required but empty")
            elif command is not None and command in spec.required_for:
                self.fail(label, MISSING, f"is required for {command} but empty")
            return None
        try:
            reject_float(raw)
            return transform.convert(raw, spec.params, self.tz)
        except ValueRejected as rejected:
            self.fail(label, raw, rejected.reason)
            return None

    def render(self, spec: FieldSpec, record: Mapping[str, Any]) -> Any:
        def lookup(path: str) -> Any:
            found = _lookup(record, path)
            if found is MISSING:
                raise KeyError(path)
            return found

        try:
            for option in ("template", "otherwise"):
                if option in spec.params:
                    text = render_template(spec.params[option], lookup)
                    if text is not None:
                        return text
        except KeyError as missing:
            self.fail(missing.args[0], MISSING, self.missing_reason())
            return MISSING
        except ValueRejected as rejected:
            self.fail(spec.name, MISSING, f"template {rejected.reason}")
            return MISSING
        return None


def _put(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[last] = value


def _ensure_complete(spec: InboundSpec | OutboundSpec) -> None:
    if not spec.is_complete:
        raise SpecError([Problem(spec.file, spec.line, spec.name,
                                 "this mapping has problems; run `billsync mappings check`")])


def select_line_source(spec: InboundSpec, record: Mapping[str, Any]) -> LineSource | None:
    """The line source this record uses: the first whose ``when`` field is not empty (or that has none)."""
    if spec.lines is None:
        return None
    for source in spec.lines.sources:
        if source.when is None:
            return source
        value = _lookup(record, source.when)
        if value is not MISSING and not _is_empty(value):
            return source
    return None


def _choose_command(spec: InboundSpec, record: Mapping[str, Any], mapper: _Mapper) -> str | None:
    if spec.command is not None:
        return spec.command
    choice = spec.command_choice
    assert choice is not None
    value = _lookup(record, choice.source)
    if value is MISSING:
        mapper.fail(choice.source, MISSING, mapper.missing_reason())
        return None
    if _is_empty(value):
        if choice.default is None:
            mapper.fail(choice.source, MISSING, "is required but empty")
        return choice.default
    key = value.strip() if isinstance(value, str) else value
    if key not in choice.map:
        mapper.fail(choice.source, value, f"is not one of {', '.join(repr(k) for k in choice.map)}")
        return None
    return choice.map[key]


def _child_records(value: Any) -> list[Mapping[str, Any]]:
    if value is None:  # Salesforce returns null for an empty child subquery
        return []
    if isinstance(value, Mapping):
        return list(value.get("records") or [])
    return list(value)


def apply_inbound(spec: InboundSpec, record: Mapping[str, Any], context: MappingContext,
                  lines: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Turn a Salesforce record (query JSON) into ``{"command", "key", "data"}``.

    Line items: when the spec has ``lines``, the source chosen by ``select_line_source``
    decides where they come from. A ``relationship`` source reads the child subquery in
    ``record``; a ``match`` source (the synced quote's lines) reads ``lines``, which the
    connector fetched with ``soql_for_lines``. ``lines``, when given, always wins.
    Raises ``InvalidRecordError`` with every bad value.
    """
    _ensure_complete(spec)
    mapper = _Mapper(context.timezone, context, outbound=False)
    command = _choose_command(spec, record, mapper)
    key = mapper.value(spec.key, record)
    data: dict[str, Any] = {}
    for field in spec.fields:
        _put(data, field.name, mapper.value(field, record, command))
    if spec.attributes:
        attributes: dict[str, str] = {}
        for attribute in spec.attributes:
            value = mapper.value(attribute.value, record, command)
            if value is not None:
                attributes[attribute.name] = _attribute_text(value)
        data[ATTRIBUTES_KEY] = attributes
    errors = mapper.errors
    if spec.lines is not None:
        items: list[dict[str, Any]] = []
        for candidate in spec.lines.sources:
            if candidate.when is not None and _lookup(record, candidate.when) is MISSING:
                mapper.fail(candidate.when, MISSING, mapper.missing_reason())
        source = select_line_source(spec, record)
        if lines is None and source is not None:
            if source.relationship is not None:
                raw = _lookup(record, source.relationship)
                if raw is MISSING:
                    mapper.fail(source.relationship, MISSING, mapper.missing_reason())
                lines = _child_records(None if raw is MISSING else raw)
            else:
                mapper.fail(source.when or source.object, _lookup(record, source.when or "Id"),
                            f"needs its {source.object} records, which the connector did not pass")
        for line in lines or []:
            label = f"{source.object if source else 'line'} {line.get('Id') or '(no Id)'}"
            line_mapper = _Mapper(context.timezone, context, outbound=False, record_label=label)
            item: dict[str, Any] = {}
            for field in spec.lines.fields:
                _put(item, field.name, line_mapper.value(field, line, command))
            errors.extend(line_mapper.errors)
            items.append(item)
        data[spec.lines.into] = items
    if errors:
        raise InvalidRecordError(errors)
    return {"command": command, "key": key, "data": data}


def _attribute_text(value: Any) -> str:
    """A custom attribute's value as the text printed on invoices."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _json_ready(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


def lookup_field_for(relationship: str) -> str:
    """The lookup field behind a relationship name: ``Invoice__r`` → ``Invoice__c``, ``Account`` → ``AccountId``."""
    return relationship[:-3] + "__c" if relationship.endswith("__r") else relationship + "Id"


def apply_outbound(spec: OutboundSpec, record: Mapping[str, Any]) -> dict[str, Any]:
    """Turn an engine record (plain dict) into the Salesforce record for an upsert or update.

    The result holds ``attributes.type``, the key field (``Id`` or the external id) and each
    mapped field. Values are JSON-ready but exact: ``Decimal`` stays ``Decimal`` (send it
    with a Decimal-aware encoder), dates become ``YYYY-MM-DD``. A ``Parent__r.Ext__c`` field
    becomes ``{"Parent__r": {"Ext__c": value}}``, or ``{"Parent__c": None}`` when the value is
    empty (clearing the lookup). Raises ``InvalidRecordError`` with every bad value.
    """
    _ensure_complete(spec)
    mapper = _Mapper(ZoneInfo("UTC"), None, outbound=True,
                     record_label=f"{spec.source} {record.get(spec.key.sources[0], '(no key)')}")
    result: dict[str, Any] = {"attributes": {"type": spec.object}}
    result[spec.key.name] = mapper.value(spec.key, record)
    for field in spec.fields:
        value = _json_ready(mapper.value(field, record))
        if "." in field.name:
            relationship, external = field.name.split(".")
            if value is None:
                result[lookup_field_for(relationship)] = None
            else:
                result[relationship] = {external: value}
        else:
            result[field.name] = value
    if mapper.errors:
        raise InvalidRecordError(mapper.errors)
    return result
