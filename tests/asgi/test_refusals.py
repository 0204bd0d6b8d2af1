"""Refusals aggregated for the dashboard: shed load counts as ``shed``, a
dependency's error escaping the app does not count at all, and an attack spread over
many paths of one route is one entry per tick. Real uvicorn server."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from test_policies import Holding, echo

import meshlite as ml
from meshlite.asgi import MeshMiddleware, Route
from meshlite.testing import AsgiServer


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["path"] == "/dependency":  # an outgoing call's bulkhead, not this service's
        raise ml.BulkheadFullError("full", service="inventory", policy="bulkhead")
    await echo(scope, receive, send)


async def test_shedding_is_a_refusal_and_a_dependencys_503_is_not() -> None:
    held = Holding(app)
    middleware = MeshMiddleware(held, trace=False, routes=[Route("/slow", max_concurrent=1)])
    async with AsgiServer(middleware) as server, httpx.AsyncClient(base_url=server.url) as c:
        slow = asyncio.ensure_future(c.get("/slow"))
        await held.inside.wait()  # the one slot is taken until released
        shed = [(await c.get("/slow")).status_code for _ in range(4)]
        dependency = await c.get("/dependency")
        held.release.set()
        await slow
    assert shed == [503] * 4
    assert dependency.status_code == 503
    entries = middleware.refusals.drain(100)
    assert [(e["action"], e["route"], e["status"], e["count"], e["clients"])
            for e in entries] == [("shed", "/slow", 503, 4, 1)]
    assert middleware.refusals.drain(101) == []  # drained once
    assert list(middleware.refusals.recent) == entries


async def test_an_attack_on_many_paths_of_one_route_is_one_entry() -> None:
    from meshlite.asgi import Auth

    middleware = MeshMiddleware(echo, trace=False, auth=Auth(api_keys={"k": ("a", [])}),
                                routes=[Route("/x/*", auth=True)])
    async with AsgiServer(middleware) as server, httpx.AsyncClient(base_url=server.url) as c:
        codes = {(await c.get(f"/x/{i}", headers={"x-api-key": "bad"})).status_code
                 for i in range(200)}
    assert codes == {401}
    (entry,) = middleware.refusals.drain(1)  # one route pattern: one entry
    assert (entry["action"], entry["route"], entry["count"]) == ("auth_failed", "/x/*", 200)


async def test_a_dependencys_rate_limit_is_not_the_clients_exhausted_quota(
        tmp_path: Any) -> None:
    async with ml.testing.FakeBackend() as backend:
        payments = ml.Service("payments", [backend.url], pipeline=ml.Pipeline(
            ml.RateLimit(1.0, per=60.0, mode="reject")))
        mesh = ml.Mesh([payments], name="shop")

        async def checkout(scope: Any, receive: Any, send: Any) -> None:
            await mesh.http("payments").post("/charge")  # its quota, not the client's
            await echo(scope, receive, send)

        audit = ml.AuditLog(tmp_path / "audit.jsonl")
        middleware = MeshMiddleware(checkout, mesh=mesh, trace=False, audit=audit,
                                    routes=[Route("/checkout", rate=2.0, per=60.0)])
        async with mesh, AsgiServer(middleware) as server, httpx.AsyncClient(
                base_url=server.url) as c:
            first = await c.get("/checkout")
            throttled = await c.get("/checkout", headers={"x-meshlite-deadline": "5000"})
            audited = (tmp_path / "audit.jsonl").read_text() if (
                tmp_path / "audit.jsonl").exists() else ""
            assert "inbound." not in audited  # the client exhausted nothing
            assert middleware.refusals.drain(0) == []
            middleware.configure([Route("/checkout", rate=1.0, per=60.0)])  # a fresh quota
            over = [(await c.get("/checkout")).status_code for _ in range(2)]
    assert (first.status_code, throttled.status_code, over) == (200, 429, [429, 429])
    (entry,) = middleware.refusals.drain(1)  # the second of `over` only: the route's
    assert (entry["action"], entry["count"]) == ("quota_exhausted", 1)
    assert "inbound.quota_exhausted" in (tmp_path / "audit.jsonl").read_text()
