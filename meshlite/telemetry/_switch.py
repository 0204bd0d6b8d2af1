"""The tracer provider meshlite installs globally: a switch in front of the real one.

The OpenTelemetry API lets a process set its global ``TracerProvider`` once, and
code keeps the tracers it got (a compiled ``ml.Trace`` holds one per pipeline). So
``configure()`` installs this switch once and, on every later call, points it at a
freshly built SDK provider: tracers handed out earlier follow, because each one
forwards to the provider the switch points at when a span starts. API only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind
from opentelemetry.util.types import Attributes

__all__ = ["SwitchTracer", "SwitchTracerProvider"]

_Scope = tuple[str, str | None, str | None, Attributes]


class SwitchTracerProvider(trace.TracerProvider):
    """Forwards to ``target``, which :meth:`point_to` replaces atomically.

    ``state`` is one tuple ``(generation, provider)`` so a reader never sees a new
    generation with an old provider (a single attribute read is atomic).
    """

    def __init__(self) -> None:
        self.state: tuple[int, trace.TracerProvider] = (0, trace.NoOpTracerProvider())

    @property
    def target(self) -> trace.TracerProvider:
        """The provider spans are created by now."""
        return self.state[1]

    def point_to(self, provider: trace.TracerProvider) -> None:
        """Make ``provider`` the target of every tracer handed out, old or new."""
        self.state = (self.state[0] + 1, provider)

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> trace.Tracer:
        """A tracer that follows the switch (see the module docstring)."""
        return SwitchTracer(self, (instrumenting_module_name, instrumenting_library_version,
                                   schema_url, attributes))

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the target's processors (``True`` when it has none to flush)."""
        flush = getattr(self.target, "force_flush", None)
        return True if flush is None else bool(flush(timeout_millis))

    def add_span_processor(self, span_processor: Any) -> None:
        """Add a processor to the current target. A later ``configure()`` builds a
        new provider without it: add it to the returned handle's provider instead.

        Raises:
            TypeError: the target is not an SDK provider (telemetry is disabled).
        """
        add = getattr(self.target, "add_span_processor", None)
        if add is None:
            raise TypeError("meshlite telemetry is not configured (or is disabled): "
                            "there is no SDK tracer provider to add a processor to")
        add(span_processor)

    def __repr__(self) -> str:
        return f"SwitchTracerProvider(generation={self.state[0]}, target={self.target!r})"


class SwitchTracer(trace.Tracer):
    """A tracer bound to a :class:`SwitchTracerProvider`, not to one real provider."""

    def __init__(self, switch: SwitchTracerProvider, scope: _Scope) -> None:
        self._switch = switch
        self._scope = scope
        self._cached: tuple[int, trace.Tracer] = (-1, trace.NoOpTracer())

    def _target(self) -> trace.Tracer:
        generation, provider = self._switch.state
        cached_generation, tracer = self._cached
        if cached_generation != generation:
            # Racing threads may both fetch: the SDK returns the same tracer for a scope.
            tracer = provider.get_tracer(*self._scope)
            self._cached = (generation, tracer)
        return tracer

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Span:
        """Start a span on the provider the switch points at now."""
        return self._target().start_span(name, context, kind, attributes, links, start_time,
                                         record_exception, set_status_on_exception)

    def start_as_current_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Any:
        """Start a span on the current target and make it current (a context manager,
        also usable as a decorator, as the API's)."""
        return self._target().start_as_current_span(
            name, context, kind, attributes, links, start_time, record_exception,
            set_status_on_exception, end_on_exit)
