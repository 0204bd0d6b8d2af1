"""What the dashboard says during an outage agrees with itself and with the mesh: a
service that went into panic (every backend out) since the last sampled second is
shown in panic by ``/api/services``, in the same answer that lists its backends
ejected, and one that recovered since is no longer shown in panic. Real dashboard
and backends on loopback; the seconds are sampled by hand, so the test knows what
each one holds."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

import meshlite as ml
from meshlite.observability._dashboard._server import DashboardServer
from meshlite.testing import FakeBackend


@pytest.fixture
async def outage() -> AsyncIterator[tuple[DashboardServer, ml.Mesh, list[str]]]:
    async with FakeBackend() as a, FakeBackend() as b:
        mesh = ml.Mesh([ml.Service("users", [a.url, b.url], pipeline=ml.Pipeline())])
        async with mesh:
            server = await mesh.serve_dashboard(port=0)
            await server.monitor.stop()  # sample by hand: each second holds what we sent
            try:
                yield server, mesh, [a.url, b.url]
            finally:
                await server.stop()


async def calls(mesh: ml.Mesh, n: int) -> None:
    async with mesh.http("users") as client:
        for _ in range(n):
            assert (await client.get("/work")).status_code == 200


async def users(server: DashboardServer) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url, trust_env=False) as http:
        one = (await http.get("/api/services/users")).json()
        every = {s["name"]: s for s in (await http.get("/api/services")).json()["services"]}
    assert every["users"]["status"] == one["status"]
    return one


async def test_a_service_in_panic_since_the_last_second_is_shown_in_panic(
        outage: tuple[DashboardServer, ml.Mesh, list[str]]) -> None:
    server, mesh, backends = outage
    await calls(mesh, 6)
    server.monitor.tick(time.time() + 1)  # a healthy second: 6 calls, none failed
    service = mesh.service("users")
    for address in backends:
        service.eject(address)  # every backend out: panic, until restored
    shown = await users(server)
    assert shown["panic"] is True
    assert [b["status"] for b in shown["backends"]] == ["ejected", "ejected"]
    assert shown["health"]["status"] == "panic"
    assert shown["status"] == "panic"  # not the last second's "healthy"
    assert (shown["last_second"]["requests"], shown["last_second"]["errors"]) == (6, 0)


async def test_a_service_out_of_panic_since_the_last_second_is_not_shown_in_panic(
        outage: tuple[DashboardServer, ml.Mesh, list[str]]) -> None:
    server, mesh, backends = outage
    service = mesh.service("users")
    for address in backends:
        service.eject(address)
    server.monitor.tick(time.time() + 1)  # a second in panic, without calls
    assert (await users(server))["status"] == "panic"
    for address in backends:
        service.restore(address)
    await calls(mesh, 4)
    shown = await users(server)
    assert shown["panic"] is False
    assert shown["health"]["status"] == "healthy"
    assert shown["status"] == "healthy"  # not the last second's "panic"


async def test_failed_calls_of_the_last_second_still_make_the_status(
        outage: tuple[DashboardServer, ml.Mesh, list[str]]) -> None:
    server, mesh, _ = outage

    async def refused(backend: Any) -> str:
        raise ConnectionError("refused")

    for _ in range(4):
        with contextlib.suppress(ConnectionError):
            await mesh.call("users", refused)
    await calls(mesh, 2)
    server.monitor.tick(time.time() + 1)  # 6 calls, 4 failed: failing, routing up
    shown = await users(server)
    assert (shown["last_second"]["requests"], shown["last_second"]["errors"]) == (6, 4)
    assert shown["status"] == "failing"
