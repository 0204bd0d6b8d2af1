"""The middleware's common path (no matching policy, deadline, caller, credentials or
span): the app runs directly, with one watch on ``send``, yet errors are still mapped
and every answer is counted. Real uvicorn server, real HTTP client."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import meshlite as ml
import meshlite.asgi
from meshlite.asgi import MeshMiddleware, Route
from meshlite.testing import AsgiServer


async def raw_app(scope: Any, receive: Any, send: Any) -> None:
    if scope["path"] == "/limited":
        raise ml.RateLimitedError("over", policy="rate_limit", retry_after=2.0)
    await send({"type": "http.response.start", "status": 201, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _no_full_path(monkeypatch: pytest.MonkeyPatch) -> None:
    async def full(*args: Any) -> None:
        raise AssertionError("the common path built the full request path")

    monkeypatch.setattr(MeshMiddleware, "_full", full)


async def test_plain_requests_skip_the_request_object_and_are_counted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    app = meshlite.asgi.MeshMiddleware(raw_app, trace=False)
    _no_full_path(monkeypatch)
    async with AsgiServer(app) as server, httpx.AsyncClient() as client:
        ok = [await client.get(server.url + "/x") for _ in range(3)]
        limited = await client.get(server.url + "/limited")
    assert [r.status_code for r in ok] == [201, 201, 201]
    assert limited.status_code == 429  # mapped on the direct path too
    assert limited.headers["retry-after"] == "2"
    (row,) = app.stats.routes()
    assert row["route"] == "*"
    assert row["statuses"] == {"201": 3, "429": 1}


async def test_a_route_without_policies_runs_directly_under_its_label(
        monkeypatch: pytest.MonkeyPatch) -> None:
    app = MeshMiddleware(raw_app, trace=False, routes=[Route("/x/{id}")])
    _no_full_path(monkeypatch)
    async with AsgiServer(app) as server, httpx.AsyncClient() as client:
        await client.get(server.url + "/x/1")
        await client.get(server.url + "/x/2")
    assert {r["route"]: r["requests"] for r in app.stats.routes()} == {"/x/{id}": 2}


async def test_a_deadline_or_a_policy_takes_the_full_path() -> None:
    app = MeshMiddleware(raw_app, trace=False, routes=[Route("/x", rate=1.0, burst=1)])
    async with AsgiServer(app) as server, httpx.AsyncClient() as client:
        first = await client.get(server.url + "/x")
        second = await client.get(server.url + "/x")
        expired = await client.get(server.url + "/y", headers={"x-meshlite-deadline": "0"})
    assert (first.status_code, second.status_code, expired.status_code) == (201, 429, 504)
