"""Config changes a mesh and its services through the methods they keep for it, never
through their private attributes (docs/design.md, "Layers")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import meshlite as ml
from meshlite.config import _apply

CONFIG = Path(__file__).resolve().parents[2] / "meshlite" / "config"
# Every module of config/ follows the rule (a module's own `self._x` is its own).
FOLLOWING = tuple(sorted(p.name for p in CONFIG.glob("*.py")))


def _private_reads(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                and not node.attr.startswith("__") and isinstance(node.value, ast.Name)
                and node.value.id in ("mesh", "service", "live", "previous")):
            found.append(f"{path.name}:{node.lineno} {node.value.id}.{node.attr}")
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "setattr", "hasattr") and len(node.args) > 1
                and isinstance(node.args[0], ast.Name)
                and node.args[0].id in ("mesh", "service", "live", "previous")
                and isinstance(node.args[1], ast.Constant)
                and str(node.args[1].value).startswith("_")
                and not str(node.args[1].value).startswith("__")):
            found.append(f"{path.name}:{node.lineno} {node.func.id}(..., "
                         f"{node.args[1].value!r})")  # the same reach, by name
    return found


def test_config_applies_through_the_mesh_interface() -> None:
    assert [r for name in FOLLOWING for r in _private_reads(CONFIG / name)] == []


def test_a_private_attribute_named_in_getattr_counts_too(tmp_path: Path) -> None:
    module = tmp_path / "reach.py"
    module.write_text('def f(mesh):\n    return getattr(mesh, "_alerts", None)\n')
    assert _private_reads(module) == ["reach.py:2 getattr(..., '_alerts')"]


def test_the_interface_registers_replaces_and_drops() -> None:
    mesh = ml.Mesh([ml.Service("users", backends=["http://127.0.0.1:9"])])
    old = mesh.service("users")
    new = ml.Service("users", backends=["http://127.0.0.1:10"])
    mesh.put_service(new, replacing=old)
    assert mesh.service("users") is new
    assert mesh.registered()["users"] is new
    assert not mesh.is_open
    assert mesh.loop_thread is None
    fake = object()
    with mesh.override("users", fake):
        newer = ml.Service("users", backends=["http://127.0.0.1:11"])
        mesh.put_service(newer, replacing=new)  # the override stays in force
        assert mesh.target("users") is fake
    assert mesh.service("users") is newer
    mesh.drop_service(newer)
    assert "users" not in mesh.registered()


def test_a_new_pipeline_gets_the_service_hooks() -> None:
    service = ml.Service("users", backends=["http://127.0.0.1:9"])
    seen: list[ml.Event] = []
    service.add_hook(seen.append)
    retry = ml.Retry(attempts=2)
    _apply.swap_pipeline(service, ml.Pipeline(retry))
    assert retry in list(service.pipeline.walk())
    assert retry.hooks.active


class _Broken(ml.Policy):
    kind = "broken"

    def wrap(self, call_next: ml.Handler) -> ml.Handler:
        raise ml.ConfigError("broken")

    def awrap(self, call_next: ml.AsyncHandler) -> ml.AsyncHandler:
        raise ml.ConfigError("broken")


def test_a_pipeline_that_does_not_compile_changes_nothing() -> None:
    service = ml.Service("users", backends=["http://127.0.0.1:9"])
    before, handler = service.pipeline, service.async_handler()
    with pytest.raises(ml.ConfigError, match="broken"):
        service.set_pipeline(ml.Pipeline(_Broken()))
    assert service.pipeline is before
    assert service.async_handler() is handler
