"""Lazy re-exports for package ``__init__`` modules (PEP 562).

A package lists ``{public name: defining module}``; the module is imported on first access, so
importing the package (and the command line that imports it) stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, table: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return ``(__getattr__, __dir__)`` for ``package`` that resolve the names of ``table``."""

    def __getattr__(name: str) -> Any:  # noqa: N807 - the PEP 562 hook
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        importlib.import_module(package).__dict__[name] = value  # later look-ups are direct
        return value

    def __dir__() -> list[str]:  # noqa: N807 - the PEP 562 hook
        return sorted(set(importlib.import_module(package).__dict__) | set(table))

    return __getattr__, __dir__
