"""The layers of docs/design.md ("Layers"), checked on every import statement of the
package (module level, in functions, under ``TYPE_CHECKING``, and
``importlib.import_module`` of a constant name): a module imports its
own layer and the layers below, never one above. Today's exceptions are listed one by
one with the reason; the list may only shrink (an exception that no longer occurs
fails too, so it is removed with the import that ended it)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "meshlite"

# Lowest first. The key is the first component below ``meshlite`` (a subpackage or a
# top-level module); "meshlite" itself is the root package.
LAYERS: list[tuple[str, set[str]]] = [
    ("engine", {"_arguments", "_clock", "_context", "_errors", "_events", "_policy", "_pipeline",
                "_validate", "_version", "_lazy", "_switches", "_predicates", "_backoff",
                "backoff", "_semconv", "_statelog", "_histogram", "_inflight", "_timing",
                "_console", "_audit", "_gather", "_fork", "_printable", "_extras", "_throttle",
                "_retry_after", "_tasks", "_inorder", "_memo", "_callables"}),
    ("state", {"state"}),
    ("policies", {"policies", "_resilient"}),
    ("routing", {"routing"}),
    ("wire and telemetry", {"_http", "http", "_inbound", "asgi", "telemetry",
                            "observability"}),
    ("mesh", {"mesh", "_api_audit"}),
    ("config and discovery", {"config", "discovery"}),
    ("tools", {"testing", "cli", "__main__", "_demo_mesh", "_demo_policies", "_demo_shop",
               "_bench", "meshlite"}),
]

# (importing module, imported module): each import from a lower layer into a higher one
# that exists today, with why it is there. Fix one, then delete its line.
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {
    # meshlite.routing still offers HttpHealthCheck (now in the HTTP layer) to code
    # that imports it from there: a lazy re-export, typed under TYPE_CHECKING.
    ("meshlite.routing", "meshlite._http._probe"): "HttpHealthCheck's old home",
    # One span per attempt is opened where the attempt is routed.
    ("meshlite.routing._route", "meshlite.telemetry._spans"): "attempt spans",
    # Type-only imports of Mesh by the observers of a mesh (TYPE_CHECKING): they take a
    # mesh as an argument; a Protocol of what they read would remove them.
    ("meshlite.observability._dashboard", "meshlite.mesh._mesh"): "type of serve()'s mesh",
    ("meshlite.observability._dashboard._monitor", "meshlite.mesh._mesh"): "type only",
    ("meshlite.observability._dashboard._server", "meshlite.mesh._mesh"): "type only",
    ("meshlite.observability._mesh_metrics", "meshlite.mesh._mesh"): "type only",
    ("meshlite.observability._scrape", "meshlite.mesh._mesh"): "type only",
    ("meshlite.observability._host", "meshlite.mesh._mesh"): "type only",
    # The dashboard's admin API reloads the mesh's config file, and its alert rules
    # files are checked with the config loader's exit codes.
    ("meshlite.observability._dashboard._admin", "meshlite.config._reload"):
        "the admin API's reload action",
    ("meshlite.observability._dashboard._prom_rules", "meshlite.config._check"):
        "exit codes of `meshlite check`",
    ("meshlite.observability._dashboard._prom_rules", "meshlite.config._load"):
        "loads the config the rules are written for",
    # The mesh's config facade (Mesh.from_config, watch, reload, reload_sync) imports
    # config in the method, so a mesh built in code never loads it.
    ("meshlite.mesh._mesh", "meshlite.config._mesh_config"): "Mesh.from_config",
    ("meshlite.mesh._operations", "meshlite.config._mesh_config"): "Mesh.watch",
    ("meshlite.mesh._operations", "meshlite.config._reload"): "Mesh.reload and Mesh.reload_sync",
    # A config names exception classes as users write them: "CircuitOpenError" is
    # looked up in the public namespace.
    ("meshlite.config._policies", "meshlite"): "exception names such as 'CircuitOpenError'",
}


def _layer_of(module: str) -> int:
    parts = module.split(".")
    key = parts[1] if len(parts) > 1 else "meshlite"
    for rank, (_, members) in enumerate(LAYERS):
        if key in members:
            return rank
    raise AssertionError(f"{module} is in no layer of tests/test_layering.py: add it")


def _module_name(path: Path) -> tuple[str, str]:
    """The module's dotted name, and the package its relative imports start from."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
        return ".".join(parts), ".".join(parts)
    return ".".join(parts), ".".join(parts[:-1])


def _imports(path: Path) -> set[str]:
    """Every meshlite module ``path`` imports (``from x import name`` counts as
    ``x.name`` when that is a module)."""
    _, package = _module_name(path)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "import_module" and node.args
                and isinstance(node.args[0], ast.Constant)):  # importlib, seen too
            found.add(str(node.args[0].value))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                file = ROOT / Path(*sub.split("."))
                is_module = file.with_suffix(".py").exists() or file.is_dir()
                found.add(sub if is_module else target)
    return {m for m in found if m == "meshlite" or m.startswith("meshlite.")}


def _violations() -> dict[tuple[str, str], tuple[str, str]]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module, _ = _module_name(path)
        for imported in _imports(path):
            if _layer_of(imported) > _layer_of(module):
                found[(module, imported)] = (LAYERS[_layer_of(module)][0],
                                             LAYERS[_layer_of(imported)][0])
    return found


def test_no_lower_layer_imports_a_higher_one() -> None:
    new = {f"{a} ({la}) imports {b} ({lb})": None
           for (a, b), (la, lb) in _violations().items() if (a, b) not in KNOWN_EXCEPTIONS}
    assert list(new) == []


def test_known_exceptions_still_exist() -> None:
    gone = sorted(set(KNOWN_EXCEPTIONS) - set(_violations()))
    assert gone == [], "these imports are gone: remove them from KNOWN_EXCEPTIONS"


def test_the_version_is_read_from_its_leaf_module() -> None:
    importing_root = sorted(module for (module, imported) in _violations()
                            if imported == "meshlite")
    assert importing_root == ["meshlite.config._policies"]
    for path in PACKAGE.rglob("*.py"):
        if path.name != "_version.py":
            assert "import __version__" not in path.read_text(encoding="utf-8").replace(
                "from ._version import __version__", "").replace(
                "from .._version import __version__", ""), path


def test_every_module_is_in_a_layer() -> None:
    for path in PACKAGE.rglob("*.py"):
        _layer_of(_module_name(path)[0])


def test_the_checker_sees_a_violation() -> None:
    assert _layer_of("meshlite.state._memory") < _layer_of("meshlite.policies._retry")
    assert _layer_of("meshlite._pipeline") < _layer_of("meshlite.mesh._mesh")
    assert ("meshlite.config._policies", "meshlite") in _violations()
