"""Lazy package attributes: a package's public names import their module on first use.

A package lists its public names in ``__all__`` and imports them under ``if TYPE_CHECKING:``
(what type checkers and readers see); :func:`attach` reads those imports and returns the
module-level ``__getattr__`` and ``__dir__`` that import each name's module when it is first
asked for (PEP 562). So the import statements stay the one list of where each name lives.
"""

from __future__ import annotations

import ast
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["attach"]


def _homes(source_file: str) -> dict[str, str]:
    """``name -> module`` from the first ``if TYPE_CHECKING:`` block of ``source_file``."""
    with open(source_file, encoding="utf-8") as source:
        tree = ast.parse(source.read())
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING")
    )
    return {
        alias.asname or alias.name: node.module
        for node in block.body
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }


def attach(
    package: str, source_file: str, public: Sequence[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return ``(__getattr__, __dir__)`` for ``package``, whose source is ``source_file``."""
    homes = _homes(source_file)
    missing = sorted(set(public) - set(homes))
    if missing:
        raise ImportError(f"{package}: {missing} are in __all__ but not imported for typing")

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        setattr(sys.modules[package], name, value)  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(public))

    return __getattr__, __dir__
