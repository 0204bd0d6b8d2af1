"""Streaming answers under a real uvicorn server: a handler failing after its
response started, seen in the SERVER span and the metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from _versions import older_than
from observability.otlp_receiver import OtlpReceiver
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

import meshlite as ml
from meshlite import telemetry
from meshlite.asgi import MeshMiddleware
from meshlite.testing import AsgiServer

pytestmark = pytest.mark.usefixtures("otel_isolated")


class FeedBroken(Exception):
    """The stream's source failing halfway."""


async def feed(request: Request) -> StreamingResponse:
    async def rows() -> AsyncIterator[bytes]:
        yield b"row 1\n"
        raise FeedBroken("the source went away")

    return StreamingResponse(rows())


@pytest.mark.xfail(older_than("starlette", "0.46"), raises=AssertionError, strict=True,
                   reason="Starlette before 0.46 raises the stream's error in an ExceptionGroup")
async def test_a_stream_failing_after_its_start_is_an_error_span() -> None:
    mesh = ml.Mesh([], name="feeds")
    with OtlpReceiver() as receiver:
        telemetry.configure("feeds", otlp_endpoint=receiver.url)
        app = MeshMiddleware(Starlette(routes=[Route("/feed", feed)]), mesh=mesh)
        async with AsgiServer(app) as server, httpx.AsyncClient() as client:
            with pytest.raises(httpx.RemoteProtocolError):  # the body was cut short
                await client.get(server.url + "/feed")
        telemetry.current().force_flush()  # type: ignore[union-attr]
        span, = [s for s in receiver.spans if s.kind == "SERVER"]  # (named by the route)
    assert span.attributes["http.response.status_code"] == 200  # what the client got
    assert span.status == "ERROR"
    assert span.attributes["error.type"] == f"{__name__}.FeedBroken"


def slow_rows(stopped: asyncio.Event) -> Route:
    """``/rows``: one row, then a wait (``stopped`` set when it is cut off), another."""

    async def endpoint(request: Request) -> StreamingResponse:
        async def rows() -> AsyncIterator[bytes]:
            yield b"row 1\n"
            try:
                await asyncio.sleep(30)
            finally:
                stopped.set()
            yield b"row 2\n"

        return StreamingResponse(rows())

    return Route("/rows", endpoint)


async def test_a_stream_outliving_its_callers_deadline_ends_with_no_server_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    stopped = asyncio.Event()

    async def slow_start(request: Request) -> StreamingResponse:
        await asyncio.sleep(30)
        raise AssertionError("cancelled before its response")

    mesh = ml.Mesh([], name="feeds")
    with OtlpReceiver() as receiver:
        telemetry.configure("feeds", otlp_endpoint=receiver.url)
        app = MeshMiddleware(Starlette(routes=[slow_rows(stopped),
                                               Route("/late", slow_start)]), mesh=mesh)
        deadline = {"x-meshlite-deadline": "300"}
        with caplog.at_level(logging.INFO):
            async with AsgiServer(app) as server, httpx.AsyncClient() as client:
                # Its headers went out: the body ends where the deadline cut it, as a
                # whole response (no error for the server to log, the caller's own
                # deadline has passed as well).
                r = await client.get(server.url + "/rows", headers=deadline)
                assert (r.status_code, r.content) == (200, b"row 1\n")
                assert stopped.is_set()  # the handler was cancelled at the deadline
                late = await client.get(server.url + "/late", headers=deadline)
                assert late.status_code == 504  # nothing went out yet: answered
                assert late.json()["error"] == "deadline_exceeded"
        telemetry.current().force_flush()  # type: ignore[union-attr]
        span, = [s for s in receiver.spans
                 if s.attributes.get("http.response.status_code") == 200]
    assert [r.getMessage() for r in caplog.records if r.name.startswith("uvicorn")] == []
    assert span.attributes["http.response.status_code"] == 200
    assert span.status == "ERROR"  # the body was cut short
    assert span.attributes["error.type"].endswith("TimeoutExceeded")


async def test_a_stream_cut_by_its_routes_own_timeout_is_not_passed_off_as_whole() -> None:
    from meshlite.asgi import Route as MeshRoute

    # The caller's deadline is far: it is still reading, and a body ended as whole
    # would pass the rows it got for all of them. The connection is closed instead.
    stopped = asyncio.Event()
    app = MeshMiddleware(Starlette(routes=[slow_rows(stopped)]), trace=False,
                         routes=[MeshRoute("/rows", timeout=0.3)])
    async with AsgiServer(app) as server, httpx.AsyncClient() as client:
        with pytest.raises(httpx.RemoteProtocolError):  # the body was cut short
            await client.get(server.url + "/rows", headers={"x-meshlite-deadline": "20000"})
    assert stopped.is_set()
