"""Request bodies uploaded slowly under a caller's deadline, through a real uvicorn
server and a raw socket writing the body in small pieces: the deadline holds while
the middleware itself reads the body (a validated route), as it does while the
handler reads it."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route as Path

from meshlite.asgi import MeshMiddleware, Route
from meshlite.testing import AsgiServer


class Order(BaseModel):
    """What ``/orders`` accepts."""

    item: str


async def upload(request: Request) -> JSONResponse:
    return JSONResponse({"bytes": len(await request.body())})


@pytest.mark.parametrize("path", ["/orders", "/plain"])
async def test_a_body_trickling_in_is_not_waited_for_past_the_callers_deadline(
        path: str) -> None:
    app = MeshMiddleware(Starlette(routes=[Path(p, upload, methods=["POST"])
                                           for p in ("/orders", "/plain")]),
                         trace=False, routes=[Route("/orders", validate=Order)])
    body = b'{"item": "' + b"a" * 2000 + b'"}'  # 100 bytes each 50 ms: over a second
    async with AsgiServer(app) as server:
        host, port = server.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
                     "x-meshlite-deadline: 200\r\n\r\n".encode())

        sent = 0

        async def trickle() -> None:
            nonlocal sent
            for at in range(0, len(body), 100):
                writer.write(body[at:at + 100])
                await writer.drain()
                sent = at + 100
                await asyncio.sleep(0.05)

        uploading = asyncio.create_task(trickle())
        try:
            status = await asyncio.wait_for(reader.readline(), 10)
            sent_by_the_answer = sent
        finally:
            uploading.cancel()
            writer.close()
    assert status == b"HTTP/1.1 504 Gateway Timeout\r\n"
    assert sent_by_the_answer < len(body) // 2  # answered at the deadline, not the end
    assert app.stats.routes()[0]["statuses"] == {"504": 1}
