"""What a sampler sees of meshlite's spans: the attributes each span is given when it
starts (the HTTP semantic conventions name those a sampler needs: a CLIENT span's
``http.request.method``, ``server.address``, ``server.port``, ``url.full``; a SERVER
span's ``url.path``, ``url.query``, ``url.scheme``, ``server.*``, ``client.address``,
``user_agent.original``). A real SDK ``TracerProvider`` with a sampler that writes
down what ``should_sample`` was shown, through real calls: the mesh's HTTP clients to
loopback backends, ``mesh.call``, a pipeline, and the ASGI middleware under
``httpx.ASGITransport`` and uvicorn."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes

import meshlite as ml
import meshlite.asgi
from meshlite._inbound import _span as inbound_span
from meshlite.telemetry import _spans as attempt_spans
from meshlite.testing import AsgiServer, FakeBackend, FakeClock

pytestmark = pytest.mark.usefixtures("otel_isolated")


@dataclass(frozen=True)
class Shown:
    """One ``should_sample`` call: the span's name, kind and attributes."""

    name: str
    kind: SpanKind | None
    attributes: dict[str, Any]


class Seeing(Sampler):
    """Samples every span, writing down what it was shown; ``drop`` spans of the
    kind whose attributes hold every one of its items are not recorded (as a
    user's rule would: "no spans of health checks")."""

    def __init__(self) -> None:
        self.shown: list[Shown] = []
        self.drop: tuple[SpanKind, Mapping[str, Any]] | None = None

    def should_sample(self, parent_context: Context | None, trace_id: int, name: str,
                      kind: SpanKind | None = None, attributes: Attributes = None,
                      links: Sequence[Link] | None = None,
                      trace_state: Any = None) -> SamplingResult:
        seen = dict(attributes or {})
        self.shown.append(Shown(name, kind, seen))
        if self.drop is not None and kind == self.drop[0] and all(
                seen.get(k) == v for k, v in self.drop[1].items()):
            return SamplingResult(Decision.DROP)
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)

    def get_description(self) -> str:
        return "Seeing"

    def of(self, kind: SpanKind) -> list[Shown]:
        return [s for s in self.shown if s.kind == kind]


@dataclass
class Tracing:
    sampler: Seeing
    exporter: InMemorySpanExporter

    def finished(self, kind: SpanKind) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.kind == kind]


@pytest.fixture
def tracing(monkeypatch: pytest.MonkeyPatch) -> Iterator[Tracing]:
    """An SDK provider with a :class:`Seeing` sampler as the global one, as an
    application installs it (``trace.set_tracer_provider``), for this test only;
    meshlite's module tracers are looked up again under it."""
    sampler, exporter = Seeing(), InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    monkeypatch.setattr(attempt_spans, "_tracer", None)
    monkeypatch.setattr(inbound_span, "_tracer", None)
    yield Tracing(sampler, exporter)
    provider.shutdown()


def backends_mesh(*urls: str, clock: FakeClock) -> ml.Mesh:
    return ml.Mesh([ml.Service("users", list(urls), balancer="round_robin",
                               pipeline=ml.Pipeline(
        ml.Retry(attempts=2, backoff=ml.backoff.constant(0.0), clock=clock)))])


def port_of(url: str) -> int:
    return httpx.URL(url).port or 80


def check_attempts(tracing: Tracing, url: str, path: str) -> None:
    """Both attempts of a failing GET were shown the conventions' CLIENT attributes
    (and meshlite's), the same the finished spans carry."""
    port = port_of(url)
    shown = tracing.sampler.of(SpanKind.CLIENT)
    assert [s.name for s in shown] == ["GET", "GET"]
    for attempt, seen in enumerate((s.attributes for s in shown), 1):
        assert seen["http.request.method"] == "GET"
        assert (seen["server.address"], seen["server.port"]) == ("127.0.0.1", port)
        assert seen["url.full"] == f"{url}{path}"  # the query left out
        assert (seen["meshlite.attempt"], seen["meshlite.service"]) == (attempt, "users")
        assert seen.get("http.request.resend_count") == (None if attempt == 1 else 1)
    finished = sorted(tracing.finished(SpanKind.CLIENT),
                      key=lambda s: s.attributes["meshlite.attempt"])  # type: ignore[index]
    for seen, span in zip((s.attributes for s in shown), finished, strict=True):
        assert span.attributes is not None
        assert {k: span.attributes[k] for k in seen} == seen  # not rewritten later
        assert span.attributes["http.response.status_code"] == 503


async def test_mesh_http_attempt_spans_start_with_the_client_attributes(
        tracing: Tracing, clock: FakeClock) -> None:
    async with FakeBackend(status=503) as backend, \
            backends_mesh(f"{backend.url}/v1/", clock=clock) as mesh:
        response = await mesh.http("users").get("/users/1", params={"token": "s3cret"})
    assert response.status_code == 503
    check_attempts(tracing, f"{backend.url}/v1", "/users/1")


async def test_mesh_aiohttp_attempt_spans_start_with_the_client_attributes(
        tracing: Tracing, clock: FakeClock) -> None:
    async with FakeBackend(status=503) as backend, \
            backends_mesh(backend.url, clock=clock) as mesh, \
            mesh.aiohttp("users").get("/users/1?token=s3cret") as response:
        assert response.status == 503
    check_attempts(tracing, backend.url, "/users/1")


async def test_mesh_http_sync_attempt_spans_start_with_the_client_attributes(
        tracing: Tracing, clock: FakeClock) -> None:
    async with FakeBackend(status=503) as backend, \
            backends_mesh(backend.url, clock=clock) as mesh:
        client = mesh.http_sync("users")
        response = await asyncio.to_thread(client.get, "/users/1?token=s3cret")
    assert response.status_code == 503
    check_attempts(tracing, backend.url, "/users/1")


async def test_a_made_up_method_is_other_when_the_attempt_starts(
        tracing: Tracing, clock: FakeClock) -> None:
    async with FakeBackend() as backend, backends_mesh(backend.url, clock=clock) as mesh:
        assert (await mesh.http("users").request("PURGE", "/users/1")).status_code == 200
    (seen,) = tracing.sampler.of(SpanKind.CLIENT)
    assert seen.name == "HTTP"
    assert (seen.attributes["http.request.method"],
            seen.attributes["http.request.method_original"]) == ("_OTHER", "PURGE")


async def test_a_sampler_can_leave_out_the_attempts_to_one_backend(
        tracing: Tracing, clock: FakeClock) -> None:
    # The rule a sampler shown nothing at the start could not apply.
    async with FakeBackend() as quiet, FakeBackend() as loud, \
            backends_mesh(quiet.url, loud.url, clock=clock) as mesh:
        port = port_of(quiet.url)
        tracing.sampler.drop = (SpanKind.CLIENT, {"server.port": port})
        for _ in range(4):
            assert (await mesh.http("users").get("/users/1")).status_code == 200
    assert len(quiet.requests) == len(loud.requests) == 2  # (round robin)
    kept = tracing.finished(SpanKind.CLIENT)
    assert [s.attributes["server.port"] for s in kept] == [  # type: ignore[index]
        port_of(loud.url)] * 2


def get_user(backend: object, uid: int) -> int:
    return uid


async def test_mesh_call_attempt_and_call_spans_start_with_meshlites_attributes(
        tracing: Tracing) -> None:
    async with ml.Mesh([ml.Service("users", ["primary"])]) as mesh:
        assert await mesh.call("users", get_user, 7) == 7
    (call,) = tracing.sampler.of(SpanKind.INTERNAL)
    operation = call.attributes["meshlite.operation"]
    assert operation.endswith("get_user")
    assert (call.name, call.attributes) == (
        operation, {"meshlite.operation": operation, "meshlite.service": "users"})
    (attempt,) = tracing.sampler.of(SpanKind.CLIENT)
    assert attempt.attributes == {"meshlite.attempt": 1, "meshlite.backend": "primary",
                                  "meshlite.service": "users"}  # no URL: no server.*


def test_a_pipelines_call_span_starts_with_its_attributes(tracing: Tracing) -> None:
    pipeline = ml.Pipeline(ml.Trace(name="lookup", attributes={"tier": "gold"},
                                    record_args=True))
    assert pipeline.call(lambda uid: uid, 5) == 5
    (call,) = tracing.sampler.of(SpanKind.CLIENT)
    assert call.name == "lookup"
    assert call.attributes["tier"] == "gold"
    assert call.attributes["meshlite.args"] == "5"
    assert "meshlite.operation" in call.attributes


# -- the SERVER span -------------------------------------------------------------------


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hi"})


def served(**options: Any) -> meshlite.asgi.MeshMiddleware:
    return meshlite.asgi.MeshMiddleware(hello, routes=[ml.asgi.Route("/orders/{id}")],
                                        **options)


async def test_the_server_span_starts_with_the_server_attributes(tracing: Tracing) -> None:
    transport = httpx.ASGITransport(app=served(), client=("203.0.113.7", 50123))
    async with httpx.AsyncClient(transport=transport, base_url="https://Shop.Example:8443",
                                 headers={"user-agent": "probe/1.0",
                                          "x-meshlite-caller": "gateway"}) as client:
        response = await client.get("/orders/12?q=shoes&access_token=s3cret&page=2")
    assert response.status_code == 200
    (seen,) = tracing.sampler.of(SpanKind.SERVER)
    assert seen.name == "GET /orders/{id}"
    assert seen.attributes == {
        "http.request.method": "GET", "url.path": "/orders/12",
        "url.query": "q=shoes&access_token=***&page=2", "url.scheme": "https",
        "server.address": "shop.example", "server.port": 8443,
        "http.route": "/orders/{id}", "client.address": "203.0.113.7",
        "user_agent.original": "probe/1.0", "meshlite.caller": "gateway"}
    (span,) = tracing.finished(SpanKind.SERVER)
    assert span.attributes is not None
    assert span.attributes["url.query"] == "q=shoes&access_token=***&page=2"
    assert span.attributes["http.response.status_code"] == 200
    assert span.attributes["meshlite.caller"] == "gateway"


@pytest.mark.parametrize(("query", "shown"), [
    ("", None),  # none: no url.query
    ("a=1&b=", "a=1&b="),  # nothing secret: as received
    ("password=hunter2&sig=abc&api-key=k&color=blue",
     "password=***&sig=***&api-key=***&color=blue"),
])
async def test_url_query_masks_secret_named_values_as_shown_urls_do(
        tracing: Tracing, query: str, shown: str | None) -> None:
    transport = httpx.ASGITransport(app=served())
    async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
        await client.get(f"/orders/1?{query}" if query else "/orders/1")
    (seen,) = tracing.sampler.of(SpanKind.SERVER)
    assert seen.attributes.get("url.query") == shown
    assert (seen.attributes["server.address"], seen.attributes["server.port"]) == ("shop", 80)


@pytest.mark.parametrize(("host", "server"), [
    ("[::1]:8080", {"server.address": "::1", "server.port": 8080}),
    ("api.internal", {"server.address": "api.internal", "server.port": 80}),
    ("evil/path@x", {}),  # no host: no server.* at all
    ("a:99999", {}),
    ("a:0", {}),
    ("x" * 300, {}),
])
async def test_server_address_and_port_come_from_the_host_header(
        tracing: Tracing, host: str, server: dict[str, Any]) -> None:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": "/orders/1", "raw_path": b"/orders/1",
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 5000),
             "server": ("127.0.0.1", 8000), "headers": [(b"host", host.encode())]}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await served()(scope, receive, send)
    assert sent[0]["status"] == 200
    (seen,) = tracing.sampler.of(SpanKind.SERVER)
    assert {k: v for k, v in seen.attributes.items() if k.startswith("server.")} == server


async def test_a_sampler_can_leave_out_health_checks_under_uvicorn(tracing: Tracing) -> None:
    tracing.sampler.drop = (SpanKind.SERVER, {"user_agent.original": "kube-probe/1.31"})
    async with AsgiServer(served()) as server, httpx.AsyncClient(base_url=server.url) as client:
        await client.get("/orders/1", headers={"user-agent": "kube-probe/1.31"})
        await client.get("/orders/2?token=t", headers={"user-agent": "shop/2"})
    port = port_of(server.url)
    (span,) = tracing.finished(SpanKind.SERVER)  # the probe's was not recorded
    assert span.attributes is not None
    assert span.attributes["http.response.status_code"] == 200
    assert {k: span.attributes[k] for k in (
        "url.path", "url.query", "server.address", "server.port", "client.address")} == {
        "url.path": "/orders/2", "url.query": "token=***", "server.address": "127.0.0.1",
        "server.port": port, "client.address": "127.0.0.1"}


@pytest.mark.parametrize(("url", "full"), [
    ("http://Example.com:80/v1/x?token=s3cret", "http://example.com/v1/x"),
    ("https://[::1]:443/x", "https://[::1]/x"),
    ("https://user:pw@[::1]:8443", "https://[::1]:8443/"),
])
def test_url_full_is_written_one_way(tracing: Tracing, url: str, full: str) -> None:
    # As httpx and yarl write the URL they send (no default port): the attempt span's
    # url.full, made from the backend's address when it starts, is the one the HTTP
    # layer's record_http_request writes again from the URL sent.
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("attempt") as span:
        ml.telemetry.record_http_request("GET", url)
    assert span.attributes is not None  # type: ignore[attr-defined]
    assert span.attributes["url.full"] == full  # type: ignore[attr-defined]
