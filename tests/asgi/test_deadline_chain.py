"""A caller's deadline through a chain of three meshlite services, each a real
uvicorn server on loopback calling the next through its mesh: every hop sees less
time than the one before, the chain answers 504 when the time is up, and no hop
holds the caller's short deadline against the next (its breaker stays closed, its
backends stay in)."""

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


def _guarded(name: str, urls: list[str]) -> tuple[ml.Service, ml.CircuitBreaker]:
    breaker = ml.CircuitBreaker(window=4, min_calls=2, open_seconds=30.0)
    detection = ml.OutlierDetection(consecutive_failures=1, max_ejection_percent=50)
    return ml.Service(name, urls, pipeline=ml.Pipeline(breaker),
                      outlier_detection=detection), breaker


def _hop(mesh: ml.Mesh, callee: str, budgets: list[float | None]) -> MeshMiddleware:
    """A service answering ``/`` with the status of its call to ``callee``."""

    async def view(request: Any) -> JSONResponse:
        budgets.append(ml.remaining())
        answer = await mesh.http(callee).get("/")
        return JSONResponse({"callee": answer.status_code}, status_code=answer.status_code)

    return MeshMiddleware(Starlette(routes=[Path("/", view)]), mesh=mesh, trace=False)


async def test_a_deadline_through_three_services_shrinks_and_blames_no_hop() -> None:
    seen: dict[str, list[float | None]] = {"a": [], "b": [], "c": []}
    async with FakeBackend() as store:
        c_service, c_breaker = _guarded("store", [store.url])
        mesh_c = ml.Mesh([c_service], name="c")
        app_c = _hop(mesh_c, "store", seen["c"])
        async with mesh_c, AsgiServer(app_c) as c1, AsgiServer(app_c) as c2:
            b_service, b_breaker = _guarded("c", [c1.url, c2.url])
            mesh_b = ml.Mesh([b_service], name="b")
            app_b = _hop(mesh_b, "c", seen["b"])
            async with mesh_b, AsgiServer(app_b) as b:
                a_service, a_breaker = _guarded("b", [b.url])
                mesh_a = ml.Mesh([a_service], name="a")
                app_a = _hop(mesh_a, "b", seen["a"])
                async with mesh_a, AsgiServer(app_a) as a, httpx.AsyncClient() as client:
                    # Once through without a deadline: every connection made, every
                    # hop warm; then the store stalls.
                    assert (await client.get(a.url + "/")).status_code == 200
                    store.set(latency=2.0)
                    for budgets in seen.values():
                        budgets.clear()
                    answers = [await client.get(a.url + "/", headers={
                        "x-meshlite-deadline": str(150 + 20 * n)}) for n in range(6)]
                    for mesh in (mesh_a, mesh_b, mesh_c):  # (attempts cut: ended)
                        for _ in range(100):
                            if mesh.in_flight == 0:
                                break
                            await asyncio.sleep(0.01)
                    meshes = [(mesh_a, "b"), (mesh_b, "c"), (mesh_c, "store")]
                    snapshots = [m.snapshot()[name] for m, name in meshes]
    assert [(r.status_code, r.json()["error"]) for r in answers] == [
        (504, "deadline_exceeded")] * 6
    budgets = list(zip(seen["a"], seen["b"], seen["c"], strict=True))
    assert len(budgets) == 6
    for n, (at_a, at_b, at_c) in enumerate(budgets):
        assert at_a is not None
        assert at_b is not None
        assert at_c is not None
        assert at_c < at_b < at_a <= (150 + 20 * n) / 1000  # each hop less than before
    assert app_a.stats.routes()[0]["statuses"] == {"200": 1, "504": 6}
    for app in (app_b, app_c):
        # An inner hop's 504 and its caller's giving up both come at the deadline:
        # one that finds its caller gone went to no one and counts as status 0.
        statuses = app.stats.routes()[0]["statuses"]
        assert statuses.get("200") == 1
        assert statuses.get("504", 0) + statuses.get("0", 0) == 6
    assert [br.state for br in (a_breaker, b_breaker, c_breaker)] == ["closed"] * 3
    assert [br.metrics().failures for br in (a_breaker, b_breaker, c_breaker)] == [0] * 3
    assert [[s.status for s in snap.backends] for snap in snapshots] == [
        ["up"], ["up", "up"], ["up"]]
    assert [snap.errors for snap in snapshots] == [0, 0, 0]
