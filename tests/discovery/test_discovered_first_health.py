"""A discovered service's health check: its first round, which opening the mesh waits
for, probes the backends discovery resolved, not those they replace."""

from __future__ import annotations

from pathlib import Path

import meshlite as ml
from meshlite.discovery import Discovery, StaticProvider
from meshlite.testing import FakeBackend


def statuses(mesh: ml.Mesh, name: str) -> dict[str, str]:
    return {b.address: b.status for b in mesh.health()[name].backends}


def probes(backend: FakeBackend) -> int:
    return sum(1 for r in backend.requests if r.path == "/healthz")


async def test_the_first_round_probes_the_discovered_backends() -> None:
    async with FakeBackend() as good, FakeBackend(health_status=503) as bad:
        service = ml.Service("users", health_check=ml.HttpHealthCheck(
            interval=3600.0, unhealthy_threshold=1))  # no second round in this test
        service.attach(Discovery(service, StaticProvider([good.url, bad.url])))
        async with ml.Mesh([service]) as mesh:
            assert statuses(mesh, "users") == {good.url: "up", bad.url: "unhealthy"}
            assert (probes(good), probes(bad)) == (1, 1)
            for _ in range(10):
                async with mesh.aiohttp("users").get("/") as response:
                    assert response.status == 200
            assert bad.request_count == 1  # its probe


async def test_the_same_from_a_config_file(tmp_path: Path) -> None:
    async with FakeBackend() as good, FakeBackend(health_status=503) as bad:
        (tmp_path / "backends.yaml").write_text(f"- {good.url}\n- {bad.url}\n")
        config = tmp_path / "mesh.yaml"
        config.write_text(
            "services:\n  users:\n    backends: ['http://127.0.0.1:9']\n"
            "    discovery: {type: file, path: backends.yaml}\n"
            "    health_check: {interval: 3600, unhealthy_threshold: 1}\n")
        async with ml.Mesh.from_config(str(config), environ={}) as mesh:
            assert statuses(mesh, "users") == {good.url: "up", bad.url: "unhealthy"}
