"""Lazy exports: a package's public names, each imported from its module on first use.

``import meshlite`` must cost the engine only (docs/benchmarks.md, "Start-up"), and
building a mesh only what it uses, so the packages re-export their names through a
module ``__getattr__`` (PEP 562) made here, with the real imports kept under
``TYPE_CHECKING`` for type checkers::

    __getattr__, __dir__ = lazy_exports(__name__, {"RedisStore": "._redis"}, globals())
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, names: Mapping[str, str], namespace: dict[str, Any],
                 modules: Collection[str] = ()
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of ``package``.

    Args:
        package: The package's ``__name__``.
        names: Each public name loaded on first use, and the module it lives in,
            relative to ``package`` (``"._redis"``, ``"..observability._prometheus"``).
        namespace: The package's ``globals()``: a name loaded once is stored there,
            so later reads do not come back here.
        modules: Submodules that are public names themselves (``meshlite.config``).
    """

    def __getattr__(name: str) -> Any:
        if name in modules:
            value: Any = importlib.import_module(f".{name}", package)
        elif name in names:
            value = getattr(importlib.import_module(names[name], package), name)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *namespace.get("__all__", ())})

    return __getattr__, __dir__
