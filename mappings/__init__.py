"""Admin-editable mappings between CRM records and billing-engine commands.

It owns the mapping spec format (YAML), its validation against an org's describe
metadata, a closed registry of named transforms (no ``eval``), and the shipped
default mapping files in ``mappings/defaults``. It never imports ``connector`` or
``billing_engine``: the connector hands mapping output to engine services.

Public names (docs/mappings.md is the admin's reference):

- ``load_specs(directory)`` → ``MappingSet`` (problems in ``.problems``, never raised);
- ``check_specs(specs, describe)`` → ``list[Problem]`` (``str(p)`` is ``file:line: field: reason``);
- ``apply_inbound(spec, record, context, lines=None)`` → ``{"command", "key", "data"}``;
- ``apply_outbound(spec, record)`` → the Salesforce record to upsert or update;
- ``soql_for(spec, where=...)``, ``soql_for_lines(spec, source)``, ``select_line_source(spec, record)``;
- ``TRANSFORMS``, ``COMMANDS``, ``ENGINE_RECORDS``: the registry and the contract.
"""

from mappings.apply import MappingContext, apply_inbound, apply_outbound, select_line_source
from mappings.check import check_specs
from mappings.contract import COMMANDS, ENGINE_RECORDS, SUBSCRIPTION_COMMANDS
from mappings.errors import (
    InvalidRecordError,
    MappingError,
    MappingsError,
    Problem,
    SpecError,
    UnknownSpecError,
)
from mappings.soql import soql_for, soql_for_lines
from mappings.spec import DEFAULTS_DIR, InboundSpec, LineSource, MappingSet, OutboundSpec, load_specs
from mappings.transforms import TRANSFORMS

__all__ = [
    "COMMANDS", "DEFAULTS_DIR", "ENGINE_RECORDS", "SUBSCRIPTION_COMMANDS", "TRANSFORMS", "InboundSpec",
    "InvalidRecordError", "LineSource", "MappingContext", "MappingError", "MappingSet", "MappingsError",
    "OutboundSpec", "Problem", "SpecError", "UnknownSpecError", "apply_inbound", "apply_outbound", "check_specs",
    "load_specs", "select_line_source", "soql_for", "soql_for_lines",
]
