"""YAML loading that remembers where every key and list item was written.

Mapping files are read with PyYAML's safe loader, except that:
- mappings become ``LineDict`` (``line`` of the mapping, ``key_lines[key]`` of each key),
  lists become ``LineList`` (``line``, ``item_lines[i]``), so every problem can name its line;
- a key written twice in one mapping is an error (PyYAML would silently keep the last);
- YAML floats (``0.5``) are read as exact ``Decimal`` from their text: a binary float never
  enters a spec;
- a document is bounded: at most ``MAX_BYTES`` of text, ``MAX_DEPTH`` levels of nesting and
  ``MAX_ALIASES`` aliases, expanding to at most ``MAX_VALUES`` values, so a file cannot
  exhaust memory (an alias bomb) or the stack (thousands of nested brackets).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError

#: Bounds of one mapping file; the shipped defaults use a small fraction of each.
MAX_BYTES = 1024 * 1024
MAX_DEPTH = 50
MAX_ALIASES = 1000
MAX_VALUES = 100_000


class LineDict(dict):
    line: int = 0

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.key_lines: dict[Any, int] = {}

    def line_of(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)


class LineList(list):
    line: int = 0

    def __init__(self, *args: Any):
        super().__init__(*args)
        self.item_lines: list[int] = []

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if index < len(self.item_lines) else self.line


class _LineLoader(yaml.SafeLoader):
    """The safe loader, refusing documents nested, aliased or expanding beyond the bounds."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise ComposerError(None, None, f"more than {MAX_ALIASES} aliases (*name) in one file",
                                    self.peek_event().start_mark)
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep",
                                    self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self) -> Any:
        node = super().get_single_node()
        if node is not None and _expanded_size(node, {}) > MAX_VALUES:
            raise ComposerError(None, None, f"its aliases expand to more than {MAX_VALUES} values", node.start_mark)
        return node


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many values ``node`` stands for once every alias is expanded (each shared node
    is counted once per use, but computed once: an alias bomb is measured, not expanded).
    Recursion is bounded by ``MAX_DEPTH``."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(item, sizes) for item in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(key, sizes) + _expanded_size(value, sizes) for key, value in node.value)
    sizes[id(node)] = size = min(size, MAX_VALUES + 1)
    return size


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise ConstructorError(None, None, "a mapping key must be a plain value", key_node.start_mark) from None
        if key in result:
            raise ConstructorError(
                None, None, f"key {key!r} is written twice in this mapping (first on line {result.key_lines[key]})",
                key_node.start_mark,
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> LineList:
    result = LineList()
    result.line = node.start_mark.line + 1
    for item in node.value:
        result.append(loader.construct_object(item, deep=True))
        result.item_lines.append(item.start_mark.line + 1)
    return result


def _construct_decimal(loader: _LineLoader, node: yaml.ScalarNode) -> Decimal:
    text = str(loader.construct_scalar(node)).replace("_", "")
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite():
        raise ConstructorError(None, None, f"{node.value!r} is not a finite decimal number", node.start_mark)
    return value


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)
_LineLoader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)


def load_yaml(text: str) -> Any:
    """Parse one YAML document; raises ``yaml.YAMLError`` (with ``problem_mark``) when it can't,
    including when it is larger, deeper or more aliased than the bounds above."""
    if len(text) > MAX_BYTES:
        raise yaml.YAMLError(f"the file is larger than {MAX_BYTES // 1024} KiB")
    return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass


def error_line(error: yaml.YAMLError) -> int:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    return mark.line + 1 if mark is not None else 1


def error_reason(error: yaml.YAMLError) -> str:
    problem = getattr(error, "problem", None)
    context = getattr(error, "context", None)
    if problem:
        return f"YAML: {problem}" + (f" ({context})" if context else "")
    return f"YAML: {error}"
