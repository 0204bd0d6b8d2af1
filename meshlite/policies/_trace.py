"""Trace: one OpenTelemetry span per logical call (API only; the SDK is the user's)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, SpanKind

from .._context import CallContext
from .._policy import AsyncHandler, Handler, Policy
from .._validate import fail
from ._trace_attributes import (
    DEFAULT_RECORD_ARGS,
    MAX_ARGS_REPR,
    AttributeValue,
    attribute,
    call_attributes,
    record_cancel,
    record_failure,
)
from ._validate_checks import current_leading

__all__ = ["DEFAULT_RECORD_ARGS", "MAX_ARGS_REPR", "AttributeValue", "Trace", "TraceOptions"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceOptions:
    """Validated options of :class:`Trace`."""

    name: str | None = None
    attributes: Mapping[str, AttributeValue] | None = None
    record_args: bool = DEFAULT_RECORD_ARGS
    span_kind: SpanKind | None = None

    def __post_init__(self) -> None:
        if self.name is not None and (not isinstance(self.name, str) or not self.name):
            fail("Trace", "name", self.name, "a non-empty string or None")
        if self.attributes is not None:
            if not isinstance(self.attributes, Mapping):
                fail("Trace", "attributes", self.attributes, "a mapping of str to values")
            clean = {k: attribute(k, v) for k, v in self.attributes.items()}
            object.__setattr__(self, "attributes", MappingProxyType(clean))
        if not isinstance(self.record_args, bool):
            fail("Trace", "record_args", self.record_args, "True or False")
        if self.span_kind is not None and not isinstance(self.span_kind, SpanKind):
            fail("Trace", "span_kind", self.span_kind,
                 "an opentelemetry.trace.SpanKind or None")

    def kind(self) -> SpanKind:
        """The span kind for a chain compiled now: the given one, else ``INTERNAL``
        inside a mesh service (its routing gives each attempt a ``CLIENT`` span),
        ``CLIENT`` for a pipeline on its own."""
        if self.span_kind is not None:
            return self.span_kind
        # A service compiles its chain with one leading argument (the backend).
        return SpanKind.INTERNAL if current_leading() else SpanKind.CLIENT


def _noop_proxy(tracer: trace.Tracer) -> trace.ProxyTracer | None:
    """``tracer`` when it is the API's ``ProxyTracer`` (no global provider was installed
    when the policy was compiled), else None.

    Such a tracer makes only the API's no-op spans (which record nothing and repeat
    the current span) until it finds a global provider; from then on it forwards to
    it. So while both its ``_real_tracer`` and the API's global provider are unset,
    a call may skip making and attaching a span: the check is two attribute reads,
    where the no-op span costs microseconds. Private attributes of the API: when a
    version lacks them, every call takes the full path.
    """
    if type(tracer) is not trace.ProxyTracer or not hasattr(tracer, "_real_tracer"):
        return None
    return tracer if hasattr(trace, "_TRACER_PROVIDER") else None


class Trace(Policy):
    """Wrap each logical call in one OpenTelemetry span (kind ``CLIENT`` on its own,
    ``INTERNAL`` in a mesh service's pipeline, whose attempts are the ``CLIENT`` spans).

    The span is current while the call runs, so spans started inside nest under it,
    and it is ``ctx.span`` for inner policies (``Retry`` records each attempt on
    it). Only the OpenTelemetry API is used: without an SDK configured, spans are
    no-ops, and while no global provider is installed a call does not even make
    one (``ctx.span`` is then the API's ``INVALID_SPAN``). The tracer is looked up
    once; a global ``TracerProvider`` installed later is still honoured (the API's
    proxy tracer forwards to it).

    Attributes: ``meshlite.operation``, ``meshlite.service`` (when known), the given
    ``attributes``, and with ``record_args`` ``meshlite.args``. A failure sets status
    ``ERROR``, records the exception and sets ``error.type``; a meshlite rejection
    adds ``meshlite.rejected_by`` (and ``meshlite.circuit.state`` for an open
    circuit), a timeout ``meshlite.timeout``.

    Args:
        name: The span name (default: the call's operation name).
        attributes: Constant attributes added to every span; keys are strings
            outside the ``meshlite.`` namespace, values OpenTelemetry attribute values.
        record_args: Record the call's arguments as ``meshlite.args`` (a repr capped
            at 256 characters). Off by default: arguments may carry personal data,
            tokens or passwords, which would then leave the process with the trace.
        tracer_provider: The provider to use instead of the global one.
        span_kind: The span's kind; ``None`` (the default) picks ``INTERNAL`` in a
            mesh service's pipeline, since each of its attempts gets a ``CLIENT``
            span of its own, and ``CLIENT`` elsewhere.

    Raises:
        ConfigError: an option is invalid.
    """

    kind = "trace"

    def __init__(
        self,
        name: str | None = None,
        *,
        attributes: Mapping[str, AttributeValue] | None = None,
        record_args: bool = DEFAULT_RECORD_ARGS,
        tracer_provider: trace.TracerProvider | None = None,
        span_kind: SpanKind | None = None,
    ) -> None:
        super().__init__()
        self.options = TraceOptions(name=name, attributes=attributes, record_args=record_args,
                                    span_kind=span_kind)
        if tracer_provider is not None and not callable(
            getattr(tracer_provider, "get_tracer", None)
        ):
            fail("Trace", "tracer_provider", tracer_provider,
                 "an OpenTelemetry TracerProvider or None")
        self.tracer_provider = tracer_provider

    def _tracer(self) -> trace.Tracer:
        from .._version import __version__

        return trace.get_tracer("meshlite", __version__, tracer_provider=self.tracer_provider)

    def wrap(self, call_next: Handler) -> Handler:
        name = self.options.name
        attributes_for = call_attributes(self.options.attributes or {}, self.options.record_args)
        set_span, attach, detach, client = (trace.set_span_in_context, otel_context.attach,
                                            otel_context.detach, self.options.kind())
        tracer = self._tracer()
        start_span, proxy, api = tracer.start_span, _noop_proxy(tracer), trace

        def handle(ctx: CallContext) -> Any:
            if proxy is not None and not proxy._real_tracer and not api._TRACER_PROVIDER:
                outer_span, ctx.span = ctx.span, INVALID_SPAN
                try:
                    return call_next(ctx)
                finally:
                    ctx.span = outer_span
            span = start_span(name or ctx.operation, kind=client, attributes=attributes_for(ctx))
            token = attach(set_span(span))
            outer_span, ctx.span = ctx.span, span
            try:
                return call_next(ctx)
            except Exception as error:
                record_failure(span, error)
                raise
            finally:
                ctx.span = outer_span
                detach(token)
                span.end()

        return handle

    def awrap(self, call_next: AsyncHandler) -> AsyncHandler:
        name = self.options.name
        attributes_for = call_attributes(self.options.attributes or {}, self.options.record_args)
        set_span, attach, detach, client = (trace.set_span_in_context, otel_context.attach,
                                            otel_context.detach, self.options.kind())
        tracer = self._tracer()
        start_span, proxy, api = tracer.start_span, _noop_proxy(tracer), trace

        async def untraced(ctx: CallContext, outer_span: Any) -> Any:
            ctx.span = INVALID_SPAN
            try:
                return await call_next(ctx)
            finally:
                ctx.span = outer_span

        async def traced(ctx: CallContext) -> Any:
            span = start_span(name or ctx.operation, kind=client, attributes=attributes_for(ctx))
            token = attach(set_span(span))
            outer_span, ctx.span = ctx.span, span
            try:
                return await call_next(ctx)
            except asyncio.CancelledError:
                record_cancel(span)
                raise
            except Exception as error:
                record_failure(span, error)
                raise
            finally:
                ctx.span = outer_span
                detach(token)
                span.end()

        if proxy is None:  # a tracer that always makes spans: no check per call, no frame
            return traced

        def handle(ctx: CallContext) -> Awaitable[Any]:
            if not proxy._real_tracer and not api._TRACER_PROVIDER:
                outer_span = ctx.span
                if outer_span is None or outer_span is INVALID_SPAN:
                    # Untraced, under no span: nothing to restore (a span left as
                    # INVALID_SPAN records nothing, as None), so no coroutine of its own.
                    ctx.span = INVALID_SPAN
                    return call_next(ctx)
                return untraced(ctx, outer_span)
            return traced(ctx)

        return handle

    def __repr__(self) -> str:
        return f"Trace(name={self.options.name!r})"
