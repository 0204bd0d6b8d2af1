"""A FastAPI app under a real uvicorn server, wrapped in ``MeshMiddleware``: a SERVER
span the app starts from the request's headers (FastAPI's built-in telemetry from
0.165, OpenTelemetry's ASGI middleware; here a wrapper doing what they do, so that
every FastAPI version runs it) and the spans of the mesh calls its handler makes sit
below the middleware's, in one trace; the middleware's span ends with the response,
before the app's background work."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import meshlite as ml
from meshlite import telemetry
from meshlite.asgi import MeshMiddleware
from meshlite.testing import AsgiServer, FakeBackend

pytestmark = pytest.mark.usefixtures("otel_isolated")


def recorded() -> InMemorySpanExporter:
    """Spans recorded under ``ml.telemetry.configure()``, kept in memory."""
    telemetry.configure("orders")
    handle = telemetry.current()
    assert handle is not None
    spans = InMemorySpanExporter()
    handle.tracer_provider.add_span_processor(  # type: ignore[attr-defined]
        SimpleSpanProcessor(spans))
    return spans


def instrumented(app: Any) -> Any:
    """``app`` under what instrumentation in an app does: a SERVER span (scope
    ``app``) started from the trace context of the request's headers."""
    tracer = trace.get_tracer("app")

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)  # type: ignore[no-any-return]
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        with tracer.start_as_current_span("app", context=propagate.extract(carrier),
                                          kind=SpanKind.SERVER):
            await app(scope, receive, send)
        return None

    return wrapped


def server_span(spans: InMemorySpanExporter, scope: str) -> ReadableSpan:
    span, = [s for s in spans.get_finished_spans()
             if s.instrumentation_scope is not None and s.instrumentation_scope.name == scope
             and s.kind.name == "SERVER"]
    return span


def ancestors(span: ReadableSpan, spans: InMemorySpanExporter) -> list[int]:
    """The span ids above ``span``, nearest first."""
    by_id = {s.context.span_id: s for s in spans.get_finished_spans()}
    chain: list[int] = []
    parent = span.parent
    while parent is not None:
        chain.append(parent.span_id)
        above = by_id.get(parent.span_id)
        parent = None if above is None else above.parent
    return chain


@pytest.mark.parametrize("headers", [
    {}, {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}],
    ids=["no-trace-context", "caller-trace-context"])
async def test_the_apps_own_server_span_and_its_mesh_calls_sit_below_the_middlewares(
        headers: dict[str, str]) -> None:
    spans = recorded()
    async with FakeBackend() as inventory:
        mesh = ml.Mesh([ml.Service("inventory", [inventory.url])], name="orders")
        api = FastAPI()

        @api.get("/orders")
        async def orders() -> dict[str, Any]:
            r = await mesh.http("inventory").get("/stock/tea")
            return {"stock": r.status_code}

        app = MeshMiddleware(instrumented(api), mesh=mesh)
        async with mesh, AsgiServer(app) as server, httpx.AsyncClient() as client:
            r = await client.get(server.url + "/orders", headers=headers)
            assert r.status_code == 200
        sent = inventory.requests[-1].headers["traceparent"]
    ours = server_span(spans, "meshlite.asgi")
    theirs = server_span(spans, "app")
    call, = [s for s in spans.get_finished_spans() if s.kind.name == "CLIENT"]
    # One trace, the middleware's span at its top (below the caller's, when it sent one).
    assert {s.context.trace_id for s in spans.get_finished_spans()} == {ours.context.trace_id}
    assert theirs.parent is not None
    assert theirs.parent.span_id == ours.context.span_id
    assert ours.context.span_id in ancestors(call, spans)
    assert sent.split("-")[1] == format(ours.context.trace_id, "032x")
    if headers:
        assert ours.parent is not None
        assert format(ours.parent.span_id, "016x") == headers["traceparent"].split("-")[2]


async def test_the_server_span_ends_with_the_response_not_the_background_work() -> None:
    spans = recorded()
    release = asyncio.Event()
    done: list[int] = []

    async def send_welcome_mail() -> None:
        await release.wait()  # until the client has had its whole answer
        done.append(time.time_ns())

    api = FastAPI()

    @api.post("/signup")
    async def signup(tasks: BackgroundTasks) -> dict[str, bool]:
        tasks.add_task(send_welcome_mail)
        return {"ok": True}

    app = MeshMiddleware(api)
    async with AsgiServer(app) as server, httpx.AsyncClient() as client:
        r = await client.post(server.url + "/signup")
        assert r.status_code == 200
        answered = time.time_ns()
        release.set()
    # (the server's shutdown waited for the request's end, its background work included)
    assert done
    ours = server_span(spans, "meshlite.asgi")
    assert ours.end_time is not None
    assert ours.end_time <= answered < done[0]  # as the request's duration metric ends


async def test_malformed_baggage_is_not_logged_by_the_apps_own_extraction(
        caplog: pytest.LogCaptureFixture) -> None:
    recorded()
    api = FastAPI()  # its telemetry extracts the headers it is given once more

    @api.get("/")
    async def root() -> dict[str, bool]:
        return {"ok": True}

    baggage = ",".join(["not an entry"] * 300) + ",tenant=acme"
    caplog.set_level(logging.WARNING, logger="opentelemetry")
    async with AsgiServer(MeshMiddleware(api)) as server, httpx.AsyncClient() as client:
        r = await client.get(server.url + "/", headers={"baggage": baggage})
        assert r.status_code == 200
    assert [rec for rec in caplog.records if rec.name.startswith("opentelemetry")] == []
