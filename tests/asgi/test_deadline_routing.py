"""Routing under a client's deadline, through MeshMiddleware under real uvicorn: an
attempt cut by the budget a client sent (``x-meshlite-deadline``) says nothing about
the backend, so it ejects none and starts no failure streak; a ``Timeout`` of the
service's own still counts against the backend that was too slow."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route as Path

import meshlite as ml
from meshlite.asgi import MeshMiddleware
from meshlite.testing import AsgiServer, FakeBackend


def _detection() -> ml.OutlierDetection:
    return ml.OutlierDetection(consecutive_failures=2, max_ejection_percent=50)


async def _settled(mesh: ml.Mesh, name: str) -> None:
    # A sync view goes on in its thread after the 504: wait for its attempt to end.
    for _ in range(200):
        if mesh.snapshot()[name].in_flight == 0:
            return
        await asyncio.sleep(0.01)


async def test_tiny_client_deadlines_eject_no_backend_but_the_services_timeout_does() -> None:
    async with FakeBackend(latency=1.0) as a, FakeBackend(latency=1.0) as b:
        mesh = ml.Mesh([
            ml.Service("stock", [a.url, b.url], outlier_detection=_detection()),
            ml.Service("own", [a.url, b.url], pipeline=ml.Pipeline(ml.Timeout(0.1)),
                       outlier_detection=_detection()),
        ])

        async def view(request: Any) -> Any:
            r = await mesh.http(request.path_params["name"]).get("/")
            return JSONResponse({"status": r.status_code})

        def sync_view(request: Any) -> Any:  # run in a thread, over the sync wire
            r = mesh.http_sync(request.path_params["name"]).get("/")
            return JSONResponse({"status": r.status_code})

        app = MeshMiddleware(Starlette(routes=[Path("/async/{name}", view),
                                               Path("/sync/{name}", sync_view)]), mesh=mesh)
        async with mesh, AsgiServer(app) as server, \
                httpx.AsyncClient(base_url=server.url) as client:
            # Milliseconds: time for a loaded machine's request to reach the backend
            # (counted below), far less than the backend takes to answer.
            tiny = {"x-meshlite-deadline": "250"}
            for _ in range(4):
                assert (await client.get("/async/stock", headers=tiny)).status_code == 504
                assert (await client.get("/sync/stock", headers=tiny)).status_code == 504
            await _settled(mesh, "stock")
            stock = mesh.snapshot()["stock"]
            assert [s.status for s in stock.backends] == ["up", "up"]
            assert stock.errors == 0
            assert len(a.requests) + len(b.requests) >= 4  # (they reached the backends)
            assert [e.consecutive_failures for e in mesh.service("stock")._endpoints] == [0, 0]

            for path in ("/async/own", "/async/own", "/sync/own", "/sync/own"):
                assert (await client.get(path)).status_code == 504
            await _settled(mesh, "own")
            own = mesh.snapshot()["own"]  # 2 failures in a row on one of the two
            assert sorted(s.status for s in own.backends) == ["ejected", "up"]
            assert own.errors == 4


async def test_tiny_client_deadlines_open_no_breaker_on_either_wire() -> None:
    # The sync wire's own timeout, clamped to what the client's budget left, raises
    # httpx.ReadTimeout rather than a cancellation: still the caller's time, not the
    # service's, so the breaker records nothing on either wire.
    async with FakeBackend(latency=1.0) as backend:
        breaker = ml.CircuitBreaker(window=2, min_calls=2, open_seconds=30.0)
        mesh = ml.Mesh([ml.Service("guarded", [backend.url], pipeline=ml.Pipeline(breaker))])

        async def view(request: Any) -> Any:
            r = await mesh.http("guarded").get("/")
            return JSONResponse({"status": r.status_code})

        def sync_view(request: Any) -> Any:
            r = mesh.http_sync("guarded").get("/")
            return JSONResponse({"status": r.status_code})

        app = MeshMiddleware(Starlette(routes=[Path("/async", view), Path("/sync", sync_view)]),
                             mesh=mesh)
        async with mesh, AsgiServer(app) as server, \
                httpx.AsyncClient(base_url=server.url) as client:
            tiny = {"x-meshlite-deadline": "250"}  # as above: reaches it, is cut
            for _ in range(3):
                assert (await client.get("/sync", headers=tiny)).status_code == 504
                assert (await client.get("/async", headers=tiny)).status_code == 504
            await _settled(mesh, "guarded")
            assert (breaker.state, breaker.metrics().failures) == ("closed", 0)
            assert len(backend.requests) >= 6  # (the attempts reached the backend)
