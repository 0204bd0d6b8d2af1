"""Span helpers for routing and the HTTP transport: one ``CLIENT`` span per attempt.

The logical call's span comes from ``ml.Trace`` (``ctx.span``); each attempt the
routing handler makes gets a child span naming the backend, the attempt number and
the outcome, current while the attempt runs, so the HTTP transport's ``traceparent``
names the attempt and the HTTP helpers below annotate it. API only.

An attempt span is made only under a recording call span: an untraced or
sampled-out call pays one attribute check per attempt, and the tree in Jaeger
always reads call > attempts. (The routing handler inlines that check, so an
untraced attempt does not even enter a context manager.)

What is known before the attempt starts is given to ``start_span``, so a sampler
sees it (the HTTP conventions' ``http.request.method``, ``server.address``,
``server.port`` and ``url.full``, from the backend's address and ``ctx.request``
for a ``mesh.http()`` / ``mesh.aiohttp()`` call); the outcome is set on exit.

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
from .._memo import remember
from .._semconv import DEFAULT_PORTS, KNOWN_METHODS, OTHER_METHOD, error_type, server_of

__all__ = ["AttemptSpan", "attempt_span", "record_http_request", "record_http_status"]

_MAX_CACHED = 256  # backend addresses whose server.* attributes are kept at once
# The API's key, honoured by the HTTP client instrumentations (is_http_instrumentation_
# enabled); private in the API, hence looked up once and optional.
_SUPPRESS_HTTP: str | None = getattr(otel_context, "_SUPPRESS_HTTP_INSTRUMENTATION_KEY", None)
_Target = tuple[dict[str, str | int], str | None]
_targets: dict[str, _Target] = {}
_tracer: trace.Tracer | None = None


def _get_tracer() -> trace.Tracer:
    global _tracer
    if _tracer is None:
        from .._version import __version__

        # A proxy until a global provider is set; then it forwards to it for good.
        _tracer = trace.get_tracer("meshlite", __version__)
    return _tracer


def _target(address: str) -> _Target:
    """``server.address`` / ``server.port`` of a backend address (empty when it is not
    a URL), and the base of the ``url.full`` of its requests (the scheme, host, port
    and path, as :func:`_origin` writes them; None unless an http(s) URL), parsed
    once per address."""
    found = _targets.get(address)
    if found is None:
        server, parts = server_of(address)
        base = None
        if server and parts is not None and parts.scheme in DEFAULT_PORTS:
            base = _origin(parts.scheme, parts.hostname or "", parts.port) + (
                parts.path.rstrip("/"))
        # (emptied when full, as every small cache on the path: after discovery
        # churn, new addresses are cached again, not parsed on every attempt)
        found = remember(_targets, address, (server, base), _MAX_CACHED)
    return found


def _origin(scheme: str, host: str, port: int | None) -> str:
    """``scheme://host[:port]`` of a ``url.full``: an IPv6 literal in brackets, the
    scheme's default port left out (one URL written one way, whether it came from a
    backend's address or from the URL a client sent)."""
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _method(method: str) -> dict[str, str]:
    """``http.request.method`` (and ``http.request.method_original`` for a made-up
    one, whose span is named ``HTTP``: the call's operation)."""
    if method in KNOWN_METHODS:
        return {"http.request.method": method}
    return {"http.request.method": OTHER_METHOD, "http.request.method_original": method}


def _request(request: Any, base: str | None) -> dict[str, str]:
    """The HTTP attributes of an attempt of ``request`` (``ctx.request``: an
    ``httpx.Request`` or an ``aiohttp.ClientRequest``, sent to the service's host)
    to a backend whose ``url.full`` starts with ``base``: its path follows the
    backend's, as the transports send it; the query is left out (it may hold
    secrets)."""
    method = getattr(request, "method", None)
    if not isinstance(method, str):
        return {}
    attributes = _method(method)
    path = getattr(getattr(request, "url", None), "raw_path", None)
    if isinstance(path, bytes):  # httpx's, with the query
        path = path.decode("ascii", "replace")
    if base is not None and isinstance(path, str):
        attributes["url.full"] = base + (path.partition("?")[0] or "/")
    return attributes


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
        # Given at the span's start, where a sampler sees them. (An attempt span is
        # made under a recording call span only, so they are seldom built for nothing.)
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
        server, base = _target(address)
        attributes.update(server)
        if ctx.request is not None:  # an HTTP call (mesh.http(), mesh.aiohttp())
            attributes.update(_request(ctx.request, base))
        span = self._span = _get_tracer().start_span(ctx.operation, kind=SpanKind.CLIENT,
                                                     attributes=attributes)
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
        # The conventions: no description where the status code tells the reason (the
        # exception event still has the message).
        description = None
    else:
        description = f"{type(error).__name__}: {error}"
    if isinstance(error, Exception):
        span.record_exception(error)
    span.set_attributes(attributes)
    span.set_status(Status(StatusCode.ERROR, description))


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
    injected there names it) and a child of the call's span. Attributes, given when
    the span starts (so a sampler sees them): ``meshlite.attempt``,
    ``meshlite.backend`` (the address), ``meshlite.service``, ``server.address`` /
    ``server.port`` (when the address is a URL), for an HTTP call
    (``ctx.request``) ``http.request.method`` and ``url.full``; on exit,
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
    attributes = _method(method)
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if host:
        attributes["url.full"] = _origin(parts.scheme, host, port) + (parts.path or "/")
    span.set_attributes(attributes)


def record_http_status(status_code: int, span: Span | None = None) -> None:
    """Annotate the attempt's span with ``http.response.status_code``; a status >=
    400 also sets ``error.type`` to the code and status ``ERROR`` (with no
    description, which the code tells), as the HTTP client semantic conventions ask.
    No-op when the span is not recording.

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
        # No description: the conventions leave it out where the status code tells it.
        span.set_status(Status(StatusCode.ERROR))
