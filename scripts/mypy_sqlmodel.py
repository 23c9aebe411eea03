"""A mypy plugin for SQLModel tables, used by ``scripts/test`` (``[tool.mypy]`` in pyproject.toml).

SQLModel types a table's columns as their Python values, so on the class they type-check
as ``int | None`` or ``str`` rather than as the column expressions they are at run time
(``Invoice.id.in_(ids)``, ``select(Invoice).where(Invoice.status == "open")``), and
``__table__`` is not declared at all. This plugin types an attribute read on a table
*class* as ``Any`` and declares ``__table__``; reads on instances keep their types, and a
name the class does not have is still an error.
"""

from __future__ import annotations

from collections.abc import Callable

from mypy.nodes import MDEF, SymbolTableNode, TypeInfo, Var
from mypy.plugin import AttributeContext, ClassDefContext, Plugin
from mypy.types import AnyType, Type, TypeOfAny

SQLMODEL = "sqlmodel.main.SQLModel"


def _declare_table(ctx: ClassDefContext) -> None:
    info = ctx.cls.info
    if "__table__" not in info.names:
        var = Var("__table__", AnyType(TypeOfAny.special_form))
        var.info = info
        var._fullname = f"{info.fullname}.__table__"
        var.is_classvar = True
        info.names["__table__"] = SymbolTableNode(MDEF, var, plugin_generated=True)


def _column_expression(ctx: AttributeContext) -> Type:
    return AnyType(TypeOfAny.special_form)


class SQLModelPlugin(Plugin):
    def _is_sqlmodel(self, fullname: str) -> bool:
        node = self.lookup_fully_qualified(fullname)
        return node is not None and isinstance(node.node, TypeInfo) and (
            fullname == SQLMODEL or node.node.has_base(SQLMODEL))

    def get_base_class_hook(self, fullname: str) -> Callable[[ClassDefContext], None] | None:
        return _declare_table if self._is_sqlmodel(fullname) else None

    def get_class_attribute_hook(self, fullname: str) -> Callable[[AttributeContext], Type] | None:
        owner = fullname.rpartition(".")[0]
        return _column_expression if owner and self._is_sqlmodel(owner) else None


def plugin(version: str) -> type[Plugin]:
    return SQLModelPlugin
