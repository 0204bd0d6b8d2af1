"""Refusals aggregated for the dashboard: shed load counts as ``shed``, a
dependency's error escaping the app does not count at all, and an attack spread over
many paths of one route is one entry per tick. Real uvicorn server."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from test_policies import echo

import meshlite as ml
from meshlite.asgi import MeshMiddleware, Route
from meshlite.testing import AsgiServer


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["path"] == "/dependency":  # an outgoing call's bulkhead, not this service's
        raise ml.BulkheadFullError("full", service="inventory", policy="bulkhead")
    await echo(scope, receive, send)


async def test_shedding_is_a_refusal_and_a_dependencys_503_is_not() -> None:
    middleware = MeshMiddleware(app, trace=False, routes=[Route("/slow", max_concurrent=1)])
    async with AsgiServer(middleware) as server, httpx.AsyncClient(base_url=server.url) as c:
        slow = asyncio.ensure_future(c.get("/slow?sleep=0.5"))
        await asyncio.sleep(0.2)
        shed = [(await c.get("/slow")).status_code for _ in range(4)]
        dependency = await c.get("/dependency")
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
