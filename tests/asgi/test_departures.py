"""Clients that leave before their answer, under a real uvicorn server and raw
sockets: an upload abandoned halfway, a reader that stops reading a stream. What
the middleware counts, what the server logs, and that nothing is held after."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route as Path

import meshlite as ml
from meshlite.asgi import MeshMiddleware
from meshlite.testing import AsgiServer


async def _open(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def _settled(app: MeshMiddleware, count: int) -> list[dict[str, Any]]:
    for _ in range(300):  # the server sees the close and ends the request
        routes = app.stats.routes()
        if sum(r["requests"] for r in routes) >= count:
            return routes
        await asyncio.sleep(0.01)
    return app.stats.routes()


@pytest.mark.parametrize("headers", [b"", b"x-meshlite-deadline: 5000\r\n"],
                         ids=["direct-path", "full-path"])
async def test_an_upload_abandoned_halfway_is_no_server_error(
        headers: bytes, caplog: pytest.LogCaptureFixture) -> None:
    # Starlette's request.body() raises ClientDisconnect when the client leaves; its
    # error middleware then sends a 500 to no one and raises on. The request ended
    # without an answer: counted 0 (as the middleware's own validation reads count
    # it), neither a 5xx of the service nor a traceback in the server's log.
    async def upload(request: Request) -> JSONResponse:
        return JSONResponse({"bytes": len(await request.body())})

    mesh = ml.Mesh([], name="files")
    app = MeshMiddleware(Starlette(routes=[Path("/up", upload, methods=["POST"])]),
                         mesh=mesh, trace=False)
    with caplog.at_level(logging.INFO):
        async with AsgiServer(app) as server:
            _, writer = await _open(server.url)
            writer.write(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                         + headers + b"\r\n" + b"a" * 1000)
            await writer.drain()
            await asyncio.sleep(0.2)  # the handler is waiting for the rest
            writer.close()
            routes = await _settled(app, 1)
    assert routes[0]["statuses"] == {"0": 1}
    assert [r.getMessage() for r in caplog.records if r.name.startswith("uvicorn")] == []
