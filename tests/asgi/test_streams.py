"""Streaming answers under a real uvicorn server: a handler failing after its
response started, seen in the SERVER span and the metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
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


async def test_a_stream_failing_after_its_start_is_an_error_span() -> None:
    mesh = ml.Mesh([], name="feeds")
    with OtlpReceiver() as receiver:
        telemetry.configure("feeds", otlp_endpoint=receiver.url)
        app = MeshMiddleware(Starlette(routes=[Route("/feed", feed)]), mesh=mesh)
        async with AsgiServer(app) as server, httpx.AsyncClient() as client:
            with pytest.raises(httpx.RemoteProtocolError):  # the body was cut short
                await client.get(server.url + "/feed")
        telemetry.current().force_flush()  # type: ignore[union-attr]
        span = receiver.span("GET")
    assert span.attributes["http.response.status_code"] == 200  # what the client got
    assert span.status == "ERROR"
    assert span.attributes["error.type"] == f"{__name__}.FeedBroken"
