"""How documents label an admin's custom attributes: from the mappings' ``attributes:`` declarations.

A document is rendered once, when its invoice is finalized, with the labels declared then; the values
are the invoice's own (copied from its subscription when it was assembled). An attribute no longer
declared still prints, under its name in words, as a note of the XML (docs/invoices.md).
"""

from __future__ import annotations

from pathlib import Path

from billing_engine.use_cases.documents import AttributeDeclaration
from mappings import load_specs


def attribute_declarations(mappings_dir: Path | None) -> dict[str, AttributeDeclaration]:
    """The declared attributes, in declaration order, by name (those of mapping files with problems too:
    a label is worth printing even when another part of the file is wrong)."""
    specs = load_specs(mappings_dir)
    return {name: AttributeDeclaration(tuple(sorted(spec.labels.items())), spec.en16931)
            for name, spec in specs.attributes.items()}
