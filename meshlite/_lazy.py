"""Lazy exports: a package's public names, each imported from its module on first use.

``import meshlite`` must cost the engine only (docs/benchmarks.md, "Start-up"), and
building a mesh only what it uses, so the packages re-export their names through a
module ``__getattr__`` (PEP 562) made here, with the real imports kept under
``TYPE_CHECKING`` for type checkers, which must not see the ``__getattr__`` (to them
it would make every misspelt name an ``Any``)::

    if not TYPE_CHECKING:
        __getattr__, __dir__ = lazy_exports(__name__, {"RedisStore": "._redis"}, globals())
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any

__all__ = ["declared_exports", "declared_imports", "lazy_exports"]


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


_FROM = re.compile(r"^[ \t]*from\s+(\S+)\s+import\s+(\([^)]*\)|[^\n]*)", re.MULTILINE)


def _aliases(names: str) -> Iterator[tuple[str, bool]]:
    """Each imported name of an import's name list, and whether it is written as a
    re-export (``X as X``)."""
    for item in names.strip("()").replace("\n", " ").split(","):
        parts = item.split("#")[0].split()
        if parts:
            yield parts[-1], len(parts) == 3 and parts[0] == parts[2]


def declared_imports(source: str) -> tuple[dict[str, str], set[str], list[str]]:
    """What a package's ``__init__`` source declares (read as text: no ``ast``,
    whose import alone costs more than the rest of ``import meshlite``).

    Returns:
        The names its ``if TYPE_CHECKING:`` block imports and the module each comes
        from, the submodules that block imports (``from . import config as config``),
        and every name the source re-exports (``X as X``), in order: its public
        names.
    """
    start = source.index("\nif TYPE_CHECKING:\n") + len("\nif TYPE_CHECKING:\n")
    end = re.search(r"^\S", source[start:], re.MULTILINE)
    block = source[start:start + end.start() if end else len(source)]
    lazy: dict[str, str] = {}
    modules: set[str] = set()
    for module, names in _FROM.findall(block):
        for name, _ in _aliases(names):
            if module == ".":
                modules.add(name)
            else:
                lazy[name] = module
    public = [name for _, names in _FROM.findall(source)
              for name, exported in _aliases(names) if exported]
    return lazy, modules, public


def declared_exports(package: str, path: str, namespace: dict[str, Any]
                     ) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """:func:`lazy_exports` for a package whose public names are declared once, as
    re-exports (``from ._x import Name as Name``): the eager ones by plain imports,
    the lazy ones in its ``if TYPE_CHECKING:`` block, which type checkers read and
    which is read here to know where each lazy name lives.

    Args:
        package: The package's ``__name__``.
        path: The package's ``__file__`` (read when its loader gives no source, as
            in a zip the loader reads it from).
        namespace: The package's ``globals()``.

    Returns:
        The module ``__getattr__`` and ``__dir__``, and ``__all__``: every re-exported
        name, in the order written. (Bound under ``if not TYPE_CHECKING:``: a type
        checker reads a computed ``__all__`` as empty, and without one exports the
        same names, the ``X as X`` re-exports.)
    """
    spec = namespace.get("__spec__")
    loader = getattr(spec, "loader", None)
    get_source = getattr(loader, "get_source", None)
    source = get_source(package) if get_source is not None else None
    if source is None:  # no loader that reads sources: the file itself
        if not path.endswith(".py"):  # only compiled files installed (compileall -b)
            raise ImportError(
                f"{package} reads the names it exports from the source of its "
                f"__init__.py, and {path} is compiled only: install meshlite with its "
                ".py files (a sourceless install, such as `compileall -b` followed by "
                "deleting the sources, is not supported)", name=package, path=path)
        with open(path, encoding="utf-8") as file:
            source = file.read()
    lazy, modules, public = declared_imports(source)
    getattr_, dir_ = lazy_exports(package, lazy, namespace, modules)
    return getattr_, dir_, public
