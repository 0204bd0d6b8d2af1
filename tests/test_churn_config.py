"""A mesh built from a config file (or following one with ``mesh.watch``) is freed
once closed and dropped, as a mesh built in code is: a process making many (a test
suite, a script, a worker rebuilding its mesh) does not keep each one, its services,
pipelines, metrics and config plan, for good. Real meshes with hot reload making real
calls to a FakeBackend."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import meshlite as ml
from meshlite.testing import FakeBackend

MESHES = 20


def _config(path: Path, url: str) -> Path:
    path.write_text(f"""
services:
  users:
    backends: ["{url}"]
    retry: {{attempts: 2}}
    circuit_breaker: {{}}
hot_reload: true
inbound:
  routes:
    - {{pattern: "/orders/*", rate: 100, key: ip}}
""")
    return path


def _alive(refs: list[weakref.ref[ml.Mesh]]) -> int:
    gc.collect()
    return sum(r() is not None for r in refs)


async def test_meshes_from_a_config_file_are_freed_once_closed(tmp_path: Path) -> None:
    refs: list[weakref.ref[ml.Mesh]] = []
    async with FakeBackend() as backend:
        path = _config(tmp_path / "mesh.yaml", backend.url)
        for _ in range(MESHES):
            mesh = ml.Mesh.from_config(path)
            async with mesh, mesh.http("users") as client:
                assert (await client.get("/")).status_code == 200
                assert await mesh.reload()
            refs.append(weakref.ref(mesh))
        del mesh, client  # (the client routes through its mesh)
        assert _alive(refs) == 0


def test_meshes_following_a_file_with_watch_are_freed_once_closed(tmp_path: Path) -> None:
    refs: list[weakref.ref[ml.Mesh]] = []
    with FakeBackend() as backend:
        path = _config(tmp_path / "mesh.yaml", backend.url)
        for _ in range(MESHES):
            mesh = ml.Mesh()
            mesh.watch(path)
            with mesh:
                assert mesh.call_sync("users", lambda b: b.address) == backend.url
            refs.append(weakref.ref(mesh))
        del mesh
        assert _alive(refs) == 0
