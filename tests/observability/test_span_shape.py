"""The span shape of a mesh call with OpenTelemetry's HTTP client instrumentations
installed and active: one INTERNAL span for the logical call, one CLIENT span per
attempt carrying the HTTP semantic-convention attributes, and no second CLIENT span
from opentelemetry-instrumentation-httpx. Real OTLP/HTTP protobuf to a loopback
receiver, real loopback backends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from otlp_receiver import OtlpReceiver, ReceivedSpan

import meshlite as ml
from meshlite import telemetry
from meshlite.testing import FakeBackend, FakeClock

httpx_instrumentation = pytest.importorskip("opentelemetry.instrumentation.httpx")
pytest.importorskip("opentelemetry.instrumentation.aiohttp_client")


pytestmark = pytest.mark.usefixtures("otel_isolated")


@pytest.fixture
def instrumented(receiver: OtlpReceiver) -> Iterator[Any]:
    """Telemetry to the receiver, and httpx instrumented as an application would."""
    handle = telemetry.configure("frontend", otlp_endpoint=receiver.url)
    instrumentor = httpx_instrumentation.HTTPXClientInstrumentor()
    instrumentor.instrument()
    try:
        yield handle
    finally:
        instrumentor.uninstrument()


@pytest.fixture
async def backend() -> AsyncIterator[FakeBackend]:
    async with FakeBackend() as b:
        yield b


def mesh_of(url: str, clock: FakeClock, *outer: ml.Policy) -> ml.Mesh:
    return ml.Mesh([ml.Service("users", [url], pipeline=ml.Pipeline(
        *outer, ml.Retry(attempts=2, backoff=ml.backoff.constant(0.0), clock=clock)))])


def check_shape(spans: list[ReceivedSpan], url: str, statuses: list[int]) -> None:
    (call,) = [s for s in spans if s.parent_span_id == ""]
    assert (call.kind, call.name, call.scope) == ("INTERNAL", "GET", "meshlite")
    attempts = sorted((s for s in spans if s.parent_span_id == call.span_id),
                      key=lambda s: s.attributes["meshlite.attempt"])
    assert [a.kind for a in attempts] == ["CLIENT"] * len(statuses)
    port = int(url.rsplit(":", 1)[1])
    for attempt, status in zip(attempts, statuses, strict=True):
        attributes = attempt.attributes
        assert attributes["http.request.method"] == "GET"
        assert (attributes["server.address"], attributes["server.port"]) == ("127.0.0.1", port)
        assert attributes["url.full"] == f"{url}/users/1"
        assert attributes["http.response.status_code"] == status
        assert attributes.get("http.request.resend_count") == (  # a resent request's
            None if attributes["meshlite.attempt"] == 1 else attributes["meshlite.attempt"] - 1)
        assert (attributes.get("error.type"), attempt.status) == (
            (str(status), "ERROR") if status >= 500 else (None, "UNSET"))
    # Exactly the attempts are CLIENT spans: the instrumentation added none below them.
    assert [s for s in spans if s.kind == "CLIENT"] == [
        s for s in spans if s in attempts]
    assert all(s.scope == "meshlite" for s in spans)


@pytest.mark.parametrize("outer", [(), (ml.Trace(),)], ids=["service-span", "own-trace"])
async def test_async_client_one_client_span_per_attempt(
        instrumented: Any, receiver: OtlpReceiver, backend: FakeBackend,
        clock: FakeClock, outer: tuple[ml.Policy, ...]) -> None:
    backend.set(status=503)
    # with an ml.Trace() of its own in the service's pipeline, the call span is
    # INTERNAL too (CLIENT is its kind only for a pipeline used on its own)
    async with mesh_of(backend.url, clock, *outer) as mesh:
        response = await mesh.http("users").get("/users/1")
        assert response.status_code == 503
    instrumented.force_flush()
    check_shape(receiver.spans, backend.url, [503, 503])
    # The instrumentation is active: a plain httpx client outside the mesh is traced.
    async with httpx.AsyncClient(trust_env=False) as plain:
        await plain.get(f"{backend.url}/plain")
    instrumented.force_flush()
    assert [s.scope for s in receiver.spans if s.kind == "CLIENT"].count(
        "opentelemetry.instrumentation.httpx") == 1


async def test_sync_client_one_client_span_per_attempt(
        instrumented: Any, receiver: OtlpReceiver, backend: FakeBackend,
        clock: FakeClock) -> None:
    async with mesh_of(backend.url, clock) as mesh:
        client = mesh.http_sync("users")
        import asyncio

        response = await asyncio.to_thread(client.get, "/users/1")
        assert response.status_code == 200
    instrumented.force_flush()
    check_shape(receiver.spans, backend.url, [200])
    (request,) = backend.requests
    attempt = next(s for s in receiver.spans if s.kind == "CLIENT")
    assert request.headers["traceparent"].split("-")[2] == attempt.span_id


async def test_http_instrumentation_is_suppressed_only_inside_an_attempt(
        instrumented: Any) -> None:
    from opentelemetry.instrumentation.utils import is_http_instrumentation_enabled

    async with ml.Mesh([ml.Service("users", ["a"])]) as mesh:
        inside = await mesh.call("users", lambda b: is_http_instrumentation_enabled())
    # opentelemetry-instrumentation-aiohttp-client (and -requests, -urllib3...) ask
    # this same question before making a span of their own
    assert inside is False
    assert is_http_instrumentation_enabled() is True


async def test_otlp_metrics_name_http_attempts_by_the_semantic_conventions(
        receiver: OtlpReceiver, backend: FakeBackend, clock: FakeClock) -> None:
    async with mesh_of(backend.url, clock) as mesh:
        for _ in range(3):
            await mesh.http("users").get("/users/1")
        with telemetry.export_metrics(mesh, otlp_endpoint=receiver.url,
                                      interval=3600) as export:
            assert export.force_flush()
    port = int(backend.url.rsplit(":", 1)[1])
    point = receiver.latest("http.client.request.duration", **{
        "server.address": "127.0.0.1", "server.port": port, "meshlite.service": "users"})
    assert (point.kind, point.unit, point.count) == ("histogram", "s", 3)
    assert sum(point.bucket_counts) == 3
    assert len(point.bounds) > 5
    assert point.attributes["meshlite.backend"] == backend.url


@pytest.fixture
def aiohttp_instrumented(receiver: OtlpReceiver) -> Iterator[Any]:
    """Telemetry to the receiver, and aiohttp's client instrumented as an application
    would: mesh.http()'s wire and mesh.aiohttp() both send over aiohttp."""
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor

    handle = telemetry.configure("frontend", otlp_endpoint=receiver.url)
    instrumentor = AioHttpClientInstrumentor()
    instrumentor.instrument()
    try:
        yield handle
    finally:
        instrumentor.uninstrument()


@pytest.mark.parametrize("client", ["http", "aiohttp"])
async def test_aiohttp_instrumentation_adds_no_client_span(
        aiohttp_instrumented: Any, receiver: OtlpReceiver, backend: FakeBackend,
        clock: FakeClock, client: str) -> None:
    import aiohttp

    backend.set(status=503)
    async with mesh_of(backend.url, clock) as mesh:
        if client == "http":
            status = (await mesh.http("users").get("/users/1")).status_code
        else:
            async with mesh.aiohttp("users").get("/users/1") as response:
                status = response.status
        assert status == 503
    aiohttp_instrumented.force_flush()
    check_shape(receiver.spans, backend.url, [503, 503])
    # The instrumentation is active: a plain aiohttp session outside the mesh is traced.
    async with aiohttp.ClientSession() as plain, plain.get(f"{backend.url}/plain") as r:
        assert r.status == 503
    aiohttp_instrumented.force_flush()
    assert [s.scope for s in receiver.spans if s.kind == "CLIENT"].count(
        "opentelemetry.instrumentation.aiohttp_client") == 1


@pytest.mark.parametrize("client", ["http", "aiohttp", "http_sync"])
async def test_a_made_up_method_is_other_in_the_spans_and_not_their_name(
        receiver: OtlpReceiver, backend: FakeBackend, clock: FakeClock, client: str) -> None:
    # HTTP semantic conventions: a method outside the known ones is "_OTHER" in
    # http.request.method, kept in http.request.method_original, and the span is named
    # "HTTP": a gateway passing its clients' methods on names no spans after them.
    import asyncio

    handle = telemetry.configure("frontend", otlp_endpoint=receiver.url)
    async with mesh_of(backend.url, clock) as mesh:
        if client == "http":
            status = (await mesh.http("users").request("PURGE", "/users/1")).status_code
        elif client == "aiohttp":
            async with mesh.aiohttp("users").request("PURGE", "/users/1") as response:
                status = response.status
        else:
            sync = mesh.http_sync("users")
            status = (await asyncio.to_thread(sync.request, "PURGE", "/users/1")).status_code
        assert status == 200
        await mesh.http("users").delete("/users/1")  # a known method: as it is
    handle.force_flush()
    (purge, delete) = sorted((s for s in receiver.spans if s.kind == "CLIENT"),
                             key=lambda s: s.attributes["http.request.method"] != "_OTHER")
    assert purge.name == "HTTP"
    assert purge.attributes["http.request.method"] == "_OTHER"
    assert purge.attributes["http.request.method_original"] == "PURGE"
    (call,) = [s for s in receiver.spans if s.span_id == purge.parent_span_id]
    assert call.name == "HTTP"
    assert delete.name == "DELETE"
    assert delete.attributes["http.request.method"] == "DELETE"
    assert "http.request.method_original" not in delete.attributes
    assert backend.requests[0].method == "PURGE"  # the request itself is as sent
