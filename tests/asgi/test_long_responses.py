"""Long-lived responses through the middleware under a real uvicorn server: streams
(Server-Sent Events) and the route's timeout, the latency recorded for a stream and
for a response with work after it, keep-alive connections carrying several requests,
WebSocket connections passing through, and a client waiting for ``100 Continue``."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from _exposition import by_label, requests_by_status
from _ws import connect
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route as Path

import meshlite as ml
from meshlite.asgi import MeshMiddleware, Route
from meshlite.testing import AsgiServer

REQUESTS = "meshlite_server_requests_total"
DURATION_SUM = "meshlite_server_request_duration_seconds_sum"


def events(stopped: asyncio.Event) -> Path:
    """``/events``: an endless Server-Sent Events stream (``stopped`` set at its end)."""

    async def endpoint(request: Request) -> StreamingResponse:
        async def ticks() -> AsyncIterator[bytes]:
            try:
                while True:
                    yield b"data: tick\n\n"
                    await asyncio.sleep(0.05)
            finally:
                stopped.set()

        return StreamingResponse(ticks(), media_type="text/event-stream")

    return Path("/events", endpoint)


async def test_a_routes_timeout_cuts_a_started_stream_without_a_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    # The route's timeout holds the whole response, a stream too (docs/inbound.md,
    # Streams). Cut after its head went out, the body stays short and the server
    # closes the connection: one line in its log, where the TimeoutExceeded raised
    # to it wrote a traceback per stream.
    stopped = asyncio.Event()
    app = MeshMiddleware(Starlette(routes=[events(stopped)]), trace=False,
                         routes=[Route("/events", timeout=0.3)])
    with caplog.at_level(logging.INFO):
        async with AsgiServer(app) as server, httpx.AsyncClient() as client:
            with pytest.raises(httpx.RemoteProtocolError):  # the body was cut short
                await client.get(server.url + "/events")
    assert stopped.is_set()
    assert [r.getMessage() for r in caplog.records if r.name.startswith("uvicorn")] == [
        "ASGI callable returned without completing response."]
    assert app.stats.routes()[0]["statuses"] == {"200": 1}  # what went out: its head


async def test_a_stream_whose_client_leaves_is_counted_once_with_its_status() -> None:
    # Starlette's streaming response hears the disconnect itself (it reads
    # receive()): the middleware lets it end the stream, and counts it once.
    stopped = asyncio.Event()
    mesh = ml.Mesh([], name="feeds")
    app = MeshMiddleware(Starlette(routes=[events(stopped)]), mesh=mesh, trace=False,
                         routes=[Route("/events", max_concurrent=1)])
    async with AsgiServer(app) as server, httpx.AsyncClient() as client:
        for _ in range(2):  # the second finds the slot the first held free again
            async with client.stream("GET", server.url + "/events") as stream:
                assert stream.status_code == 200
                async for chunk in stream.aiter_bytes():
                    assert chunk.startswith(b"data: tick")
                    break
            await asyncio.wait_for(stopped.wait(), 10)
            stopped.clear()
        found = await requests_by_status(mesh, 2)
    assert found == {"200": 2.0}


async def test_a_streams_latency_runs_to_its_last_byte() -> None:
    # meshlite_server_request_duration_seconds of a stream is the time to its end,
    # not to its first byte (docs/inbound.md, Streams).
    more = asyncio.Event()

    async def two_parts(request: Request) -> StreamingResponse:
        async def parts() -> AsyncIterator[bytes]:
            yield b"first\n"
            await more.wait()
            yield b"last\n"

        return StreamingResponse(parts())

    mesh = ml.Mesh([], name="feeds")
    app = MeshMiddleware(Starlette(routes=[Path("/two", two_parts)]), mesh=mesh,
                         trace=False)
    async with AsgiServer(app) as server, httpx.AsyncClient() as client:
        async with client.stream("GET", server.url + "/two") as stream:
            chunks = stream.aiter_bytes()
            assert await chunks.__anext__() == b"first\n"
            first = time.monotonic()  # the head and a first part have arrived
            await asyncio.sleep(0.2)
            gap = time.monotonic() - first
            more.set()  # only now can the stream end
            assert b"".join([c async for c in chunks]) == b"last\n"
        await requests_by_status(mesh, 1)
    (recorded,) = by_label(ml.observability.render(mesh), DURATION_SUM, "route").values()
    assert recorded > gap  # it started before `first` and ended after the gap


async def test_the_latency_recorded_ends_with_the_response_not_the_work_after_it() -> None:
    # A background task (the welcome mail after a signup) runs after the answer is
    # complete: it held the route's latency up to its own end, as long as it took.
    go = asyncio.Event()

    async def mail() -> None:
        await go.wait()

    async def signup(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok", background=BackgroundTask(mail))

    mesh = ml.Mesh([], name="accounts")
    app = MeshMiddleware(Starlette(routes=[Path("/signup", signup)]), mesh=mesh,
                         trace=False)
    async with AsgiServer(app) as server, httpx.AsyncClient() as client:
        sent = time.monotonic()
        assert (await client.get(server.url + "/signup")).text == "ok"
        answered = time.monotonic() - sent  # the server's request lies within it
        await asyncio.sleep(2 * answered + 0.05)  # the mail takes longer than that
        go.set()
        await requests_by_status(mesh, 1)
    (recorded,) = by_label(ml.observability.render(mesh), DURATION_SUM, "route").values()
    assert recorded < answered


async def test_each_request_of_a_keep_alive_connection_is_counted_once() -> None:
    # One connection, several requests (one after the other, then two pipelined),
    # then the client closes it: each request counts once, none as a caller gone
    # (the server's http.disconnect after a response is no leaving).
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(0)  # (the middleware's watch starts)
        status = 404 if scope["path"] == "/missing" else 200
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    mesh = ml.Mesh([], name="orders")
    middleware = MeshMiddleware(app, mesh=mesh, trace=False,
                                routes=[Route("/orders", max_concurrent=1)])
    async with AsgiServer(middleware) as server:
        host, port = server.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        heads = []
        for path in (b"/orders", b"/missing", b"/orders"):
            writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            heads.append(await asyncio.wait_for(reader.readuntil(b"ok"), 10))
        writer.write(b"GET /orders HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
        heads += [await asyncio.wait_for(reader.readuntil(b"ok"), 10) for _ in range(2)]
        writer.close()
        await writer.wait_closed()
        found = await requests_by_status(mesh, 5)
        await asyncio.sleep(0.1)  # (a late, wrong count would show by now)
        found = by_label(ml.observability.render(mesh), REQUESTS, "status")
    assert [h.split(b"\r\n", 1)[0] for h in heads] == [
        b"HTTP/1.1 200 OK", b"HTTP/1.1 404 Not Found"] + [b"HTTP/1.1 200 OK"] * 3
    assert found == {"200": 4.0, "404": 1.0}


async def test_websockets_pass_through_untouched_by_the_routes_request_policies() -> None:
    # A route's timeout and concurrency limit are per request: two connections at
    # once, each outliving the timeout, are served; the request metrics count none.
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "websocket"
        await receive()
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            await asyncio.sleep(0.3)  # past the route's timeout
            await send({"type": "websocket.send", "text": message["text"]})

    mesh = ml.Mesh([], name="chat")
    middleware = MeshMiddleware(app, mesh=mesh, trace=False,
                                routes=[Route("/ws", timeout=0.1, max_concurrent=1)])
    async with AsgiServer(middleware) as server:
        uri = server.url.replace("http://", "ws://") + "/ws"
        async with connect(uri, proxy=None) as one, connect(uri, proxy=None) as two:
            await one.send("a")
            await two.send("b")
            assert (await one.recv(), await two.recv()) == ("a", "b")
    assert by_label(ml.observability.render(mesh), REQUESTS, "status") == {}


async def test_a_client_waiting_for_100_continue_is_not_told_to_send_by_the_middleware(
        ) -> None:
    # The server sends "100 Continue" at the first receive(): the app's to make.
    # One that refuses the request unread spares the client its upload; the
    # middleware, watching for the client's leaving, must not read on its behalf.
    async def refuse(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(0.05)  # (the middleware's watch has started by now)
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    async with AsgiServer(MeshMiddleware(refuse, trace=False)) as server:
        host, port = server.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        writer.close()
    assert head.startswith(b"HTTP/1.1 413 ")


async def test_a_body_read_late_arrives_whole_and_in_order() -> None:
    # While the app is busy the middleware reads ahead (to hear a disconnect),
    # holding the body for it: what the app reads later is the body as sent.
    seen: list[tuple[int, bool]] = []

    async def late_reader(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(0.2)  # the whole body has arrived meanwhile
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            seen.append((len(message.get("body", b"")), message.get("more_body", False)))
            if not message.get("more_body", False):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(len(body)).encode() + b" "
                    + str(body == payload).encode()})

    payload = bytes(range(256)) * 1024  # 256 KiB, past the read-ahead
    async with AsgiServer(MeshMiddleware(late_reader, trace=False)) as server, \
            httpx.AsyncClient() as client:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(payload), 16384):
                yield payload[i:i + 16384]

        r = await client.post(server.url + "/up", content=chunks())
    assert r.text == f"{len(payload)} True"
    assert seen[-1][1] is False


async def test_an_app_listening_for_the_disconnect_past_its_response_hears_it() -> None:
    # uvicorn answers receive() with http.disconnect once the response is complete:
    # an app with a listener waiting on it (as Starlette's streams have) ends then.
    # The middleware, which read for it until then, hands the listener to the server.
    heard: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "http.request"

        async def listen() -> None:
            heard.append((await receive())["type"])

        listener = asyncio.create_task(listen())
        await asyncio.sleep(0.05)  # (listening)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
        await asyncio.wait_for(listener, 10)

    mesh = ml.Mesh([], name="orders")
    async with AsgiServer(MeshMiddleware(app, mesh=mesh, trace=False)) as server, \
            httpx.AsyncClient() as client:
        assert (await client.get(server.url + "/")).text == "ok"
        found = await requests_by_status(mesh, 1)
    assert heard == ["http.disconnect"]
    assert found == {"200": 1.0}
