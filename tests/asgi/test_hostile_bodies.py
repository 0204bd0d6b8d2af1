"""Hostile bodies against a route with ``validate=`` under a real uvicorn server."""

from __future__ import annotations

import json
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
    assert [json.loads(b) for b in ran] == [{"a": [[[1]]]}]  # the refused one never did
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
    (route,) = middleware.stats.routes()
    assert route["statuses"] == {"200": 1, "400": 1}


async def test_a_malformed_content_length_is_left_to_the_server_not_a_crash() -> None:
    # uvicorn refuses these itself; another ASGI server may hand them on as they came
    async def app(scope: object, receive: object, send: object) -> None:
        await send({"type": "http.response.start",  # type: ignore[operator]
                    "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})  # type: ignore[operator]

    middleware = MeshMiddleware(app, trace=False, routes=[Route("/", max_body=10)])
    statuses = []
    for length in (b"\xb2", b"9" * 5000, b"5", b"0" * 20 + b"5", b"0" * 20 + b"11"):
        sent: list[dict[str, object]] = []

        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, object], into: list[dict[str, object]] = sent
                       ) -> None:
            into.append(message)

        await middleware({"type": "http", "method": "POST", "path": "/", "headers": [
            (b"content-length", length)], "query_string": b""}, receive, send)
        statuses.append(sent[0]["status"])
    # leading zeros are valid (0...05 is 5): only the value counts, not the digits
    assert statuses == [200, 413, 200, 200, 413]
