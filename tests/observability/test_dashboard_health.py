"""What ``/api/health`` tells an operator: each service's routing view (as
``mesh.health()``), and an overall ``status`` that also says when calls fail
while routing is up (a breaker open, the last second's calls failing) and when
the mesh refuses every call (closing or closed)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

import meshlite as ml
from meshlite.observability._dashboard._server import DashboardServer


def make_mesh() -> ml.Mesh:
    return ml.Mesh([
        ml.Service("users", ["http://127.0.0.1:80", "http://127.0.0.2:80"],
                   pipeline=ml.Pipeline(ml.CircuitBreaker(name="users-db"))),
        ml.Service("orders", ["http://127.0.0.3:80"], pipeline=ml.Pipeline()),
    ])


@pytest.fixture
async def mesh() -> AsyncIterator[ml.Mesh]:
    mesh = make_mesh()
    async with mesh:
        yield mesh


@pytest.fixture
async def server(mesh: ml.Mesh) -> AsyncIterator[DashboardServer]:
    srv = await mesh.serve_dashboard(port=0)
    await srv.monitor.stop()  # the test ticks by hand
    yield srv
    await srv.stop()


async def health(srv: DashboardServer) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=srv.url, trust_env=False) as c:
        r = await c.get("/api/health")
    assert r.status_code == 200  # always 200: the answer is in the body
    answer: dict[str, Any] = r.json()
    return answer


def routing(mesh: ml.Mesh) -> dict[str, Any]:
    return {n: json.loads(json.dumps(h.as_dict())) for n, h in mesh.health().items()}


async def test_all_well(mesh: ml.Mesh, server: DashboardServer) -> None:
    answer = await health(server)
    assert answer == {"status": "healthy", "mesh": "open", "calls": {},
                      "services": routing(mesh)}


async def test_an_open_breaker_makes_it_failing_while_routing_is_up(
        mesh: ml.Mesh, server: DashboardServer) -> None:
    breaker = next(p for p in mesh.service("users").pipeline.walk()
                   if p.kind == "circuit_breaker")
    breaker.force_open()
    answer = await health(server)
    assert answer["services"] == routing(mesh)  # the routing view is unchanged
    assert answer["services"]["users"]["status"] == "healthy"
    assert answer["status"] == "failing"
    assert answer["calls"] == {"users": {
        "status": "failing", "reason": "circuit breaker users-db is forced_open"}}
    breaker.reset()
    assert (await health(server))["status"] == "healthy"


async def test_calls_failing_in_the_last_second_make_it_failing(
        mesh: ml.Mesh, server: DashboardServer) -> None:
    def fail(backend: Any) -> None:
        raise ConnectionError("refused")

    for _ in range(4):
        with contextlib.suppress(ConnectionError):
            await mesh.call("orders", fail)
    server.monitor.tick()
    answer = await health(server)
    assert answer["status"] == "failing"
    assert answer["calls"] == {"orders": {
        "status": "failing", "reason": "4 of 4 calls failed in the last second"}}


async def test_every_backend_out_is_worse_than_failing(
        mesh: ml.Mesh, server: DashboardServer) -> None:
    mesh.service("orders").eject("http://127.0.0.3:80")
    answer = await health(server)
    assert answer["services"]["orders"]["status"] == "panic"  # routing to all that are out
    assert answer["status"] == "panic"
    assert answer["calls"] == {}  # the routing status already says it


async def test_a_closing_mesh_is_down() -> None:
    mesh = make_mesh()
    async with mesh:
        server = await mesh.serve_dashboard(port=0)
    try:  # the mesh closed; the dashboard (started apart) still answers
        answer = await health(server)
        assert answer["mesh"] == "closed"
        assert answer["status"] == "down"  # every call is refused
        assert answer["services"] == routing(mesh)
    finally:
        await server.stop()
