"""The attempts' CLIENT spans against the HTTP semantic conventions' status rules, for
each of the mesh's HTTP clients (``mesh.http()``, ``mesh.http_sync()``,
``mesh.aiohttp()``) against real loopback backends: a 4xx or 5xx answer makes the
span ``ERROR`` with ``error.type`` the code and no status description ("don't set
the span status description if the reason can be inferred from
``http.response.status_code``"); the exception of a failed attempt is still its
``exception`` event. Spans through ``ml.telemetry.configure()`` into the SDK's
in-memory exporter."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import meshlite as ml
from meshlite.testing import FakeBackend

pytestmark = pytest.mark.usefixtures("otel_isolated")

CLIENTS = ["http", "http_sync", "aiohttp"]


@pytest.fixture
def spans() -> InMemorySpanExporter:
    provider = ml.telemetry.configure("shop").tracer_provider  # (reset by otel_isolated)
    assert isinstance(provider, TracerProvider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


async def get(mesh: ml.Mesh, client: str, path: str) -> int:
    """The status of a GET of ``path`` through the mesh's ``client`` (a failure status
    the mesh raises for is read from its error)."""
    try:
        if client == "http":
            return (await mesh.http("users").get(path)).status_code
        if client == "http_sync":
            return (await asyncio.to_thread(mesh.http_sync("users").get, path)).status_code
        response = await mesh.aiohttp("users").get(path)
        response.release()
        return response.status
    except Exception as error:
        status = getattr(error, "status_code", None)
        if not isinstance(status, int):
            raise
        return status


def attempt(exporter: InMemorySpanExporter) -> ReadableSpan:
    (span,) = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.CLIENT]
    return span


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("status", [404, 503])
async def test_an_error_status_is_an_error_span_without_a_description(
        spans: InMemorySpanExporter, client: str, status: int) -> None:
    async with FakeBackend(status=status) as backend:
        mesh = ml.Mesh([ml.Service("users", [backend.url], pipeline=ml.Pipeline())])
        async with mesh:
            assert await get(mesh, client, "/users/1") == status
    span = attempt(spans)
    assert span.attributes is not None
    assert span.attributes["http.response.status_code"] == status
    assert span.attributes["error.type"] == str(status)
    assert span.status.status_code == StatusCode.ERROR
    assert span.status.description is None  # the status code tells the reason
    if status >= 500:  # a failure to the mesh: its error is the exception event
        (event,) = [e for e in span.events if e.name == "exception"]
        assert event.attributes is not None
        assert f"with {status}" in str(event.attributes["exception.message"])


@pytest.mark.parametrize("client", CLIENTS)
async def test_a_success_leaves_the_status_unset(
        spans: InMemorySpanExporter, client: str) -> None:
    async with FakeBackend() as backend:
        mesh = ml.Mesh([ml.Service("users", [backend.url], pipeline=ml.Pipeline())])
        async with mesh:
            assert await get(mesh, client, "/users/1") == 200
    span = attempt(spans)
    assert span.status.status_code == StatusCode.UNSET
    assert span.attributes is not None
    assert "error.type" not in span.attributes
