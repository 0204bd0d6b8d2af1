"""Counters a Prometheus server scrapes stay monotonic when a config reload rebuilds
a service (a routing change): no drop it would read as a counter reset."""

from __future__ import annotations

from pathlib import Path

import meshlite as ml
from meshlite.observability import render
from meshlite.testing import FakeBackend

CONFIG = """
services:
  users:
    backends: ["{good}", "{bad}"]
    balancer: {balancer}
    retry: {{attempts: 3}}
"""


def counters(text: str) -> dict[str, float]:
    """Every counter and histogram-count sample of an exposition, by series."""
    found = {}
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        if line and not line.startswith("#") and head.split("{")[0].endswith(
                ("_total", "_count", "_bucket")):
            found[head] = float(value)
    return found


async def test_a_rebuilt_services_backend_counters_carry_on(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    async with FakeBackend() as good, FakeBackend(error_rate=1.0) as bad:
        path.write_text(CONFIG.format(good=good.url, bad=bad.url, balancer="round_robin"))
        mesh = ml.Mesh.from_config(path)
        async with mesh:
            for _ in range(4):
                assert (await mesh.http("users").get("/x")).status_code == 200
            before = counters(render(mesh))
            path.write_text(CONFIG.format(good=good.url, bad=bad.url, balancer="random"))
            assert await mesh.reload()
            assert mesh.config_version == 1  # the balancer changed: a new service
            after = counters(render(mesh))
            assert (await mesh.http("users").get("/x")).status_code == 200
            later = counters(render(mesh))
    series = f'meshlite_backend_requests_total{{service="users",backend="{good.url}"}}'
    errors = f'meshlite_backend_errors_total{{service="users",backend="{bad.url}"}}'
    assert before[series] == 4
    assert before[errors] >= 1
    assert {k: v for k, v in before.items() if after.get(k, 0) < v} == {}
    assert later[series] == 5


def test_a_backend_whose_weight_changes_keeps_its_counters() -> None:
    from meshlite.routing import Backend

    service = ml.Service("users", [Backend("a"), Backend("b")], balancer="weighted_round_robin")
    mesh = ml.Mesh([service])
    for _ in range(4):
        mesh.call_sync("users", lambda b: b.address)
    before = counters(render(mesh))
    service.set_backends([Backend("a", weight=3), Backend("b")])  # as discovery or a reload
    after = counters(render(mesh))
    assert before['meshlite_backend_requests_total{service="users",backend="a"}'] == 2
    assert {k: v for k, v in before.items() if after.get(k, 0) < v} == {}
