"""Span helpers for routing and the HTTP transport: one ``CLIENT`` span per attempt.

The logical call's span comes from ``ml.Trace`` (``ctx.span``); each attempt the
routing handler makes gets a child span naming the backend, the attempt number and
the outcome, current while the attempt runs, so the HTTP transport's ``traceparent``
names the attempt and the HTTP helpers below annotate it. API only.

An attempt span is made only under a recording call span: an untraced or
sampled-out call pays one attribute check per attempt, and the tree in Jaeger
always reads call > attempts. (The routing handler inlines that check, so an
untraced attempt does not even enter a context manager.)

Inside an attempt, OpenTelemetry's HTTP client instrumentations
(``opentelemetry-instrumentation-httpx``, ``-aiohttp-client``, ``-requests``...)
make no span: the attempt's span is already the ``CLIENT`` span of that request,
with the HTTP semantic-convention attributes, so a request shows as one ``CLIENT``
span, not two nested ones. The attempt's context carries OpenTelemetry's
"suppress HTTP instrumentation" key, which those instrumentations honour.

Use in a routing handler (sync or async; the ``with`` spans the ``await``)::

    with attempt_span(ctx, backend):
        result = ctx.fn(backend, *ctx.args, **ctx.kwargs)
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode

from .._context import CallContext
from .._errors import RejectedError, TimeoutExceeded
from .._semconv import KNOWN_METHODS, OTHER_METHOD, error_type

__all__ = ["AttemptSpan", "attempt_span", "record_http_request", "record_http_status"]

_MAX_CACHED = 256  # distinct backend addresses whose server.* attributes are kept
# The API's key, honoured by the HTTP client instrumentations (is_http_instrumentation_
# enabled); private in the API, hence looked up once and optional.
_SUPPRESS_HTTP: str | None = getattr(otel_context, "_SUPPRESS_HTTP_INSTRUMENTATION_KEY", None)
_servers: dict[str, dict[str, str | int]] = {}
_tracer: trace.Tracer | None = None


def _get_tracer() -> trace.Tracer:
    global _tracer
    if _tracer is None:
        from .._version import __version__

        # A proxy until a global provider is set; then it forwards to it for good.
        _tracer = trace.get_tracer("meshlite", __version__)
    return _tracer


def _server(address: str) -> dict[str, str | int]:
    """``server.address`` / ``server.port`` of a backend address (empty when it is not
    a URL), parsed once per address."""
    found = _servers.get(address)
    if found is None:
        found = {}
        try:
            parts = urlsplit(address)
            if parts.hostname:
                found["server.address"] = parts.hostname
                port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
                if port is not None:
                    found["server.port"] = port
        except ValueError:
            pass  # a non-URL address (mesh.call backends may be anything)
        if len(_servers) < _MAX_CACHED:
            _servers[address] = found
    return found


def _outcome(error: BaseException) -> str:
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    if isinstance(error, RejectedError):
        return "rejected"
    if isinstance(error, TimeoutError):
        return "timeout"
    return "error"


class AttemptSpan:
    """Context manager of one attempt's span; enter it to get the span (see
    :func:`attempt_span`)."""

    __slots__ = ("_backend", "_ctx", "_span", "_token")

    def __init__(self, ctx: CallContext, backend: Any) -> None:
        self._ctx = ctx
        self._backend = backend
        self._span: Span = INVALID_SPAN
        self._token: object = None

    def __enter__(self) -> Span:
        ctx = self._ctx
        span = self._span = _get_tracer().start_span(ctx.operation, kind=SpanKind.CLIENT)
        if span.is_recording():
            address = getattr(self._backend, "address", None)
            address = address if isinstance(address, str) else str(self._backend)
            attempt = max(ctx.attempt, 1)
            attributes: dict[str, str | int] = {
                "meshlite.attempt": attempt, "meshlite.backend": address}
            if attempt > 1:  # the HTTP conventions' name for it, on every resent request
                attributes["http.request.resend_count"] = attempt - 1
            if ctx.service is not None:
                attributes["meshlite.service"] = ctx.service
            if ctx.hedge:  # a hedge races the attempt it hedges, with its number
                attributes["meshlite.hedge"] = ctx.hedge
            attributes.update(_server(address))
            span.set_attributes(attributes)
        context = trace.set_span_in_context(span)
        if _SUPPRESS_HTTP is not None:
            context = otel_context.set_value(_SUPPRESS_HTTP, True, context)
        self._token = otel_context.attach(context)
        return span

    def __exit__(self, exc_type: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        otel_context.detach(self._token)  # type: ignore[arg-type]  # attach's own token
        span = self._span
        if span.is_recording():
            if error is None:
                span.set_attribute("meshlite.outcome", "success")
            else:
                _record_error(span, _cut_by_deadline(self._ctx, error))
        span.end()


def _cut_by_deadline(ctx: CallContext, error: BaseException) -> BaseException:
    """``error``, or for a cancellation at a deadline of the call's own pipeline (a
    ``Timeout`` of the service's) the ``TimeoutExceeded`` routing counts it as: the
    attempt timed out (:meth:`CallContext.out_of_time`)."""
    if isinstance(error, asyncio.CancelledError) and ctx.deadline is not None and (
            ctx.out_of_time() == "own"):
        return TimeoutExceeded("the attempt ran past its service's deadline",
                               service=ctx.service, policy="routing")
    return error


def _record_error(span: Span, error: BaseException) -> None:
    outcome = _outcome(error)
    attributes: dict[str, str | int] = {"meshlite.outcome": outcome}
    if outcome == "cancelled":
        # A losing hedge, or the caller gave up (then the call span has the error):
        # no status ERROR, which tracing backends count as a failed request.
        attributes["error.type"] = "cancelled"
        span.set_attributes(attributes)
        return
    attributes["error.type"] = error_type(error)
    status = getattr(error, "status_code", None)
    if isinstance(status, int) and not isinstance(status, bool):
        attributes["http.response.status_code"] = status
    if isinstance(error, Exception):
        span.record_exception(error)
    span.set_attributes(attributes)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


class _NoAttemptSpan:
    """What :func:`attempt_span` returns when the call is not traced: does nothing."""

    __slots__ = ()

    def __enter__(self) -> Span:
        return INVALID_SPAN

    def __exit__(self, exc_type: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        return None


_NO_SPAN = _NoAttemptSpan()


def attempt_span(ctx: CallContext, backend: Any) -> AttemptSpan | _NoAttemptSpan:
    """A ``CLIENT`` span for the attempt ``ctx.attempt`` sends to ``backend``.

    Enter it around the attempt: the span is current inside (so ``traceparent``
    injected there names it) and a child of the call's span. Attributes:
    ``meshlite.attempt``, ``meshlite.backend`` (the address), ``meshlite.service``,
    ``server.address`` / ``server.port`` (when the address is a URL) and, on exit,
    ``meshlite.outcome`` (``success``, ``error``, ``timeout``, ``rejected``,
    ``cancelled``); a failure adds ``error.type`` (the status code for an HTTP status
    error), ``http.response.status_code`` when the error carries one, the exception
    event and status ``ERROR``. A cancelled attempt (a losing hedge) gets
    ``error.type`` ``cancelled`` but no status ``ERROR``: it is not a failed
    request; one cancelled at a deadline of its service's own pipeline timed out
    (``timeout``, ``TimeoutExceeded``, as routing counts it). Exceptions propagate
    unchanged.

    Args:
        ctx: The call's context; nothing is recorded unless ``ctx.span`` (set by
            ``ml.Trace``) is recording.
        backend: The chosen backend (its ``.address`` is used, else ``str()``).

    Returns:
        A context manager whose ``__enter__`` returns the span (a no-op span when
        the call is not traced).
    """
    parent = ctx.span
    if parent is None or parent is INVALID_SPAN or not parent.is_recording():
        return _NO_SPAN
    return AttemptSpan(ctx, backend)


def record_http_request(method: str, url: str, span: Span | None = None) -> None:
    """Annotate the attempt's span with ``http.request.method`` and ``url.full``
    (the backend's URL, without credentials, query string or fragment, which may
    hold secrets). No-op when the span is not recording.

    Args:
        method: The request method.
        url: The URL the request is sent to.
        span: The span (default: the current one, which costs a context lookup).
    """
    if span is None:
        span = trace.get_current_span()
    if not span.is_recording():
        return
    attributes: dict[str, str] = {"http.request.method": method}
    if method not in KNOWN_METHODS:  # made up: its span is named HTTP (the call's operation)
        attributes["http.request.method"] = OTHER_METHOD
        attributes["http.request.method_original"] = method
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if host:
        if ":" in host:
            host = f"[{host}]"  # an IPv6 literal
        netloc = host if port is None else f"{host}:{port}"
        attributes["url.full"] = f"{parts.scheme}://{netloc}{parts.path or '/'}"
    span.set_attributes(attributes)


def record_http_status(status_code: int, span: Span | None = None) -> None:
    """Annotate the attempt's span with ``http.response.status_code``; a status >=
    400 also sets ``error.type`` to the code and status ``ERROR``, as the HTTP
    client semantic conventions ask. No-op when the span is not recording.

    Args:
        status_code: The response status.
        span: The span (default: the current one, which costs a context lookup).
    """
    if span is None:
        span = trace.get_current_span()
    if not span.is_recording():
        return
    span.set_attribute("http.response.status_code", status_code)
    if status_code >= 400:
        span.set_attribute("error.type", str(status_code))
        span.set_status(Status(StatusCode.ERROR, f"HTTP {status_code}"))
