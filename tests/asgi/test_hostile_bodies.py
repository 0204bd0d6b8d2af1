"""Hostile bodies against a route with ``validate=`` under a real uvicorn server."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

import meshlite as ml
from meshlite.asgi import MeshMiddleware, Route
from meshlite.testing import AsgiServer


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a":' * 50_000],
                         ids=["arrays", "objects"])
async def test_deeply_nested_json_is_a_400_not_a_500_with_a_traceback(
        body: bytes, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    ran: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        ran.append((await receive()).get("body", b""))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    middleware = MeshMiddleware(app, trace=False, routes=[
        Route("/orders", methods=("POST",), validate=ml.Validate(args={"body": dict}))])
    async with AsgiServer(middleware) as server, httpx.AsyncClient() as client:
        r = await client.post(server.url + "/orders", content=body,
                              headers={"content-type": "application/json"})
        fine = await client.post(server.url + "/orders", json={"a": [[[1]]]})
    assert r.status_code == 400  # well under the 1 MiB body limit, so parsed
    assert r.json() == {"error": "bad_request",
                        "message": "the request body's JSON is nested too deeply"}
    assert fine.status_code == 200
    assert ran == [b'{"a":[[[1]]]}']  # the refused body never reached the app
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
    (route,) = middleware.stats.routes()
    assert route["statuses"] == {"200": 1, "400": 1}
