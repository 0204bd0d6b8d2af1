from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import meshlite as ml
from meshlite.testing import FakeClock


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    yield tp
    tp.shutdown()


def only_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    (span,) = exporter.get_finished_spans()
    return span


class Reject(ml.Policy):
    """Refuses every call with ``error``, as a breaker or a rate limit would."""

    kind = "reject"

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def wrap(self, call_next: ml.Handler) -> ml.Handler:
        def handle(ctx: ml.CallContext) -> Any:
            raise self.error

        return handle

    def awrap(self, call_next: ml.AsyncHandler) -> ml.AsyncHandler:
        async def handle(ctx: ml.CallContext) -> Any:
            raise self.error

        return handle


class MyError(Exception):
    pass


def get_user(uid: int) -> dict[str, int]:
    return {"id": uid}


# -- the span ------------------------------------------------------------------


def test_span_name_kind_and_attributes(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    pipeline = ml.Pipeline(ml.Trace(tracer_provider=provider), service="users")
    assert pipeline.call(get_user, 1) == {"id": 1}
    span = only_span(exporter)
    assert span.name == "get_user"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert dict(span.attributes or {}) == {
        "meshlite.operation": "get_user", "meshlite.service": "users"}
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "meshlite"
    assert span.instrumentation_scope.version == ml.__version__


def test_custom_name_and_attributes_without_service(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    traced = ml.Trace("users.get", attributes={"team": "core", "tags": ["a", "b"], "tier": 2},
                      tracer_provider=provider)
    ml.Pipeline(traced).call(get_user, 1)
    ml.Pipeline(traced).call(get_user, 2)
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["users.get", "users.get"]
    assert dict(spans[1].attributes or {}) == {
        "meshlite.operation": "get_user", "team": "core", "tags": ("a", "b"), "tier": 2}


def test_span_is_current_and_in_context_then_restored(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    seen: dict[str, Any] = {}

    def call() -> None:
        ctx = ml.current_context()
        assert ctx is not None
        seen["ctx_span"] = ctx.span
        seen["current"] = trace.get_current_span()
        with provider.get_tracer("test").start_as_current_span("child"):
            pass

    ml.Pipeline(ml.Trace(tracer_provider=provider)).call(call)
    child, parent = exporter.get_finished_spans()
    assert child.parent is not None
    assert child.parent.span_id == parent.context.span_id
    assert seen["ctx_span"] is seen["current"]
    assert seen["current"].get_span_context() == parent.context
    assert not trace.get_current_span().get_span_context().is_valid


def test_ctx_span_restored_for_outer_policies(provider: TracerProvider) -> None:
    after = []

    class Probe(ml.Policy):
        def wrap(self, call_next: ml.Handler) -> ml.Handler:
            def handle(ctx: ml.CallContext) -> Any:
                ctx.span = "outer"
                try:
                    return call_next(ctx)
                finally:
                    after.append(ctx.span)

            return handle

        def awrap(self, call_next: ml.AsyncHandler) -> ml.AsyncHandler:
            return call_next

    ml.Pipeline(Probe(), ml.Trace(tracer_provider=provider)).call(get_user, 1)
    assert after == ["outer"]


# -- failures ------------------------------------------------------------------


def test_failure_sets_error_status_and_records_exception(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    def boom() -> None:
        raise MyError("down")

    with pytest.raises(MyError):
        ml.Pipeline(ml.Trace(tracer_provider=provider)).call(boom)
    span = only_span(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "MyError: down"
    assert (span.attributes or {})["error.type"] == f"{MyError.__module__}.MyError"
    (event,) = span.events
    assert event.name == "exception"
    assert (event.attributes or {})["exception.message"] == "down"


def test_builtin_error_type_is_the_bare_name(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    def boom() -> None:
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError):
        ml.Trace(tracer_provider=provider)(boom)()
    assert (only_span(exporter).attributes or {})["error.type"] == "ConnectionError"


@pytest.mark.parametrize(
    ("error", "extra"),
    [(ml.CircuitOpenError("x", policy="circuit_breaker"),
      {"meshlite.rejected_by": "circuit_breaker", "meshlite.circuit.state": "open"}),
     (ml.RateLimitedError("y", policy="rate_limit"), {"meshlite.rejected_by": "rate_limit"})],
)
def test_rejection_attributes(
    provider: TracerProvider, exporter: InMemorySpanExporter,
    error: ml.RejectedError, extra: dict[str, str],
) -> None:
    pipeline = ml.Pipeline(ml.Trace(tracer_provider=provider), Reject(error), service="users")
    with pytest.raises(ml.RejectedError):
        pipeline.call(get_user, 1)
    attributes = dict(only_span(exporter).attributes or {})
    assert attributes["error.type"] == f"meshlite._errors.{type(error).__name__}"
    for key in ("meshlite.rejected_by", "meshlite.circuit.state", "meshlite.timeout"):
        assert attributes.get(key) == extra.get(key)


async def test_timeout_attribute(
    provider: TracerProvider, exporter: InMemorySpanExporter, clock: FakeClock
) -> None:
    async def slow() -> None:
        await clock.asleep(5.0)

    pipeline = ml.Pipeline(ml.Trace(tracer_provider=provider), ml.Timeout(1.0, clock=clock))
    with pytest.raises(ml.TimeoutExceeded):
        await pipeline.acall(slow)
    span = only_span(exporter)
    assert (span.attributes or {})["meshlite.timeout"] is True
    assert span.status.status_code is StatusCode.ERROR


def test_keyboard_interrupt_propagates_and_span_ends(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ml.Pipeline(ml.Trace(tracer_provider=provider)).call(interrupted)
    assert only_span(exporter).end_time is not None


# -- async ---------------------------------------------------------------------


async def test_async_span_nests_children(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    @ml.Pipeline(ml.Trace(tracer_provider=provider), service="users")
    async def fetch(uid: int) -> int:
        await asyncio.sleep(0)
        with provider.get_tracer("test").start_as_current_span("child"):
            await asyncio.sleep(0)
        return uid

    assert await fetch(3) == 3
    child, parent = exporter.get_finished_spans()
    assert parent.name.endswith("fetch")
    assert parent.kind is SpanKind.CLIENT
    assert child.parent is not None
    assert child.parent.span_id == parent.context.span_id


async def test_async_failure(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    async def boom() -> None:
        raise MyError("async down")

    with pytest.raises(MyError):
        await ml.Pipeline(ml.Trace(tracer_provider=provider)).acall(boom)
    span = only_span(exporter)
    assert span.status.description == "MyError: async down"
    assert [e.name for e in span.events] == ["exception"]


async def test_async_cancellation_marks_span_and_propagates(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    @ml.Trace(tracer_provider=provider)
    async def forever() -> None:
        await asyncio.Event().wait()

    task = asyncio.ensure_future(forever())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    span = only_span(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "cancelled"
    assert (span.attributes or {})["error.type"] == "cancelled"
    assert span.events == ()


# -- record_args ---------------------------------------------------------------


def test_args_not_recorded_by_default(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    ml.Pipeline(ml.Trace(tracer_provider=provider)).call(get_user, 1)
    assert "meshlite.args" not in (only_span(exporter).attributes or {})


def test_record_args(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    def call(*args: Any, **kwargs: Any) -> None:
        return None

    pipeline = ml.Pipeline(ml.Trace(record_args=True, tracer_provider=provider))
    pipeline.call(call, 1, "x", None, k=2.5)
    pipeline.call(call, "a" * 1000, list(range(10_000)))
    pipeline.call(call, Broken())
    short, long, broken = (dict(s.attributes or {})["meshlite.args"]
                           for s in exporter.get_finished_spans())
    assert short == "1, 'x', None, k=2.5"
    assert isinstance(long, str)
    assert len(long) == 256
    assert long.startswith("'aaaa")
    assert long.endswith("…")
    assert broken.startswith("<Broken instance at")  # a broken __repr__ breaks nothing


# -- providers -----------------------------------------------------------------


def without_global_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    """No global TracerProvider for this test, whatever other tests installed (the API
    then hands out its proxy), so these tests run, never skip, in any order."""
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    monkeypatch.delenv("OTEL_PYTHON_TRACER_PROVIDER", raising=False)
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def test_noop_without_sdk_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    without_global_provider(monkeypatch)
    seen = []

    def call() -> int:
        ctx = ml.current_context()
        assert ctx is not None
        seen.append(ctx.span)
        return 4

    assert ml.Pipeline(ml.Trace()).call(call) == 4
    (span,) = seen
    assert isinstance(span, trace.Span)
    assert not span.is_recording()


def test_global_provider_installed_after_wrap_is_honoured(
    provider: TracerProvider, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    pipeline = ml.Pipeline(ml.Trace())
    pipeline.call(get_user, 1)  # before: the API's no-op
    assert exporter.get_finished_spans() == ()
    # What trace.set_tracer_provider does, without leaking global state past this test.
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    pipeline.call(get_user, 2)
    assert only_span(exporter).name == "get_user"


def no_span_made(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any span the API's proxy tracer starts fail the test."""
    without_global_provider(monkeypatch)

    def start_span(*args: Any, **kwargs: Any) -> trace.Span:
        raise AssertionError("an untraced call made a span")

    monkeypatch.setattr(trace.ProxyTracer, "start_span", start_span)


def test_untraced_call_makes_no_span_and_keeps_the_current_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    no_span_made(monkeypatch)
    remote = trace.NonRecordingSpan(trace.SpanContext(trace_id=7, span_id=8, is_remote=True))
    seen = []

    def call() -> int:
        ctx = ml.current_context()
        assert ctx is not None
        seen.append((ctx.span, trace.get_current_span()))
        return 4

    token = otel_context.attach(trace.set_span_in_context(remote))
    try:
        assert ml.Pipeline(ml.Trace()).call(call) == 4
    finally:
        otel_context.detach(token)
    ((span, current),) = seen
    assert isinstance(span, trace.Span)
    assert not span.is_recording()
    assert current is remote  # what the API's no-op span would have repeated


async def test_untraced_async_call_makes_no_span(monkeypatch: pytest.MonkeyPatch) -> None:
    no_span_made(monkeypatch)
    seen = []

    async def call() -> int:
        ctx = ml.current_context()
        assert ctx is not None
        seen.append(ctx.span)
        return 5

    assert await ml.Pipeline(ml.Trace()).acall(call) == 5
    assert not seen[0].is_recording()


def test_tracer_that_found_a_provider_keeps_forwarding_to_it(
    provider: TracerProvider, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    pipeline = ml.Pipeline(ml.Trace())
    pipeline.sync_handler()  # compiled without a provider: the API's proxy tracer
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    pipeline.call(get_user, 1)  # the proxy binds to the provider for good...
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    pipeline.call(get_user, 2)  # ...so the untraced shortcut must not apply
    assert [s.name for s in exporter.get_finished_spans()] == ["get_user", "get_user"]


# -- options ---------------------------------------------------------------------


def test_repr() -> None:
    assert repr(ml.Trace("op")) == "Trace(name='op')"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"name": ""}, "name"), ({"name": 3}, "name"),
     ({"attributes": [("a", 1)]}, "attributes"), ({"attributes": {1: "a"}}, "attributes"),
     ({"attributes": {"meshlite.service": "x"}}, r"attributes\['meshlite.service'\]"),
     ({"attributes": {"a": None}}, r"attributes\['a'\]"),
     ({"attributes": {"a": {"b": 1}}}, r"attributes\['a'\]"),
     ({"attributes": {"a": [1, "x"]}}, r"attributes\['a'\]"),
     ({"attributes": {"a": [True, 1]}}, r"attributes\['a'\]"),
     ({"attributes": {"a": []}}, r"attributes\['a'\]"),
     ({"record_args": "yes"}, "record_args"),
     ({"tracer_provider": object()}, "tracer_provider")],
)
def test_bad_options(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ml.ConfigError, match=f"Trace: {field} must be"):
        ml.Trace(**kwargs)
