"""Callers that give up before their answer: a raw socket sends a request and
closes, under a real uvicorn server (both its HTTP parsers). What operators read
(the Prometheus exposition, the SERVER span) says the request ended without an
answer (status 0), not the 200 its handler later sent to no one. The handler is not
cancelled (its work ends as it would have); once the server has said the client left
(``http.disconnect``), its next ``send()`` raises ``ClientLeft``, an ``OSError`` as the
ASGI spec asks, which the middleware takes: a stream stops at its next chunk, even
one that never reads ``receive()``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn
from _exposition import by_label, requests_by_status
from observability.otlp_receiver import OtlpReceiver
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as Path

import meshlite as ml
from meshlite import telemetry
from meshlite._inbound._departure import WATCH_AFTER, ClientLeft
from meshlite.asgi import MeshMiddleware, Route
from meshlite.observability._dashboard._uvicorn import Background, bind, start

HEADERS = {"direct": b"", "deadline": b"x-meshlite-deadline: 20000\r\n",
           "caller": b"x-meshlite-caller: gateway\r\n"}


@asynccontextmanager
async def serving(app: Any, http: str) -> AsyncIterator[tuple[int, Background]]:
    """``app`` under uvicorn with the ``http`` parser: its port and its server."""
    # (A bounded shutdown: a handler that never learnt its client left would
    # otherwise keep the server from stopping, and the test from failing.)
    server = Background(uvicorn.Config(app, http=http, lifespan="off", log_config=None,
                                       log_level="error", access_log=False,
                                       timeout_graceful_shutdown=5))
    sock = bind("127.0.0.1", 0)
    serving = await start(server, sock)
    try:
        yield sock.getsockname()[1], server
    finally:
        server.should_exit = True
        await serving


async def closed_by_server(server: Background) -> None:
    """Until the server has seen every connection close."""
    for _ in range(1000):
        if not server.server_state.connections:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the server never saw the client close")


async def ask_and_leave(port: int, request: bytes, first: bytes = b"") -> bytes:
    """Send ``request``, read until ``first`` has come (nothing when empty), close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    got = await asyncio.wait_for(reader.readuntil(first), 10) if first else b""
    writer.close()
    await writer.wait_closed()
    return got


@pytest.mark.parametrize("http", ["httptools", "h11"])
@pytest.mark.parametrize("headers", list(HEADERS), ids=list(HEADERS))
async def test_a_caller_that_leaves_a_busy_handler_is_no_200(
        http: str, headers: str, caplog: pytest.LogCaptureFixture) -> None:
    # The handler never reads receive(): only the middleware can hear the server
    # say the client left. Without that, the handler answered 200 once released,
    # uvicorn dropped it, and the metrics counted a success. The handler is not
    # cancelled: its work ends, and its answer is refused (ClientLeft, an OSError).
    started, release = asyncio.Event(), asyncio.Event()
    outcome: list[str] = []

    async def busy(scope: Any, receive: Any, send: Any) -> None:
        started.set()
        try:
            await release.wait()
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise
        await asyncio.sleep(2 * WATCH_AFTER)  # work: an answer begun within it is not checked
        outcome.append("worked")
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        except OSError as error:
            outcome.append(type(error).__name__)
            raise
        await send({"type": "http.response.body", "body": b"late"})

    mesh = ml.Mesh([], name="orders")
    app = MeshMiddleware(busy, mesh=mesh, trace=False, routes=[
        Route("/orders", max_concurrent=8)] if headers == "caller" else None)
    with caplog.at_level(logging.INFO):
        async with serving(app, http) as (port, server):
            asking = asyncio.create_task(ask_and_leave(
                port, b"GET /orders HTTP/1.1\r\nHost: x\r\n" + HEADERS[headers] + b"\r\n"))
            await asyncio.wait_for(started.wait(), 10)
            await asking
            await closed_by_server(server)
            release.set()  # (a handler that was not told answers now, to no one)
            counted = await requests_by_status(mesh, 1)
    assert counted == {"0": 1.0}
    assert outcome == ["worked", ClientLeft.__name__]
    assert [r.getMessage() for r in caplog.records if r.name.startswith("uvicorn")] == []
    exposition = ml.observability.render(mesh)
    assert 'meshlite_server_request_duration_seconds_count{route=' in exposition
    if headers == "caller":  # for the calling service it failed all the same
        assert by_label(exposition, "meshlite_server_caller_errors_total", "caller") == {
            "gateway": 1.0}


@pytest.mark.parametrize("http", ["httptools", "h11"])
async def test_a_caller_that_leaves_a_stream_stops_it_and_frees_its_slot(http: str) -> None:
    # A raw ASGI stream does not read receive(); uvicorn drops what it sends after
    # the client left, so without the middleware hearing the disconnect it streamed
    # on for good, holding the route's only concurrency slot: the next caller got 503.
    stopped = asyncio.Event()

    async def feed(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        try:
            while True:
                await send({"type": "http.response.body", "body": b"data: tick\n\n",
                            "more_body": True})
                await asyncio.sleep(0.01)
        finally:
            stopped.set()

    mesh = ml.Mesh([], name="feeds")
    app = MeshMiddleware(feed, mesh=mesh, trace=False,
                         routes=[Route("/feed", max_concurrent=1)])
    async with serving(app, http) as (port, server):
        got = await ask_and_leave(port, b"GET /feed HTTP/1.1\r\nHost: x\r\n\r\n",
                                  first=b"data: tick\n\n")
        await closed_by_server(server)
        for _ in range(1000):  # (the server's news reaches the handler)
            if stopped.is_set():
                break
            await asyncio.sleep(0.01)
        # The next caller gets the slot: its stream starts (it leaves too).
        again = await ask_and_leave(port, b"GET /feed HTTP/1.1\r\nHost: x\r\n\r\n",
                                    first=b"\r\n\r\n")
        counted = await requests_by_status(mesh, 2)
    assert got.startswith(b"HTTP/1.1 200 OK")
    assert again.startswith(b"HTTP/1.1 200 OK")
    # Each stream counted once, with the status that went out (its head).
    assert counted == {"200": 2.0}


@pytest.mark.usefixtures("otel_isolated")
async def test_the_server_span_of_a_caller_gone_has_no_status_and_an_error_type() -> None:
    # The HTTP semantic conventions: no http.response.status_code when none went
    # out, and error.type saying why the request failed (the client left).
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(request: Request) -> Response:
        started.set()
        await release.wait()
        await asyncio.sleep(2 * WATCH_AFTER)  # (work: see the test above)
        return Response("late")

    mesh = ml.Mesh([], name="orders")
    with OtlpReceiver() as receiver:
        telemetry.configure("orders", otlp_endpoint=receiver.url)
        app = MeshMiddleware(Starlette(routes=[Path("/slow", slow)]), mesh=mesh)
        async with serving(app, "httptools") as (port, server):
            asking = asyncio.create_task(ask_and_leave(
                port, b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"))
            await asyncio.wait_for(started.wait(), 10)
            await asking
            await closed_by_server(server)
            release.set()  # (its answer goes to no one)
            counted = await requests_by_status(mesh, 1)
        telemetry.current().force_flush()  # type: ignore[union-attr]
        span, = [s for s in receiver.spans if s.kind == "SERVER"]  # (named by the route)
    assert counted == {"0": 1.0}
    assert "http.response.status_code" not in span.attributes
    assert span.attributes["error.type"] == "meshlite.asgi.ClientGone"  # public, stable
    assert span.status == "ERROR"


async def test_a_caller_leaving_after_its_answer_cuts_no_background_work() -> None:
    # The server says http.disconnect after the response too (uvicorn at once):
    # that is no caller giving up, and work after the answer runs to its end.
    from starlette.background import BackgroundTask
    from starlette.responses import PlainTextResponse

    go, finished = asyncio.Event(), asyncio.Event()

    async def mail() -> None:
        await go.wait()
        finished.set()

    async def signup(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok", background=BackgroundTask(mail))

    mesh = ml.Mesh([], name="accounts")
    app = MeshMiddleware(Starlette(routes=[Path("/signup", signup)]), mesh=mesh,
                         trace=False)
    async with serving(app, "httptools") as (port, server):
        got = await ask_and_leave(port, b"GET /signup HTTP/1.1\r\nHost: x\r\n\r\n",
                                  first=b"ok")
        await closed_by_server(server)
        go.set()
        await asyncio.wait_for(finished.wait(), 10)
        counted = await requests_by_status(mesh, 1)
    assert got.startswith(b"HTTP/1.1 200 OK")
    assert counted == {"200": 1.0}
