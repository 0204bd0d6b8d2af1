"""The SERVER span of an inbound request, continuing the caller's W3C trace context
(``traceparent``, ``tracestate``, ``baggage``: the globally configured propagators).

What the request says of itself is given to ``start_span``, so a sampler sees it: the
HTTP conventions' attributes to be given at a server span's creation
(``http.request.method``, ``url.path``, ``url.query``, ``url.scheme``,
``server.address``, ``server.port``, ``client.address``, ``user_agent.original``),
the route and the calling mesh. The answer's are set when it ends: the status, an
error (``error.type``, status ``ERROR`` and the ``exception`` event), and, for a request
no meshlite route named, the route the framework matched (Starlette's and FastAPI's
``scope["route"]``), which then names the span too."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from threading import get_ident
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .._memo import remember
from .._printable import url_shown
from .._semconv import DEFAULT_PORTS, error_type
from ._request import Inbound, Scope

__all__ = ["MALFORMED_LOG_SECONDS", "ServerSpan", "extract", "passed_on", "recording"]

MALFORMED_LOG_SECONDS = 60.0
"""Seconds between two records of malformed trace context on ``meshlite.inbound``."""

_tracer: trace.Tracer | None = None
_MAX_HOST = 261  # characters of a Host header read: a DNS name (253), a colon, a port
_MAX_HOSTS = 256  # (scheme, Host) pairs whose server.* attributes are kept at once
# A Host header: an IP literal or a registered name (RFC 3986 characters), then maybe a
# port. Anything else, which a client may send, names no server.
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~%!$&'()*+,;=-]+)(?::([0-9]{1,5}))?")
_hosts: dict[tuple[str, str], dict[str, str | int]] = {}


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


_HELD_BACK = ("opentelemetry.baggage.propagation",
              "opentelemetry.trace.propagation.tracecontext", "opentelemetry.trace.span")
_extracting: set[int] = set()
"""The threads extracting an inbound request's context now: extraction runs no
``await``, so no other request of a thread's event loop interleaves (a set of thread
idents and the record's ``thread``, for servers running loops on several threads: a
``ContextVar`` set and reset cost more than the rest of the extraction's
bookkeeping)."""
_log = logging.getLogger("meshlite.inbound")


class _HoldBack(logging.Filter):
    """On the W3C propagators' loggers: their warnings about the trace context of a
    request the middleware extracts are counted, not written. They write one line
    per malformed baggage entry (thousands from one request) and repeat a header
    over the limit whole (as long as the server accepts); what a client sends must
    not decide what the service logs. Their warnings at any other time pass."""

    def __init__(self) -> None:
        super().__init__()
        self.dropped = 0
        self.requests = 0
        self.last = -MALFORMED_LOG_SECONDS

    def filter(self, record: logging.LogRecord) -> bool:
        if get_ident() in _extracting:  # (record.thread is None without logging.logThreads)
            self.dropped += 1
            return False
        return True

    def noted(self) -> None:
        """One more request brought malformed trace context: a record on
        ``meshlite.inbound`` at most every :data:`MALFORMED_LOG_SECONDS`, with how
        many problems and requests it stands for."""
        self.requests += 1
        now = time.monotonic()
        if now - self.last < MALFORMED_LOG_SECONDS:
            return
        dropped, requests, self.dropped, self.requests, self.last = (
            self.dropped, self.requests, 0, 0, now)
        _log.warning("inbound: malformed trace context ignored (%d problems in %d requests "
                     "since the last record)", dropped, requests,
                     extra={"meshlite_event": "MalformedTraceContext",
                            "meshlite_dropped": dropped, "meshlite_requests": requests})


_hold_back = _HoldBack()
for _name in _HELD_BACK:
    logging.getLogger(_name).addFilter(_hold_back)


def extract(headers: Mapping[str, str]) -> Any:
    """The OpenTelemetry context of a request's headers (the global propagators),
    the propagators' warnings about them held back (:class:`_HoldBack`)."""
    before = _hold_back.dropped
    thread = get_ident()
    _extracting.add(thread)
    try:
        return propagate.extract(headers)
    finally:
        _extracting.discard(thread)
        if _hold_back.dropped != before:
            _hold_back.noted()


def _server(scheme: str, host: str) -> dict[str, str | int]:
    """``server.address`` / ``server.port`` of a request's ``Host`` header (the port
    the scheme's default when it names none, as a client's attempt span has it;
    empty for a header that names no host), parsed once per header value."""
    found = _hosts.get((scheme, host))
    if found is None:
        found = {}
        match = _HOST.fullmatch(host) if len(host) <= _MAX_HOST else None
        if match is not None:
            name, port = match.groups()
            number = int(port) if port else DEFAULT_PORTS.get(scheme)
            if number is None or 0 < number <= 65535:
                found["server.address"] = name.strip("[]").lower()
                if number is not None:
                    found["server.port"] = number
        # (emptied when full, as every small cache on the path: made-up Host values
        # cannot keep the service's own from being cached for good)
        remember(_hosts, (scheme, host), found, _MAX_HOSTS)
    return found


def _query(raw: bytes) -> str:
    """``url.query``: the query as received, the values of parameters named like
    secrets masked as every URL meshlite shows is (:func:`~meshlite._printable.url_shown`:
    ``token=***``)."""
    query = raw.decode("latin-1")
    shown = url_shown(f"?{query}")
    return shown[1:] if shown.startswith("?") else shown


def framework_route(scope: Mapping[str, Any], root: str) -> str | None:
    """The path template of the route the app's framework matched: Starlette (and
    FastAPI, whose router it is) puts the matched route in ``scope["route"]``. Only a
    route of the app's own router, whose template spans the whole path below
    ``root`` (the ``root_path`` the request came with): below a ``Mount`` the template
    is the mounted app's alone, and the mount's part of the path, which may hold
    parameters, is not known as a template, so such a request has no ``http.route``
    rather than a wrong or unbounded one."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str) or not path.startswith("/") or (
            scope.get("root_path", "") != root):
        return None
    return path


_owned: tuple[object, frozenset[bytes]] = (None, frozenset())
"""The global propagator last seen, and the header names it writes (lower case)."""


def _owned_names() -> frozenset[bytes]:
    global _owned
    textmap = propagate.get_global_textmap()
    if _owned[0] is not textmap:  # (once, and again if the application sets another)
        _owned = (textmap, frozenset(n.lower().encode("latin-1") for n in textmap.fields))
    return _owned[1]


def passed_on(scope: Scope, context: Any) -> Scope:
    """The scope the app gets: a copy whose trace context headers (the global
    propagators' fields: ``traceparent``, ``tracestate``, ``baggage``) are those of
    ``context``, the SERVER span's, as a sidecar passes its own span on to the app it
    fronts. Instrumentation in the app that starts a SERVER span of its own from the
    headers (FastAPI's built-in telemetry, OpenTelemetry's ASGI middleware) then
    starts it below this one, in the same trace, rather than beside it (or, for a
    request with no trace context, as the root of a second trace), with the spans of
    the mesh calls the handler makes below both."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=context)
    given = {name.lower().encode("latin-1"): value.encode("latin-1")
             for name, value in carrier.items()}
    dropped = _owned_names().union(given)
    headers = [h for h in scope["headers"] if h[0].lower() not in dropped]
    headers += given.items()
    return {**scope, "headers": headers}


class ServerSpan:
    """Start with :meth:`start` (the span becomes current, so spans of mesh calls made
    while handling the request are its children); finish with :meth:`end`."""

    __slots__ = ("method", "root", "span", "token")

    def __init__(self, request: Inbound, route: str | None, method: str) -> None:
        headers = request.headers
        parent = extract(headers)
        scope = request.scope
        scheme = scope.get("scheme", "http")
        attributes: dict[str, Any] = {
            "http.request.method": method, "url.path": request.path, "url.scheme": scheme}
        if method != request.method:  # a made-up method: not in the name (semconv)
            attributes["http.request.method_original"] = request.method
            method = "HTTP"
        query = scope.get("query_string")
        if query:
            attributes["url.query"] = _query(query)
        host = headers.get("host")
        if host:
            attributes.update(_server(scheme, host))
        if route is not None:
            attributes["http.route"] = route
        if request.ip:
            attributes["client.address"] = request.ip
        agent = headers.get("user-agent")
        if agent:
            attributes["user_agent.original"] = agent
        if request.caller is not None:  # (read from its header before the span starts)
            attributes["meshlite.caller"] = request.caller
        name = f"{method} {route}" if route is not None else method
        self.method = method
        # No meshlite route: the framework's, once it routed the request (see end()).
        self.root: str | None = scope.get("root_path", "") if route is None else None
        self.span = _get_tracer().start_span(name, context=parent, kind=SpanKind.SERVER,
                                             attributes=attributes)
        current = trace.set_span_in_context(self.span, parent)
        self.token = otel_context.attach(current)
        if self.span.is_recording():  # (else there is no trace for the app to join)
            request.scope = passed_on(scope, current)

    def end(self, request: Inbound, error: BaseException | None, ended: float) -> None:
        """Record the outcome, end the span at ``ended`` (``time.monotonic()``: when the
        response was complete, as the request's duration metric ends; work the app
        does after it, a background task, is not in it) and restore the previous
        context."""
        otel_context.detach(self.token)
        span = self.span
        if span.is_recording():
            if request.status:
                span.set_attribute("http.response.status_code", request.status)
            if request.principal is not None:
                span.set_attribute("enduser.id", request.principal.subject)
            if self.root is not None:
                route = framework_route(request.scope, self.root)
                if route is not None:
                    span.set_attribute("http.route", route)
                    span.update_name(f"{self.method} {route}")
            # An exception is an error even once the response started: the client
            # got a status but its body was cut short.
            if request.status >= 500 or isinstance(error, Exception) or (
                    error is not None and not request.status):
                kind = error_type(error) if error is not None else str(request.status)
                span.set_attribute("error.type", kind)
                if isinstance(error, Exception):
                    span.record_exception(error, escaped=True)
                span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=time.time_ns() - max(0, int((time.monotonic() - ended) * 1e9)))
