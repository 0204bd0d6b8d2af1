"""The SERVER span of an inbound request, continuing the caller's W3C trace context
(``traceparent``, ``tracestate``, ``baggage``: the globally configured propagators)."""

from __future__ import annotations

from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .._semconv import error_type
from ._request import Inbound

__all__ = ["ServerSpan", "recording"]

_tracer: trace.Tracer | None = None


def _get_tracer() -> trace.Tracer:
    global _tracer
    if _tracer is None:
        from .._version import __version__

        # A proxy until a global provider is set; then it forwards to it for good.
        _tracer = trace.get_tracer("meshlite.asgi", __version__)
    return _tracer


def recording() -> bool:
    """Whether spans would be recorded: a tracer provider is installed and is not the
    API's no-op (meshlite's switch counts by what it points at). Without one, a
    request that brings no trace context needs no span at all: nothing would be
    recorded and there is nothing to pass on."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return False
    target = getattr(provider, "target", None)  # meshlite's SwitchTracerProvider
    return not isinstance(target, trace.NoOpTracerProvider)


class ServerSpan:
    """Start with :meth:`start` (the span becomes current, so spans of mesh calls made
    while handling the request are its children); finish with :meth:`end`."""

    __slots__ = ("span", "token")

    def __init__(self, request: Inbound, route: str | None, method: str) -> None:
        parent = propagate.extract(request.headers)
        attributes: dict[str, Any] = {
            "http.request.method": method, "url.path": request.path,
            "url.scheme": request.scope.get("scheme", "http")}
        if method != request.method:  # a made-up method: not in the name (semconv)
            attributes["http.request.method_original"] = request.method
            method = "HTTP"
        if route is not None:
            attributes["http.route"] = route
        if request.ip:
            attributes["client.address"] = request.ip
        name = f"{method} {route}" if route is not None else method
        self.span = _get_tracer().start_span(name, context=parent, kind=SpanKind.SERVER,
                                             attributes=attributes)
        self.token = otel_context.attach(trace.set_span_in_context(self.span, parent))

    def end(self, request: Inbound, error: BaseException | None) -> None:
        """Record the outcome, end the span and restore the previous context."""
        otel_context.detach(self.token)
        span = self.span
        if span.is_recording():
            if request.status:
                span.set_attribute("http.response.status_code", request.status)
            if request.caller is not None:
                span.set_attribute("meshlite.caller", request.caller)
            if request.principal is not None:
                span.set_attribute("enduser.id", request.principal.subject)
            if request.status >= 500 or (error is not None and not request.status):
                kind = error_type(error) if error is not None else str(request.status)
                span.set_attribute("error.type", kind)
                span.set_status(Status(StatusCode.ERROR))
        span.end()
