"""SOQL built from inbound specs, so the connector's pull reads exactly what the mapping needs.

The functions return *templates*: values are never pasted in. Each ``{}`` is bound by the
caller with ``simple_salesforce.format_soql`` (which quotes and escapes), e.g.
``format_soql(soql_for(spec, where="SystemModstamp > {}"), since)``. Braces in an admin's
``filter`` are doubled so they survive ``format_soql``.
"""

from __future__ import annotations

from mappings.spec import InboundSpec, LineSource


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def selected_fields(spec: InboundSpec) -> list[str]:
    """Every field path the spec reads from its object, ``Id`` and ``SystemModstamp`` first."""
    paths = ["Id", "SystemModstamp", *spec.key.reads]
    if spec.command_choice is not None:
        paths.append(spec.command_choice.source)
    for field in spec.fields:
        paths.extend(field.reads)
    for attribute in spec.attributes:
        paths.extend(attribute.value.reads)
    if spec.lines is not None:
        paths.extend(s.when for s in spec.lines.sources if s.when)
    return list(dict.fromkeys(paths))


def line_fields(spec: InboundSpec, source: LineSource | None = None) -> list[str]:
    paths = ["Id"]
    if source is not None and source.match:
        paths.append(source.match)
    for field in spec.lines.fields if spec.lines else []:
        paths.extend(field.reads)
    return list(dict.fromkeys(paths))


def _select(fields: list[str], source: str) -> str:
    return " ".join(["SELECT", ", ".join(fields), "FROM", source])


def soql_for(spec: InboundSpec, *, where: str | None = None, order_by: str | None = "SystemModstamp",
             limit: int | None = None) -> str:
    """``SELECT <fields>, (SELECT ... FROM <child relationship>) FROM <object> WHERE (<filter>) AND (<where>)``.

    ``where`` is the caller's condition with ``{}`` placeholders (``"SystemModstamp > {}"``,
    ``"Id = {}"``, ``"Id IN {}"``); the spec's ``filter`` is always applied too.
    """
    fields = selected_fields(spec)
    for source in spec.lines.sources if spec.lines else []:
        if source.relationship:
            fields.append("(" + _select(line_fields(spec, source), source.relationship) + ")")
    conditions = [f"({_escape(spec.filter)})"] if spec.filter else []
    if where:
        conditions.append(f"({where})")
    parts = [_select(fields, spec.object)]
    if conditions:
        parts += ["WHERE", " AND ".join(conditions)]
    if order_by:
        parts += ["ORDER BY", order_by]
    if limit is not None:
        parts += ["LIMIT", str(int(limit))]
    return " ".join(parts)


def soql_for_lines(spec: InboundSpec, source: LineSource, *, many: bool = False) -> str:
    """The query for a ``match`` line source, e.g. the synced quote's lines:
    ``SELECT ... FROM QuoteLineItem WHERE QuoteId = {}`` (``IN {}`` when ``many``), bound with the
    parent's ``when`` value(s). The ``match`` field is selected, so lines can be grouped by parent.
    """
    if source.match is None:
        raise ValueError(f"line source {source.object} is a child subquery; soql_for already selects it")
    operator = "IN" if many else "="
    return " ".join([_select(line_fields(spec, source), source.object), "WHERE", source.match, operator, "{}",
                     "ORDER BY", "Id"])
