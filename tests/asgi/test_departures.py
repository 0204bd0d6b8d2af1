"""Clients that leave before their answer, under a real uvicorn server and raw
sockets: an upload abandoned halfway, a reader that stops reading a stream. What
the middleware counts, what the server logs, and that nothing is held after."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
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
                         b"x-meshlite-caller: gateway\r\n" + headers + b"\r\n" + b"a" * 1000)
            await writer.drain()
            await asyncio.sleep(0.2)  # the handler is waiting for the rest
            writer.close()
            routes = await _settled(app, 1)
    assert routes[0]["statuses"] == {"0": 1}
    # For the calling service the request failed all the same (as its help says).
    (edge,) = app.stats.callers(0.0)
    assert (edge["caller"], edge["requests"], edge["errors"]) == ("gateway", 1, 1)
    assert [r.getMessage() for r in caplog.records if r.name.startswith("uvicorn")] == []


async def test_a_stream_past_its_deadline_ends_though_its_client_stopped_reading(
        caplog: pytest.LogCaptureFixture) -> None:
    # Past the caller's deadline the body is ended (see end_body); a client that has
    # stopped reading, its buffers full, cannot take even that last chunk: the
    # request ends anyway (counted, its span ended, the connection closed) instead
    # of waiting for the client to go.
    async def endless(request: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            while True:
                yield b"x" * 65536

        return StreamingResponse(chunks())

    app = MeshMiddleware(Starlette(routes=[Path("/feed", endless)]), trace=False)
    with caplog.at_level(logging.INFO):
        async with AsgiServer(app) as server:
            reader, writer = await _open(server.url)
            writer.transport.pause_reading()  # type: ignore[attr-defined]
            writer.write(b"GET /feed HTTP/1.1\r\nHost: x\r\n"
                         b"x-meshlite-deadline: 300\r\n\r\n")
            try:
                routes = await _settled(app, 1)
                writer.transport.resume_reading()  # type: ignore[attr-defined]
                received = await asyncio.wait_for(_drained(reader), 10)
            finally:
                writer.close()  # (else the server's shutdown waits for it)
    assert routes[0]["statuses"] == {"200": 1}  # what went out: its head
    assert received.startswith(b"HTTP/1.1 200 OK")
    assert not received.endswith(b"0\r\n\r\n")  # closed, not passed off as whole
    # The server's one line for a response it could not complete; no traceback.
    assert [r.getMessage() for r in caplog.records if r.name.startswith("uvicorn")] == [
        "ASGI callable returned without completing response."]


async def _drained(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sent until it closed the connection."""
    chunks = []
    while chunk := await reader.read(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)
