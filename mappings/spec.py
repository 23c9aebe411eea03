"""Mapping specs: their dataclasses and ``load_specs``, which reads the YAML files.

The shipped files live in ``mappings/defaults``. An admin's directory (``MAPPINGS_DIR``)
overrides them file by file (same file name) and adds new files. Every problem found
while reading (YAML syntax, unknown or missing keys, wrong shapes, unknown transforms,
engine keys the contract does not know) is collected with its file and line; nothing is
raised, so ``billsync mappings check`` can print them all at once.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from mappings.contract import (
    ATTRIBUTE_LANGUAGES,
    ATTRIBUTE_NAME,
    ATTRIBUTE_TRANSFORMS,
    ATTRIBUTES_KEY,
    COMMANDS,
    CONTEXT_VALUES,
    EN16931_ROLES,
    ENGINE_RECORDS,
    MAX_ATTRIBUTE_LABEL,
    MAX_ATTRIBUTE_LENGTH,
    MAX_ATTRIBUTES,
    CommandContract,
)
from mappings.errors import MISSING, Problem, UnknownSpecError
from mappings.transforms import (
    NOT_ALLOWED,
    TRANSFORMS,
    Transform,
    ValueRejected,
    get_transform,
    parse_decimal,
    template_placeholders,
)
from mappings.yaml_lines import MAX_BYTES, LineDict, LineList, error_line, error_reason, load_yaml

DEFAULTS_DIR = Path(__file__).resolve().parent / "defaults"

_FIELD_OPTIONS = ("from", "transform", "required", "required_for", "default", "default_from", "description")
_OUTBOUND_FIELD_OPTIONS = ("from", "transform", "required", "default", "description")
_SF_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_SF_PATH = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*")
_ENGINE_KEY = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)?")


@dataclass
class FieldSpec:
    """One mapped value.

    Inbound: ``name`` is the engine data key, ``sources`` are Salesforce field paths.
    Outbound: ``name`` is the Salesforce field (or ``Parent__r.Ext_Id__c``), ``sources`` are
    engine record keys. With several sources, the first non-empty one is used.
    """

    name: str
    sources: tuple[str, ...]
    transform: Transform | None
    params: dict[str, Any] = field(default_factory=dict)
    required: bool = False
    required_for: frozenset[str] = frozenset()
    default: Any = MISSING
    default_from: str | None = None
    label: str = ""  # how problems name it, e.g. "fields.currency"
    line: int = 0
    option_lines: dict[str, int] = field(default_factory=dict)

    def line_of(self, option: str) -> int:
        return self.option_lines.get(option, self.line)

    @property
    def reads(self) -> tuple[str, ...]:
        """Every path this field reads: its sources and its template's placeholders."""
        paths = list(self.sources)
        for option in ("template", "otherwise"):
            if isinstance(self.params.get(option), str):
                paths.extend(template_placeholders(self.params[option]))
        return tuple(dict.fromkeys(paths))


@dataclass
class CommandChoice:
    """A command picked by a picklist: ``{from: Type, map: {Renewal: renew_subscription}, default: ...}``."""

    source: str
    map: dict[str, str]
    default: str | None
    line: int
    option_lines: dict[str, int] = field(default_factory=dict)


@dataclass
class LineSource:
    """Where line items come from.

    ``relationship``: a child subquery of the parent query (``OpportunityLineItems``).
    ``match``: a separate query the connector runs, ``WHERE <match> = <parent's when field>``.
    ``when``: the source is used only when this parent field is not empty.
    """

    object: str
    relationship: str | None
    when: str | None
    match: str | None
    line: int
    option_lines: dict[str, int] = field(default_factory=dict)

    @property
    def is_subquery(self) -> bool:
        return self.relationship is not None


@dataclass
class LinesSpec:
    into: str
    sources: list[LineSource]
    fields: list[FieldSpec]
    line: int


@dataclass
class AttributeSpec:
    """One custom attribute an admin declared (``attributes:`` of an inbound spec): read like a field
    (``value``), kept as text on the subscription and its invoices, printed with ``labels`` (by
    language), and written in the Factur-X XML as ``en16931`` says (a note, or BT-19)."""

    name: str
    value: FieldSpec
    labels: dict[str, str]
    en16931: str = "note"
    line: int = 0

    def label(self, language: str) -> str:
        return self.labels.get(language) or self.labels.get("en") or next(iter(self.labels.values()), self.name)


@dataclass
class InboundSpec:
    name: str
    file: str
    line: int
    object: str
    key: FieldSpec
    command: str | None  # a fixed command, or
    command_choice: CommandChoice | None  # one picked by a field
    filter: str
    fields: list[FieldSpec]
    lines: LinesSpec | None
    is_complete: bool = True  # False when the file had problems for this spec
    option_lines: dict[str, int] = field(default_factory=dict)
    attributes: list[AttributeSpec] = field(default_factory=list)

    def line_of(self, option: str) -> int:
        return self.option_lines.get(option, self.line)

    @property
    def commands(self) -> list[str]:
        if self.command:
            return [self.command]
        if self.command_choice:
            found = list(dict.fromkeys(self.command_choice.map.values()))
            if self.command_choice.default and self.command_choice.default not in found:
                found.append(self.command_choice.default)
            return found
        return []


@dataclass
class OutboundSpec:
    name: str
    file: str
    line: int
    object: str
    source: str  # engine record kind, see contract.ENGINE_RECORDS
    key: FieldSpec  # key.name is the Salesforce key field (Id or an external id), key.sources[0] the engine key
    fields: list[FieldSpec]
    is_complete: bool = True
    option_lines: dict[str, int] = field(default_factory=dict)

    def line_of(self, option: str) -> int:
        return self.option_lines.get(option, self.line)

    @property
    def is_update_by_id(self) -> bool:
        return self.key.name == "Id"


@dataclass
class MappingSet:
    inbound: list[InboundSpec] = field(default_factory=list)
    outbound: list[OutboundSpec] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    @property
    def is_valid(self) -> bool:
        return not self.problems

    @property
    def attributes(self) -> dict[str, AttributeSpec]:
        """Every declared custom attribute by name (the first declaration of a name wins)."""
        found: dict[str, AttributeSpec] = {}
        for spec in self.inbound:
            for attribute in spec.attributes:
                found.setdefault(attribute.name, attribute)
        return found

    def get_inbound(self, name: str) -> InboundSpec:
        for spec in self.inbound:
            if spec.name == name:
                return spec
        raise UnknownSpecError("inbound", name)

    def get_outbound(self, name: str) -> OutboundSpec:
        for spec in self.outbound:
            if spec.name == name:
                return spec
        raise UnknownSpecError("outbound", name)

    def inbound_for(self, object_name: str) -> list[InboundSpec]:
        """The inbound specs reading this Salesforce object (what a change event on it feeds)."""
        return [s for s in self.inbound if s.object.lower() == object_name.lower()]

    def outbound_for(self, source: str) -> list[OutboundSpec]:
        """The outbound specs writing this kind of engine record."""
        return [s for s in self.outbound if s.source == source]


# --- reading ---------------------------------------------------------------------------


def _suggest(word: Any, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Reader:
    """Collects problems for one file."""

    def __init__(self, file: str):
        self.file = file
        self.problems: list[Problem] = []

    def problem(self, line: int, where: str, reason: str) -> None:
        self.problems.append(Problem(self.file, line, where, reason))

    def mapping(self, value: Any, line: int, where: str, example: str) -> LineDict | None:
        if isinstance(value, LineDict):
            return value
        self.problem(line, where, f"must be a mapping, like {example}")
        return None

    def keys(self, raw: LineDict, where: str, allowed: Iterable[str], required: Iterable[str] = ()) -> bool:
        allowed = tuple(allowed)
        fine = True
        for key in raw:
            if key not in allowed:
                self.problem(raw.line_of(key), _join(where, key), f"unknown key{_suggest(key, allowed)}; "
                             f"allowed here: {', '.join(allowed)}")
                fine = False
        for key in required:
            if key not in raw:
                self.problem(raw.line, where or key, f"missing key {key!r}")
                fine = False
        return fine

    def text(self, raw: LineDict, key: str, where: str, *, pattern: re.Pattern[str] | None = None,
             what: str = "text") -> str | None:
        value = raw.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip() or (pattern and not pattern.fullmatch(value.strip())):
            self.problem(raw.line_of(key), _join(where, key), f"{value!r} is not {what}")
            return None
        return value.strip()

    def boolean(self, raw: LineDict, key: str, where: str) -> bool:
        value = raw.get(key, False)
        if not isinstance(value, bool):
            self.problem(raw.line_of(key), _join(where, key), f"{value!r} is not true or false")
            return False
        return value


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def _sources(reader: _Reader, raw: LineDict, where: str, pattern: re.Pattern[str], what: str) -> tuple[str, ...]:
    value = raw.get("from")
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(i, str) and pattern.fullmatch(i.strip()) for i in items):
        reader.problem(raw.line_of("from"), _join(where, "from"), f"{value!r} is not {what} (or a list of them)")
        return ()
    return tuple(i.strip() for i in items)


def _check_param(reader: _Reader, raw: LineDict, name: str, kind: str, where: str) -> Any:
    value = raw[name]
    line = raw.line_of(name)
    label = _join(where, name)
    if kind == "decimal":
        try:
            return parse_decimal(value)
        except ValueRejected:
            reader.problem(line, label, f"{value!r} is not a decimal number")
    elif kind == "integer":
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        reader.problem(line, label, f"{value!r} is not a whole number ≥ 0")
    elif kind == "boolean":
        if isinstance(value, bool):
            return value
        reader.problem(line, label, f"{value!r} is not true or false")
    elif kind == "text":
        if isinstance(value, str) and value:
            return value
        reader.problem(line, label, f"{value!r} is not text")
    elif kind == "map":
        if not isinstance(value, LineDict) or not value:
            reader.problem(line, label, "must be a mapping of values, like {'Closed Won': won}")
            return MISSING
        fine = True
        for key, mapped in value.items():
            if not isinstance(key, str):
                reader.problem(value.line_of(key), label, f"key {key!r} is not text; quote it, e.g. '{key}'")
                fine = False
            if mapped is not None and not isinstance(mapped, str):
                reader.problem(value.line_of(key), _join(label, key), f"{mapped!r} is not text; quote it")
                fine = False
        return dict(value) if fine else MISSING
    elif kind == "scalar":
        if value is None or isinstance(value, str | bool | int | Decimal | date):
            return value
        reader.problem(line, label, f"{value!r} must be a single value")
    return MISSING


def _parse_field(reader: _Reader, name: str, raw: Any, line: int, where: str, *, outbound: bool,
                 record_keys: frozenset[str] | None = None) -> FieldSpec | None:
    raw = reader.mapping(raw, line, where, "{from: Name, transform: string}")
    if raw is None:
        return None
    count = len(reader.problems)
    spec = FieldSpec(name=name, sources=(), transform=None, label=where, line=line,
                     option_lines=dict(raw.key_lines))

    transform_name = raw.get("transform")
    transform = TRANSFORMS.get(transform_name) if isinstance(transform_name, str) else None
    if "transform" not in raw:
        reader.problem(raw.line, where, f"missing key 'transform' (one of: {', '.join(TRANSFORMS)})")
    elif transform is None:
        reader.problem(raw.line_of("transform"), _join(where, "transform"),
                       f"unknown transform {transform_name!r}{_suggest(transform_name, TRANSFORMS)}; "
                       f"known: {', '.join(TRANSFORMS)}")
    elif (transform.writes if outbound else transform.reads) == NOT_ALLOWED:
        reader.problem(raw.line_of("transform"), _join(where, "transform"),
                       f"transform {transform.name!r} can't be used in {'outbound' if outbound else 'inbound'} "
                       "mappings")
        transform = None

    options = _OUTBOUND_FIELD_OPTIONS if outbound else _FIELD_OPTIONS
    if transform is not None:
        reader.keys(raw, where, options + tuple(transform.params))
        for param_name, param in transform.params.items():
            if param_name in raw:
                value = _check_param(reader, raw, param_name, param.kind, where)
                if value is not MISSING:
                    spec.params[param_name] = value
            elif param.required:
                reader.problem(raw.line, where, f"transform {transform.name!r} needs key {param_name!r}")
    else:
        known_params = {p for t in TRANSFORMS.values() for p in t.params}
        reader.keys(raw, where, options + tuple(sorted(known_params)))

    uses_source = transform.uses_source if transform else "from" in raw
    if not uses_source and "from" in raw:
        reader.problem(raw.line_of("from"), _join(where, "from"),
                       f"transform {transform.name!r} reads no field: remove 'from'")
    elif uses_source and "from" not in raw:
        reader.problem(raw.line, where, "missing key 'from'")
    elif uses_source:
        if outbound:
            spec.sources = _sources(reader, raw, where, _ENGINE_KEY, "an engine record key")
        else:
            spec.sources = _sources(reader, raw, where, _SF_PATH, "a Salesforce field or path like Account.Name")

    if record_keys is not None:
        for key in spec.reads:
            if key.startswith(f"{ATTRIBUTES_KEY}.") and ATTRIBUTES_KEY in record_keys:
                continue  # a custom attribute: load_specs checks that it is declared
            if key not in record_keys:
                reader.problem(raw.line_of("from") if key in spec.sources else raw.line, where,
                               f"{key!r} is not a key of this engine record{_suggest(key, record_keys)}")

    spec.required = reader.boolean(raw, "required", where)
    if "required_for" in raw:
        value = raw["required_for"]
        if not isinstance(value, list) or not all(v in COMMANDS for v in value):
            reader.problem(raw.line_of("required_for"), _join(where, "required_for"),
                           f"{value!r} is not a list of commands ({', '.join(COMMANDS)})")
        else:
            spec.required_for = frozenset(value)
    if "default_from" in raw:
        if raw["default_from"] not in CONTEXT_VALUES:
            reader.problem(raw.line_of("default_from"), _join(where, "default_from"),
                           f"{raw['default_from']!r} is not one of {', '.join(CONTEXT_VALUES)}")
        else:
            spec.default_from = raw["default_from"]
    if "default" in raw:
        if "default_from" in raw:
            reader.problem(raw.line_of("default"), _join(where, "default"), "give 'default' or 'default_from', not both")
        value = raw["default"]
        if transform is not None and value is not None:
            try:
                transform.convert(value, spec.params, ZoneInfo("UTC"))
            except ValueRejected as rejected:
                reader.problem(raw.line_of("default"), _join(where, "default"), f"{value!r} {rejected.reason}")
            except (KeyError, TypeError):
                pass  # a missing parameter was reported above
        spec.default = value

    # A field with problems keeps transform None: check_specs still resolves its paths,
    # and the spec is marked incomplete so nothing is mapped with it.
    spec.transform = transform if len(reader.problems) == count else None
    return spec


def _parse_fields(reader: _Reader, raw: Any, line: int, where: str, *, outbound: bool,
                  allowed: frozenset[str] | None, required: frozenset[str],
                  record_keys: frozenset[str] | None = None) -> tuple[list[FieldSpec], bool]:
    raw = reader.mapping(raw, line, where, "{name: {from: Name, transform: string}}")
    if raw is None:
        return [], False
    fields: list[FieldSpec] = []
    fine = True
    for name, value in raw.items():
        label = _join(where, name)
        if outbound and not (isinstance(name, str) and _SF_PATH.fullmatch(name) and name.count(".") <= 1):
            reader.problem(raw.line_of(name), label, "is not a Salesforce field name (or Parent__r.External_Id__c)")
            fine = False
            continue
        if not outbound and allowed is not None and name not in allowed:
            reader.problem(raw.line_of(name), label, f"is not a key of this command{_suggest(name, allowed)}; "
                           f"known: {', '.join(sorted(allowed))}")
            fine = False
            continue
        spec = _parse_field(reader, str(name), value, raw.line_of(name), label, outbound=outbound,
                            record_keys=record_keys)
        if spec is None:
            fine = False
        else:
            fields.append(spec)
    for name in sorted(required - set(raw)):
        reader.problem(line, where, f"missing {name!r}, which the command needs")
        fine = False
    return fields, fine


def _key_field(path: str, line: int) -> FieldSpec:
    last = path.split(".")[-1]
    name = "id18" if last == "Id" or last.endswith("Id") else "string"
    return FieldSpec(name="key", sources=(path,), transform=get_transform(name), required=True, label="key",
                     line=line)


def _parse_command(reader: _Reader, raw: LineDict) -> tuple[str | None, CommandChoice | None]:
    value = raw["command"]
    line = raw.line_of("command")
    if isinstance(value, str):
        if value not in COMMANDS:
            reader.problem(line, "command", f"unknown command {value!r}{_suggest(value, COMMANDS)}; "
                           f"known: {', '.join(COMMANDS)}")
            return None, None
        return value, None
    choice = reader.mapping(value, line, "command", "{from: Type, map: {Renewal: renew_subscription}}")
    if choice is None or not reader.keys(choice, "command", ("from", "map", "default"), ("from", "map")):
        return None, None
    source = reader.text(choice, "from", "command", pattern=_SF_PATH, what="a Salesforce field")
    mapping = _check_param(reader, choice, "map", "map", "command")
    default = choice.get("default")
    named = list(mapping.values()) if mapping is not MISSING else []
    if default is not None:
        named.append(default)
    bad = [c for c in named if c not in COMMANDS]
    for c in bad:
        reader.problem(choice.line_of("map" if c != default else "default"), "command",
                       f"unknown command {c!r}{_suggest(c, COMMANDS)}")
    if not bad and len({id(COMMANDS[c]) for c in named}) > 1:
        reader.problem(line, "command", "the commands of one mapping must take the same data "
                       f"({', '.join(sorted(set(named)))} do not)")
        return None, None
    if source is None or mapping is MISSING or bad:
        return None, None
    return None, CommandChoice(source, mapping, default, choice.line, dict(choice.key_lines))


def _parse_lines(reader: _Reader, raw: Any, line: int, contract: CommandContract | None) -> LinesSpec | None:
    raw = reader.mapping(raw, line, "lines", "{into: items, sources: [...], fields: {...}}")
    if raw is None or not reader.keys(raw, "lines", ("into", "sources", "fields", "description"),
                                      ("into", "sources", "fields")):
        return None
    count = len(reader.problems)
    into = reader.text(raw, "into", "lines", pattern=_ENGINE_KEY, what="an engine key")
    if contract is not None and into is not None and into != contract.list_key:
        expected = f"{contract.list_key!r}" if contract.list_key else "nothing (this command takes no lines)"
        reader.problem(raw.line_of("into"), "lines.into", f"{into!r}: this command takes its lines in {expected}")
    sources: list[LineSource] = []
    raw_sources = raw["sources"]
    if not isinstance(raw_sources, LineList) or not raw_sources:
        reader.problem(raw.line_of("sources"), "lines.sources", "must be a list of line sources")
    else:
        for index, item in enumerate(raw_sources):
            where = f"lines.sources[{index}]"
            item = reader.mapping(item, raw_sources.line_of(index), where, "{object: OpportunityLineItem, ...}")
            if item is None or not reader.keys(item, where, ("object", "relationship", "when", "match",
                                                             "description"), ("object",)):
                continue
            source = LineSource(
                object=reader.text(item, "object", where, pattern=_SF_NAME, what="an object name") or "",
                relationship=reader.text(item, "relationship", where, pattern=_SF_NAME, what="a relationship name"),
                when=reader.text(item, "when", where, pattern=_SF_PATH, what="a field of the parent"),
                match=reader.text(item, "match", where, pattern=_SF_NAME, what="a field of the line object"),
                line=item.line, option_lines=dict(item.key_lines),
            )
            if (source.relationship is None) == (source.match is None):
                reader.problem(item.line, where, "give either 'relationship' (a child subquery) or 'match' "
                               "with 'when' (a separate query), not both or neither")
            elif source.match is not None and source.when is None:
                reader.problem(item.line, where, "'match' needs 'when': the parent field whose value it matches")
            sources.append(source)
    fields, _ = _parse_fields(
        reader, raw["fields"], raw.line_of("fields"), "lines.fields", outbound=False,
        allowed=contract.item_keys if contract else None,
        required=contract.required_item_keys if contract else frozenset(),
    )
    if len(reader.problems) != count:
        return None
    return LinesSpec(into=into or "", sources=sources, fields=fields, line=raw.line)


_ATTRIBUTE_OPTIONS = ("label", "en16931")


def _parse_labels(reader: _Reader, raw: LineDict, where: str) -> dict[str, str]:
    where = _join(where, "label")
    line = raw.line_of("label")
    value = raw.get("label")
    if isinstance(value, str):
        value = {"en": value}
    if not isinstance(value, dict) or not value:
        reader.problem(line, where, f"must be the label printed on invoices, by language, like "
                       f"{{en: Cost centre, fr: Centre de coûts}} (languages: {', '.join(ATTRIBUTE_LANGUAGES)})")
        return {}
    labels: dict[str, str] = {}
    for language, text in value.items():
        if language not in ATTRIBUTE_LANGUAGES:
            reader.problem(line, _join(where, language), f"unknown language{_suggest(language, ATTRIBUTE_LANGUAGES)}"
                           f"; invoices are written in {', '.join(ATTRIBUTE_LANGUAGES)}")
        elif not isinstance(text, str) or not text.strip() or any(ord(c) < 32 for c in text):
            reader.problem(line, _join(where, language), f"{text!r} is not a label (one line of text)")
        elif len(text.strip()) > MAX_ATTRIBUTE_LABEL:
            reader.problem(line, _join(where, language), f"is {len(text.strip())} characters long; a label has at "
                           f"most {MAX_ATTRIBUTE_LABEL}")
        else:
            labels[language] = text.strip()
    if "en" not in value:
        reader.problem(line, where, "needs an English label ('en'), printed when the customer's language has none")
    return labels


def _parse_attributes(reader: _Reader, raw: Any, line: int, contract: CommandContract | None) -> list[AttributeSpec]:
    """The ``attributes:`` of an inbound spec (docs/mappings.md, Custom attributes)."""
    raw = reader.mapping(raw, line, "attributes",
                         "{cost_centre: {from: Cost_Centre__c, transform: string, label: {en: Cost centre}}}")
    if raw is None:
        return []
    if contract is not None and not contract.takes_attributes:
        reader.problem(line, "attributes", f"this command takes no custom attributes (only "
                       f"{', '.join(c for c, k in COMMANDS.items() if k.takes_attributes)} do)")
        return []
    if len(raw) > MAX_ATTRIBUTES:
        reader.problem(line, "attributes", f"declares {len(raw)} attributes; at most {MAX_ATTRIBUTES}")
    out: list[AttributeSpec] = []
    accounting: list[str] = []
    for name, value in raw.items():
        where = _join("attributes", name)
        name_line = raw.line_of(name)
        if not isinstance(name, str) or not ATTRIBUTE_NAME.fullmatch(name):
            reader.problem(name_line, where, "is not an attribute name: lower_case letters, digits and _, starting "
                           "with a letter, at most 40 characters (like cost_centre)")
            continue
        body = reader.mapping(value, name_line, where, "{from: Cost_Centre__c, transform: string, label: {...}}")
        if body is None:
            continue
        count = len(reader.problems)
        field_raw = LineDict({k: v for k, v in body.items() if k not in _ATTRIBUTE_OPTIONS})
        field_raw.line = body.line
        field_raw.key_lines = {k: n for k, n in body.key_lines.items() if k not in _ATTRIBUTE_OPTIONS}
        transform = body.get("transform")
        if isinstance(transform, str) and transform in TRANSFORMS and transform not in ATTRIBUTE_TRANSFORMS:
            reader.problem(body.line_of("transform"), _join(where, "transform"),
                           f"an attribute is text: use one of {', '.join(ATTRIBUTE_TRANSFORMS)}")
        if transform == "string":
            longest = body.get("max_length")
            if longest is None:
                field_raw["max_length"] = MAX_ATTRIBUTE_LENGTH
            elif isinstance(longest, int) and not isinstance(longest, bool) and longest > MAX_ATTRIBUTE_LENGTH:
                reader.problem(body.line_of("max_length"), _join(where, "max_length"),
                               f"{longest} is more than {MAX_ATTRIBUTE_LENGTH}, the longest attribute value")
        spec = _parse_field(reader, name, field_raw, name_line, where, outbound=False)
        labels = _parse_labels(reader, body, where)
        role = body.get("en16931", "note")
        if role not in EN16931_ROLES:
            reader.problem(body.line_of("en16931"), _join(where, "en16931"),
                           f"{role!r} is not one of {', '.join(EN16931_ROLES)}")
            role = "note"
        elif role == "buyer_accounting_reference":
            accounting.append(name)
            if len(accounting) == 2:
                reader.problem(body.line_of("en16931"), _join(where, "en16931"),
                               f"only one attribute can be the buyer accounting reference (BT-19); "
                               f"{accounting[0]} already is")
        if spec is not None and len(reader.problems) == count:
            out.append(AttributeSpec(name, spec, labels, role, name_line))
    return out


_INBOUND_KEYS = ("name", "object", "command", "key", "filter", "fields", "attributes", "lines", "description")
_OUTBOUND_KEYS = ("name", "object", "source", "key", "fields", "description")


def _parse_inbound(reader: _Reader, raw: Any, line: int) -> InboundSpec | None:
    raw = reader.mapping(raw, line, "inbound", "{name: customer, object: Account, command: upsert_customer, ...}")
    if raw is None:
        return None
    count = len(reader.problems)
    reader.keys(raw, "", _INBOUND_KEYS, ("name", "object", "command", "fields"))
    name = reader.text(raw, "name", "", pattern=_ENGINE_KEY, what="a name (lower_case)")
    obj = reader.text(raw, "object", "", pattern=_SF_NAME, what="a Salesforce object name")
    command, choice = _parse_command(reader, raw) if "command" in raw else (None, None)
    contract = COMMANDS.get(command or (choice.default or next(iter(choice.map.values())) if choice else ""))
    key_path = reader.text(raw, "key", "", pattern=_SF_PATH, what="a Salesforce field") if "key" in raw else "Id"
    filter_text = raw.get("filter") or ""
    if not isinstance(filter_text, str):
        reader.problem(raw.line_of("filter"), "filter", f"{filter_text!r} is not a SOQL condition (text)")
        filter_text = ""
    fields: list[Any] = []
    if "fields" in raw:
        fields, _ = _parse_fields(reader, raw["fields"], raw.line_of("fields"), "fields", outbound=False,
                                  allowed=contract.data_keys if contract else None,
                                  required=contract.required_keys if contract else frozenset())
    lines = _parse_lines(reader, raw["lines"], raw.line_of("lines"), contract) if "lines" in raw else None
    attributes = (_parse_attributes(reader, raw["attributes"], raw.line_of("attributes"), contract)
                  if "attributes" in raw else [])
    if name is None or obj is None:
        return None
    return InboundSpec(
        attributes=attributes,
        name=name, file=reader.file, line=raw.line, object=obj,
        key=_key_field(key_path or "Id", raw.line_of("key")), command=command, command_choice=choice,
        filter=filter_text.strip(), fields=fields, lines=lines,
        is_complete=len(reader.problems) == count, option_lines=dict(raw.key_lines),
    )


def _parse_outbound(reader: _Reader, raw: Any, line: int) -> OutboundSpec | None:
    raw = reader.mapping(raw, line, "outbound", "{name: invoice, object: Invoice__c, source: invoice, ...}")
    if raw is None:
        return None
    count = len(reader.problems)
    reader.keys(raw, "", _OUTBOUND_KEYS, ("name", "object", "source", "key", "fields"))
    name = reader.text(raw, "name", "", pattern=_ENGINE_KEY, what="a name (lower_case)")
    obj = reader.text(raw, "object", "", pattern=_SF_NAME, what="a Salesforce object name")
    source = reader.text(raw, "source", "", pattern=_ENGINE_KEY, what="an engine record kind")
    record_keys = ENGINE_RECORDS.get(source or "")
    if source is not None and record_keys is None:
        reader.problem(raw.line_of("source"), "source", f"unknown engine record {source!r}"
                       f"{_suggest(source, ENGINE_RECORDS)}; known: {', '.join(ENGINE_RECORDS)}")
    key: FieldSpec | None = None
    if "key" in raw:
        key_raw = reader.mapping(raw["key"], raw.line_of("key"), "key", "{field: Billsync_Invoice_Id__c, from: id}")
        if key_raw is not None and reader.keys(key_raw, "key", ("field", "from"), ("field", "from")):
            key_field = reader.text(key_raw, "field", "key", pattern=_SF_NAME, what="a Salesforce field")
            key_from = reader.text(key_raw, "from", "key", pattern=_ENGINE_KEY, what="an engine record key")
            if key_from is not None and record_keys is not None and key_from not in record_keys:
                reader.problem(key_raw.line_of("from"), "key.from", f"{key_from!r} is not a key of this engine "
                               f"record{_suggest(key_from, record_keys)}")
            if key_field and key_from:
                key = FieldSpec(name=key_field, sources=(key_from,),
                                transform=get_transform("id18" if key_field == "Id" else "string"),
                                required=True, label="key", line=key_raw.line,
                                option_lines=dict(key_raw.key_lines))
    fields: list[FieldSpec] = []
    if "fields" in raw:
        fields, _ = _parse_fields(reader, raw["fields"], raw.line_of("fields"), "fields", outbound=True,
                                  allowed=None, required=frozenset(), record_keys=record_keys)
    if name is None or obj is None or source is None or key is None:
        return None
    return OutboundSpec(name=name, file=reader.file, line=raw.line, object=obj, source=source, key=key,
                        fields=fields, is_complete=len(reader.problems) == count,
                        option_lines=dict(raw.key_lines))


def _entries(reader: _Reader, document: LineDict, section: str) -> list[tuple[Any, int]]:
    value = document[section]
    if value is None:
        return []
    if isinstance(value, LineDict):
        return [(value, value.line)]
    if isinstance(value, LineList):
        return [(item, value.line_of(i)) for i, item in enumerate(value)]
    reader.problem(document.line_of(section), section, "must be a list of mappings (or one mapping)")
    return []


class _TooLarge(Exception):
    pass


def load_spec_file(path: Path, label: str | None = None) -> MappingSet:
    """Read one mapping file. ``label`` is how problems name the file (default: its path)."""
    reader = _Reader(label or str(path))
    result = MappingSet(files=[reader.file])
    try:
        if path.stat().st_size > MAX_BYTES:
            raise _TooLarge
        document = load_yaml(path.read_text(encoding="utf-8"))
    except _TooLarge:
        reader.problem(1, "file", f"is larger than {MAX_BYTES // 1024} KiB")
        document = None
    except OSError as error:
        reader.problem(1, "file", f"can't be read: {error.strerror or error}")
        document = None
    except UnicodeDecodeError:
        reader.problem(1, "file", "is not UTF-8 text")
        document = None
    except yaml.YAMLError as error:
        reader.problem(error_line(error), "file", error_reason(error))
        document = None
    if document is not None:
        if not isinstance(document, LineDict):
            reader.problem(1, "file", "must be a mapping with 'inbound' and/or 'outbound'")
        else:
            reader.keys(document, "", ("inbound", "outbound"))
            if "inbound" in document:
                for raw, line in _entries(reader, document, "inbound"):
                    spec = _parse_inbound(reader, raw, line)
                    if spec is not None:
                        result.inbound.append(spec)
            if "outbound" in document:
                for raw, line in _entries(reader, document, "outbound"):
                    out = _parse_outbound(reader, raw, line)
                    if out is not None:
                        result.outbound.append(out)
    result.problems = reader.problems
    return result


def load_specs(directory: Path | None = None, *, include_defaults: bool = True) -> MappingSet:
    """Load the shipped defaults, overridden and extended by the ``*.yaml`` files in ``directory``.

    A file in ``directory`` with the name of a default file replaces it (an empty file
    switches that default off); other files add specs. Problems are returned in
    ``MappingSet.problems``, never raised.
    """
    chosen: dict[str, Path] = {}
    problems: list[Problem] = []
    if include_defaults:
        chosen.update({p.name: p for p in sorted(DEFAULTS_DIR.glob("*.yaml"))})
    if directory is not None:
        directory = Path(directory)
        if not directory.is_dir():
            problems.append(Problem(str(directory), 0, "MAPPINGS_DIR", "is not a directory"))
        else:
            chosen.update({p.name: p for p in sorted(directory.glob("*.yaml"))})
            for stray in sorted(directory.glob("*.yml")):
                problems.append(Problem(str(stray), 0, "file", "is ignored: mapping files end in .yaml"))
    result = MappingSet(problems=problems)
    for file_name in sorted(chosen):
        loaded = load_spec_file(chosen[file_name])
        result.files.extend(loaded.files)
        result.problems.extend(loaded.problems)
        for kind, specs in (("inbound", loaded.inbound), ("outbound", loaded.outbound)):
            seen: Mapping[str, Any] = {s.name: s for s in getattr(result, kind)}
            for spec in specs:
                if spec.name in seen:
                    first = seen[spec.name]
                    result.problems.append(Problem(spec.file, spec.line_of("name"), "name",
                                                   f"{kind} mapping {spec.name!r} is already defined at "
                                                   f"{first.file}:{first.line_of('name')}"))
                    continue
                getattr(result, kind).append(spec)
    result.problems.extend(_undeclared_attributes(result))
    return result


def _undeclared_attributes(result: MappingSet) -> list[Problem]:
    """An outbound field reading ``attributes.<name>`` that no inbound mapping declares."""
    declared = result.attributes
    problems = []
    for out in result.outbound:
        for spec in out.fields:
            for key in spec.sources:
                name = key.split(".", 1)[1] if key.startswith(f"{ATTRIBUTES_KEY}.") else None
                if name is not None and name not in declared:
                    problems.append(Problem(out.file, spec.line_of("from"), spec.label,
                                            f"{key!r}: no inbound mapping declares the attribute {name!r}"
                                            f"{_suggest(name, declared)}; declared: {', '.join(declared) or 'none'}"))
    return problems
