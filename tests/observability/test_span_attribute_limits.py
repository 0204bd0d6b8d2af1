"""Spans hold what clients write: the path, query and ``User-Agent`` of each request
end up in its SERVER span, and the span queue keeps 2,048 spans while the collector
is down or slow. ``ml.telemetry.configure()`` cuts span attribute values at 2,048
characters unless the environment sets a limit, so requests of tens of kilobytes
each cannot make that queue hold hundreds of megabytes."""

from __future__ import annotations

import httpx
import pytest
from otlp_receiver import OtlpReceiver

import meshlite.asgi
from meshlite import telemetry

uvicorn = pytest.importorskip("uvicorn")

LONG = 20_000


async def app(scope: dict, receive: object, send: object) -> None:
    assert callable(send)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def one_long_request() -> None:
    """One request with a path, query and User-Agent of :data:`LONG` characters each,
    to the middleware served by uvicorn on a loopback port."""
    from meshlite.observability._dashboard._uvicorn import Background, bind, start

    server = Background(uvicorn.Config(meshlite.asgi.MeshMiddleware(app), lifespan="off",
                                       log_config=None, log_level="error"))
    sock = bind("127.0.0.1", 0)
    serving = await start(server, sock)
    port = sock.getsockname()[1]
    try:
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"http://127.0.0.1:{port}/p/{'a' * LONG}",
                                      params={"q": "b" * LONG},
                                      headers={"user-agent": "u" * LONG})
        assert answer.status_code == 200
    finally:
        server.should_exit = True
        await serving


@pytest.mark.parametrize(("variable", "limit"), [
    (None, 2048),
    ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", 100),
    ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", 300),
])
async def test_a_client_cannot_make_the_spans_it_starts_as_large_as_it_likes(
        receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch, variable: str | None,
        limit: int) -> None:
    if variable is not None:  # a limit of the operator's own is kept
        monkeypatch.setenv(variable, str(limit))
    handle = telemetry.configure("shop", otlp_endpoint=receiver.url)
    await one_long_request()
    assert handle.force_flush()
    (span,) = [s for s in receiver.spans if s.kind == "SERVER"]
    assert span.attributes["url.path"] == f"/p/{'a' * LONG}"[:limit]
    assert span.attributes["url.query"] == f"q={'b' * LONG}"[:limit]
    assert span.attributes["user_agent.original"] == "u" * limit
    assert span.attributes["url.scheme"] == "http"  # short values as they are
