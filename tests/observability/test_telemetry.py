"""ml.telemetry.configure(): real OTLP/HTTP export to a loopback receiver, decoded with
opentelemetry-proto, as Jaeger's port 4318 would receive it."""

from __future__ import annotations

import logging
import math
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from opentelemetry.util._once import Once
from otlp_receiver import PROTOBUF, OtlpReceiver, ReceivedSpan
from otlp_receiver import took as _took

import meshlite as ml
from meshlite import telemetry
from meshlite._context import current_context
from meshlite.routing import Backend
from meshlite.telemetry import _bounded, _configure
from meshlite.testing import FakeClock

pytestmark = pytest.mark.usefixtures("otel_isolated")


def flaky(failures: int, error: Callable[[], Exception] = ConnectionError) -> Callable[..., str]:
    """A function failing ``failures`` times, then returning "ok"."""
    calls = {"n": 0}

    def get_user(uid: int) -> str:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise error()
        return "ok"

    return get_user


def traced(clock: FakeClock, name: str = "get_user") -> ml.Pipeline:
    return ml.Pipeline(ml.Trace(name=name), ml.Retry(attempts=3, clock=clock))


def children(parent: ReceivedSpan, spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    return [s for s in spans if s.parent_span_id == parent.span_id]


# -- export ------------------------------------------------------------------------------


def test_call_span_with_retry_events_reaches_the_receiver(
    receiver: OtlpReceiver, clock: FakeClock
) -> None:
    handle = telemetry.configure("checkout", otlp_endpoint=receiver.url)
    assert traced(clock).call(flaky(1), 7) == "ok"
    assert handle.force_flush()

    assert [(e.path, e.content_type) for e in receiver.exports] == [("/v1/traces", PROTOBUF)]
    span = receiver.span("get_user")
    assert span.resource["service.name"] == "checkout"
    assert span.scope == "meshlite"
    assert span.kind == "CLIENT"
    assert span.parent_span_id == ""
    assert span.attributes["meshlite.attempts"] == 2
    assert span.attributes["meshlite.operation"].endswith("get_user")
    retries = [e for e in span.events if e.name == "meshlite.retry"]
    assert [e.attributes["meshlite.attempt"] for e in retries] == [1]
    assert retries[0].attributes["error.type"] == "ConnectionError"


async def test_async_call_and_nested_user_span(receiver: OtlpReceiver, clock: FakeClock) -> None:
    telemetry.configure("checkout", otlp_endpoint=receiver.url)
    app = trace.get_tracer("app")

    async def get_user(uid: int) -> str:
        with app.start_as_current_span("db.query"):
            return "ok"

    assert await traced(clock).acall(get_user, 1) == "ok"
    assert telemetry.current() is not None
    assert telemetry.current().force_flush()  # type: ignore[union-attr]

    call, db = receiver.span("get_user"), receiver.span("db.query")
    assert db.trace_id == call.trace_id
    assert db.parent_span_id == call.span_id
    assert db.kind == "INTERNAL"
    assert db.scope == "app"


def test_failure_is_recorded_on_the_call_span(receiver: OtlpReceiver, clock: FakeClock) -> None:
    handle = telemetry.configure("checkout", otlp_endpoint=receiver.url)
    with pytest.raises(ConnectionError):
        traced(clock).call(flaky(5), 1)
    handle.force_flush()
    span = receiver.span("get_user")
    assert span.status == "ERROR"
    assert span.attributes["error.type"] == "ConnectionError"
    assert span.attributes["meshlite.attempts"] == 3
    assert [e.name for e in span.events].count("meshlite.retry") == 2
    assert "exception" in [e.name for e in span.events]


def test_tracer_taken_before_configure_follows(receiver: OtlpReceiver) -> None:
    early = trace.get_tracer("early")  # a proxy: no provider yet
    handle = telemetry.configure("checkout", otlp_endpoint=receiver.url)
    with early.start_as_current_span("work"):
        pass
    handle.force_flush()
    assert receiver.span("work").resource["service.name"] == "checkout"


def test_console_prints_spans(capsys: pytest.CaptureFixture[str], clock: FakeClock) -> None:
    handle = telemetry.configure("checkout", console=True)
    traced(clock).call(flaky(0), 1)
    handle.force_flush()
    out = capsys.readouterr().out
    assert '"name": "get_user"' in out
    assert '"service.name": "checkout"' in out


# -- sampling ------------------------------------------------------------------------------


def test_sample_ratio_zero_sends_nothing(receiver: OtlpReceiver, clock: FakeClock) -> None:
    handle = telemetry.configure("checkout", otlp_endpoint=receiver.url, sample_ratio=0)
    for _ in range(20):
        traced(clock).call(flaky(0), 1)
    assert handle.force_flush()
    assert receiver.exports == []
    assert handle.sample_ratio == 0.0


def test_sampling_follows_a_sampled_parent(receiver: OtlpReceiver, clock: FakeClock) -> None:
    handle = telemetry.configure("checkout", otlp_endpoint=receiver.url, sample_ratio=0)
    remote = SpanContext(trace_id=0xABC, span_id=0xDEF, is_remote=True,
                         trace_flags=TraceFlags(TraceFlags.SAMPLED))
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(remote)))
    try:
        traced(clock).call(flaky(0), 1)
    finally:
        otel_context.detach(token)
    handle.force_flush()
    span = receiver.span("get_user")
    assert span.trace_id == format(0xABC, "032x")
    assert span.parent_span_id == format(0xDEF, "016x")


# -- environment -------------------------------------------------------------------------


def test_env_endpoint_and_service_name(
    receiver: OtlpReceiver, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    handle = telemetry.configure()
    assert handle.traces_endpoint == receiver.url + "/v1/traces"
    traced(clock).call(flaky(0), 1)
    handle.force_flush()
    assert receiver.span("get_user").resource["service.name"] == "from-env"


def test_traces_endpoint_env_is_used_as_is(
    receiver: OtlpReceiver, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")  # unused
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.url + "/v1/traces")
    handle = telemetry.configure("checkout")
    traced(clock).call(flaky(0), 1)
    handle.force_flush()
    assert [s.name for s in receiver.spans] == ["get_user"]


def test_explicit_arguments_win_over_env(
    receiver: OtlpReceiver, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with OtlpReceiver() as other:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", other.url)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
        monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
        handle = telemetry.configure("explicit", otlp_endpoint=receiver.url, sample_ratio=1.0)
        traced(clock).call(flaky(0), 1)
        handle.force_flush()
        assert other.exports == []
    assert receiver.span("get_user").resource["service.name"] == "explicit"


@pytest.mark.parametrize(
    ("env", "ratio"),
    [
        ({}, 1.0),
        ({"OTEL_TRACES_SAMPLER_ARG": "0.25"}, 0.25),
        ({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
          "OTEL_TRACES_SAMPLER_ARG": "0.5"}, 0.5),
        ({"OTEL_TRACES_SAMPLER": "always_off"}, 0.0),
        ({"OTEL_TRACES_SAMPLER": "parentbased_always_on", "OTEL_TRACES_SAMPLER_ARG": "0"}, 1.0),
        ({"OTEL_TRACES_SAMPLER_ARG": ""}, 1.0),  # empty means unset
    ],
)
def test_sample_ratio_from_env(env: dict[str, str], ratio: float) -> None:
    handle = telemetry.configure("svc", environ=env)
    assert handle.sample_ratio == ratio


def test_sdk_disabled_turns_everything_off(
    receiver: OtlpReceiver, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "TRUE")
    handle = telemetry.configure("checkout", otlp_endpoint=receiver.url, console=True)
    traced(clock).call(flaky(0), 1)
    assert handle.force_flush()
    assert not handle.enabled
    assert handle.traces_endpoint is None
    assert receiver.exports == []


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"service_name": ""}, "service_name"),
        ({"service_name": "  "}, "service_name"),
        ({"service_name": 3}, "service_name"),
        ({}, "OTEL_SERVICE_NAME"),  # no name anywhere
        ({"otlp_endpoint": "localhost:4318"}, "otlp_endpoint"),
        ({"otlp_endpoint": "ftp://collector:4318"}, "otlp_endpoint"),
        ({"otlp_endpoint": "http://"}, "otlp_endpoint"),
        ({"otlp_endpoint": "http://h:99999"}, "otlp_endpoint"),
        ({"otlp_endpoint": "http://h:4318?x=1"}, "otlp_endpoint"),
        ({"otlp_endpoint": 4318}, "otlp_endpoint"),
        ({"sample_ratio": -0.1}, "sample_ratio"),
        ({"sample_ratio": 1.5}, "sample_ratio"),
        ({"sample_ratio": math.nan}, "sample_ratio"),
        ({"sample_ratio": True}, "sample_ratio"),
        ({"sample_ratio": "0.5"}, "sample_ratio"),
        ({"console": "yes"}, "console"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs: dict[str, Any], named: str) -> None:
    args = {"service_name": "svc", **kwargs}
    if named == "OTEL_SERVICE_NAME":
        args = {}
    with pytest.raises(ml.ConfigError, match=named):
        telemetry.configure(**args)
    assert telemetry.current() is None


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OTEL_TRACES_SAMPLER_ARG": "lots"}, "OTEL_TRACES_SAMPLER_ARG"),
        ({"OTEL_TRACES_SAMPLER_ARG": "2"}, "OTEL_TRACES_SAMPLER_ARG"),
        ({"OTEL_TRACES_SAMPLER": "jaeger_remote"}, "OTEL_TRACES_SAMPLER"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "udp://x"}, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
    ],
)
def test_bad_environment_names_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ml.ConfigError, match=named):
        telemetry.configure("svc", environ=env)


def test_invalid_reconfigure_keeps_the_previous_one(receiver: OtlpReceiver) -> None:
    first = telemetry.configure("checkout", otlp_endpoint=receiver.url)
    with pytest.raises(ml.ConfigError, match="sample_ratio"):
        telemetry.configure("checkout", otlp_endpoint=receiver.url, sample_ratio=2)
    assert telemetry.current() is first
    assert first.active


def test_full_traces_url_as_endpoint_is_not_doubled(receiver: OtlpReceiver) -> None:
    handle = telemetry.configure("svc", otlp_endpoint=receiver.url + "/v1/traces/")
    assert handle.traces_endpoint == receiver.url + "/v1/traces/"
    base = telemetry.configure("svc", otlp_endpoint="https://collector.example:4318/otlp/")
    assert base.traces_endpoint == "https://collector.example:4318/otlp/v1/traces"


# -- lifecycle ---------------------------------------------------------------------------


def test_configure_twice_switches_endpoint_for_compiled_pipelines(clock: FakeClock) -> None:
    with OtlpReceiver() as a, OtlpReceiver() as b:
        first = telemetry.configure("one", otlp_endpoint=a.url)
        pipeline = traced(clock)
        decorated = pipeline(flaky(0))  # compiled while `first` is in force
        decorated(1)  # not flushed: reconfiguring must flush it to `a`
        second = telemetry.configure("two", otlp_endpoint=b.url)
        decorated(2)
        second.force_flush()
        deadline = time.monotonic() + 10  # `first` flushes in the background
        while not a.spans and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [s.resource["service.name"] for s in a.spans] == ["one"]
        assert [s.resource["service.name"] for s in b.spans] == ["two"]
    assert not first.active
    assert second.active
    assert telemetry.current() is second
    assert trace.get_tracer_provider() is _configure._switch


def test_shutdown_stops_export_and_is_idempotent(receiver: OtlpReceiver, clock: FakeClock) -> None:
    handle = telemetry.configure("checkout", otlp_endpoint=receiver.url)
    traced(clock).call(flaky(0), 1)
    handle.shutdown()  # flushes
    assert len(receiver.spans) == 1
    traced(clock).call(flaky(0), 2)
    handle.shutdown()
    assert handle.force_flush()
    assert telemetry.current() is None
    assert len(receiver.spans) == 1
    again = telemetry.configure("checkout", otlp_endpoint=receiver.url)
    traced(clock).call(flaky(0), 3)
    again.force_flush()
    assert len(receiver.spans) == 2


def test_atexit_hook_registered_once_and_flushes(
    receiver: OtlpReceiver, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    registered: list[Callable[[], None]] = []
    monkeypatch.setattr(_bounded, "_exit_hooked", False)
    monkeypatch.setattr(_bounded, "_exits", {})
    monkeypatch.setattr(_bounded.atexit, "register", registered.append)
    telemetry.configure("checkout", otlp_endpoint=receiver.url)
    handle = telemetry.configure("checkout", otlp_endpoint=receiver.url)
    assert len(registered) == 1
    traced(clock).call(flaky(0), 1)
    registered[0]()  # what the interpreter does at exit
    assert [s.name for s in receiver.spans] == ["get_user"]
    assert not handle.active


def test_foreign_global_provider_is_a_clear_error() -> None:
    trace.set_tracer_provider(TracerProvider())
    try:
        with pytest.raises(ml.ConfigError, match="another global TracerProvider"):
            telemetry.configure("svc")
    finally:
        trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]
        trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]


def test_reset_for_tests_uninstalls_the_global_provider() -> None:
    telemetry.configure("svc")
    assert trace.get_tracer_provider() is _configure._switch
    telemetry._reset_for_tests()
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert telemetry.current() is None


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_import_does_not_load_the_sdk() -> None:
    out = _run("import sys, meshlite.telemetry; "
               "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')"
               " or m.startswith('opentelemetry.exporter')))")
    assert out == "[]"


def test_missing_sdk_is_a_config_error_naming_the_extra() -> None:
    out = _run("import sys; sys.modules['opentelemetry.sdk'] = None\n"
               "import meshlite.telemetry as t\n"
               "try:\n    t.configure('svc')\n"
               "except t._configure.ConfigError as e:\n    print(e)")
    assert "meshlite-mesh[otlp]" in out


# -- attempt spans ------------------------------------------------------------------------


class StatusError(Exception):
    status_code = 503


def _attempting(failures: int, error: Callable[[], Exception]) -> Callable[..., str]:
    """Like a routing handler: each attempt opens an attempt span around the send."""
    calls = {"n": 0}
    backend = Backend("http://127.0.0.1:8001")

    def get_user(uid: int) -> str:
        ctx = current_context()
        assert ctx is not None
        with telemetry.attempt_span(ctx, backend):
            telemetry.record_http_request("GET", "http://u:p@127.0.0.1:8001/users/1?token=x")
            calls["n"] += 1
            if calls["n"] <= failures:
                raise error()
            telemetry.record_http_status(200)
            return "ok"

    return get_user


@pytest.mark.parametrize(
    ("error", "error_type", "status"),
    [(ConnectionError, "ConnectionError", None), (StatusError, "503", 503)],
)
def test_attempt_spans_are_children_of_the_call(
    receiver: OtlpReceiver, clock: FakeClock, error: Callable[[], Exception],
    error_type: str, status: int | None,
) -> None:
    handle = telemetry.configure("checkout", otlp_endpoint=receiver.url)
    pipeline = ml.Pipeline(ml.Trace(name="users.get"), ml.Retry(attempts=3, clock=clock,
                                                               on=(error,)))
    assert pipeline.call(_attempting(1, error), 1) == "ok"
    handle.force_flush()
    call = receiver.span("users.get")
    attempts = sorted(children(call, receiver.spans),
                      key=lambda s: s.attributes["meshlite.attempt"])
    assert [a.attributes["meshlite.attempt"] for a in attempts] == [1, 2]
    assert {a.trace_id for a in attempts} == {call.trace_id}
    assert {a.kind for a in attempts} == {"CLIENT"}
    failed, ok = attempts
    for a in attempts:
        assert a.attributes["server.address"] == "127.0.0.1"
        assert a.attributes["server.port"] == 8001
        assert a.attributes["meshlite.backend"] == "http://127.0.0.1:8001"
        assert a.attributes["http.request.method"] == "GET"
        assert a.attributes["url.full"] == "http://127.0.0.1:8001/users/1"
    assert failed.attributes["meshlite.outcome"] == "error"
    assert failed.attributes["error.type"] == error_type
    assert failed.attributes.get("http.response.status_code") == status
    assert failed.status == "ERROR"
    assert ok.attributes["meshlite.outcome"] == "success"
    assert ok.attributes["http.response.status_code"] == 200
    assert "error.type" not in ok.attributes


async def test_attempt_span_records_cancellation(receiver: OtlpReceiver) -> None:
    import asyncio

    handle = telemetry.configure("checkout", otlp_endpoint=receiver.url)
    backend = Backend("db-1")  # not a URL: no server.* attributes

    async def slow(uid: int) -> None:
        ctx = current_context()
        assert ctx is not None
        with telemetry.attempt_span(ctx, backend):
            await asyncio.Event().wait()

    task = asyncio.ensure_future(ml.Pipeline(ml.Trace(name="slow")).acall(slow, 1))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    handle.force_flush()
    (attempt,) = children(receiver.span("slow"), receiver.spans)
    assert attempt.attributes["meshlite.outcome"] == "cancelled"
    assert attempt.attributes["error.type"] == "cancelled"
    assert attempt.attributes["meshlite.backend"] == "db-1"
    assert "server.address" not in attempt.attributes


async def test_an_attempt_cut_by_its_services_timeout_is_a_timeout_attempt(
        receiver: OtlpReceiver) -> None:
    # Routing counts an attempt cut at a deadline of its own pipeline as the
    # backend's timeout (and the metrics a failure); its span says so too, instead
    # of "cancelled", which stays for a losing hedge or a caller who went away.
    import asyncio

    from meshlite.mesh import Mesh
    from meshlite.routing import Service

    handle = telemetry.configure("checkout", otlp_endpoint=receiver.url)
    mesh = Mesh([Service("db", ["db-1"], pipeline=ml.Pipeline(ml.Trace(name="query"),
                                                              ml.Timeout(0.05)))])

    async def hang(backend: Backend) -> None:
        await asyncio.Event().wait()

    with pytest.raises(ml.TimeoutExceeded):
        await mesh.call("db", hang)
    task = asyncio.ensure_future(mesh.call("db", hang))
    await asyncio.sleep(0.01)
    task.cancel()  # the caller goes away before the deadline
    with pytest.raises(asyncio.CancelledError):
        await task
    handle.force_flush()
    timed_out, cancelled = (children(call, receiver.spans)[0]
                            for call in receiver.spans if call.name == "query")
    assert timed_out.attributes["meshlite.outcome"] == "timeout"
    assert timed_out.attributes["error.type"].endswith("TimeoutExceeded")
    assert timed_out.status == "ERROR"
    assert cancelled.attributes["meshlite.outcome"] == "cancelled"
    assert cancelled.attributes["error.type"] == "cancelled"
    assert cancelled.status == "UNSET"


def test_no_attempt_span_without_a_recording_call_span(
    receiver: OtlpReceiver, clock: FakeClock
) -> None:
    handle = telemetry.configure("checkout", otlp_endpoint=receiver.url)
    ml.Pipeline(ml.Retry(attempts=3, clock=clock)).call(_attempting(1, ConnectionError), 1)
    telemetry.configure("checkout", otlp_endpoint=receiver.url, sample_ratio=0)
    traced(clock).call(_attempting(1, ConnectionError), 1)
    handle.force_flush()
    assert receiver.spans == []


# -- through the mesh -----------------------------------------------------------------------


@pytest.fixture
async def mesh_backend() -> Any:
    from meshlite.testing import FakeBackend

    async with FakeBackend() as backend:
        yield backend


def _mesh(url: str, clock: FakeClock) -> Any:
    from meshlite.mesh import Mesh
    from meshlite.routing import Service

    return Mesh([Service("users", [url], pipeline=ml.Pipeline(
        ml.Trace(), ml.Retry(attempts=2, clock=clock)))])


async def test_mesh_http_span_and_traceparent(
    receiver: OtlpReceiver, mesh_backend: Any, clock: FakeClock
) -> None:
    handle = telemetry.configure("frontend", otlp_endpoint=receiver.url)
    async with _mesh(mesh_backend.url, clock) as mesh:
        response = await mesh.http("users").get("/users/1")
    assert response.status_code == 200
    handle.force_flush()
    (call,) = [s for s in receiver.spans if s.parent_span_id == ""]
    assert call.name == "GET"
    assert call.attributes["meshlite.service"] == "users"
    (request,) = mesh_backend.requests
    _version, trace_id, parent_id, flags = request.headers["traceparent"].split("-")
    assert trace_id == call.trace_id
    assert int(flags, 16) & 1  # sampled
    assert parent_id in {s.span_id for s in receiver.spans}


async def test_mesh_attempt_spans_carry_http_attributes(
    receiver: OtlpReceiver, mesh_backend: Any, clock: FakeClock
) -> None:
    handle = telemetry.configure("frontend", otlp_endpoint=receiver.url)
    mesh_backend.set(status=503)
    async with _mesh(mesh_backend.url, clock) as mesh:
        response = await mesh.http("users").get("/users/1")
    assert response.status_code == 503
    handle.force_flush()
    call = next(s for s in receiver.spans if s.parent_span_id == "")
    attempts = sorted(children(call, receiver.spans),
                      key=lambda s: s.attributes["meshlite.attempt"])
    assert [a.attributes["meshlite.attempt"] for a in attempts] == [1, 2]
    port = int(mesh_backend.url.rsplit(":", 1)[1])
    for a in attempts:
        assert a.kind == "CLIENT"
        assert a.attributes["server.address"] == "127.0.0.1"
        assert a.attributes["server.port"] == port
        assert a.attributes["http.request.method"] == "GET"
        assert a.attributes["url.full"] == f"{mesh_backend.url}/users/1"
        assert a.attributes["http.response.status_code"] == 503
        assert a.attributes["error.type"] == "503"
    parents = {r.headers["traceparent"].split("-")[2] for r in mesh_backend.requests}
    assert parents == {a.span_id for a in attempts}  # each request names its attempt


def test_global_provider_flushes_and_takes_processors(receiver: OtlpReceiver) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    with pytest.raises(TypeError, match="not configured"):
        _configure._switch.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    telemetry.configure("checkout", otlp_endpoint=receiver.url)
    memory = InMemorySpanExporter()
    provider: Any = trace.get_tracer_provider()  # the switch, as other libraries see it
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with trace.get_tracer("lib").start_as_current_span("lib.work"):
        pass
    assert provider.force_flush()
    assert [s.name for s in memory.get_finished_spans()] == ["lib.work"]
    assert [s.name for s in receiver.spans] == ["lib.work"]


async def test_mesh_service_traces_without_a_trace_policy(
    receiver: OtlpReceiver, mesh_backend: Any
) -> None:
    from meshlite.mesh import Mesh
    from meshlite.routing import Service

    handle = telemetry.configure("frontend", otlp_endpoint=receiver.url)
    async with Mesh([Service("users", [mesh_backend.url])]) as mesh:  # default pipeline
        response = await mesh.http("users").get("/users/42")
    assert response.status_code == 200
    handle.force_flush()
    call = next(s for s in receiver.spans if s.parent_span_id == "")
    assert call.name == "GET"  # the method only: no IDs in span names
    assert call.kind == "INTERNAL"
    assert call.attributes["meshlite.service"] == "users"
    (attempt,) = children(call, receiver.spans)
    assert attempt.kind == "CLIENT"
    assert attempt.attributes["url.full"] == f"{mesh_backend.url}/users/42"


async def test_mesh_service_trace_false_makes_no_span(
    receiver: OtlpReceiver, mesh_backend: Any
) -> None:
    from meshlite.mesh import Mesh
    from meshlite.routing import Service

    handle = telemetry.configure("frontend", otlp_endpoint=receiver.url)
    async with Mesh([Service("users", [mesh_backend.url], trace=False)]) as mesh:
        assert (await mesh.http("users").get("/x")).status_code == 200
    handle.force_flush()
    assert receiver.spans == []
    assert "traceparent" not in mesh_backend.requests[-1].headers


def test_a_stalled_collector_holds_up_neither_flush_nor_shutdown(
        stalled: str, clock: FakeClock) -> None:
    handle = telemetry.configure("checkout", otlp_endpoint=stalled)
    traced(clock).call(flaky(0), 1)
    # Bounds far above the timeouts given, far below the exporter's 10 s per export.
    flushed, took = _took(lambda: handle.force_flush(timeout_millis=100))
    assert flushed is False
    assert took < 5
    _, took = _took(lambda: handle.shutdown(timeout_millis=100))
    assert took < 5
    assert telemetry.current() is None


def test_reconfiguring_away_from_a_stalled_collector_does_not_wait_for_it(
        stalled: str, receiver: OtlpReceiver, clock: FakeClock) -> None:
    telemetry.configure("checkout", otlp_endpoint=stalled)
    traced(clock).call(flaky(0), 1)
    # A config reload runs configure() on the event loop: it must not wait on the
    # old collector (its spans are still flushed to it, in the background).
    handle, took = _took(lambda: telemetry.configure("checkout", otlp_endpoint=receiver.url))
    assert took < 5
    traced(clock).call(flaky(0), 2)
    assert handle.force_flush()  # type: ignore[attr-defined]
    assert [s.name for s in receiver.spans] == ["get_user"]


async def test_a_losing_hedge_is_not_an_error_span(receiver: OtlpReceiver) -> None:
    from meshlite.testing import FakeBackend

    # Tracing backends (Jaeger's error flag, span-derived RED metrics such as Tempo's)
    # read status ERROR as a failure: a hedged call that succeeded has none.
    # A hedge after 1 s: `fast` answers well before on a loaded machine too (after
    # 50 ms, its call could be hedged to `slow` as well: two cancelled spans).
    handle = telemetry.configure("frontend", otlp_endpoint=receiver.url)
    async with FakeBackend(latency=5.0) as slow, FakeBackend() as fast:
        mesh = ml.Mesh([ml.Service("users", [slow.url, fast.url], balancer="round_robin",
                                   pipeline=ml.Pipeline(ml.Hedge(delay=1.0)))])
        async with mesh:
            for _ in range(2):  # one of the two starts on `slow`, and is hedged
                assert (await mesh.http("users").get("/users/1")).status_code == 200
    handle.force_flush()
    outcomes = sorted(s.attributes["meshlite.outcome"] for s in receiver.spans
                      if s.kind == "CLIENT")
    assert outcomes == ["cancelled", "success", "success"]
    assert {s.status for s in receiver.spans} == {"UNSET"}
    # The hedge's span says it is one (both race as the call's first attempt).
    hedged = [(s.attributes["meshlite.outcome"], s.attributes.get("meshlite.hedge"))
              for s in receiver.spans if s.kind == "CLIENT"
              and s.attributes["meshlite.backend"] == fast.url]
    assert ("success", 1) in hedged
    assert ("cancelled", None) in [  # the attempt it hedged
        (s.attributes["meshlite.outcome"], s.attributes.get("meshlite.hedge"))
        for s in receiver.spans if s.kind == "CLIENT"]
    assert all(s.attributes["meshlite.attempt"] == 1 for s in receiver.spans
               if s.kind == "CLIENT")


def test_a_refusing_collector_is_logged_once_not_per_batch(
        receiver: OtlpReceiver, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    # A wrong path: the receiver answers 404 to each batch, which is not retried.
    handle = telemetry.configure("checkout", otlp_endpoint=receiver.url + "/wrong")
    with caplog.at_level(logging.WARNING, logger="opentelemetry"):
        for uid in range(20):
            traced(clock).call(flaky(0), uid)
            handle.force_flush()
    assert len(receiver.rejected) == 20  # each batch was posted, and refused
    failed = [r for r in caplog.records if r.name.startswith("opentelemetry.exporter")]
    assert len(failed) == 1, [r.getMessage() for r in failed]
    assert "404" in failed[0].getMessage()
