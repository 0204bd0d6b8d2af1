"""What every routed HTTP attempt carries, whichever client sends it.

:func:`stamp` is the one place where the mesh adds headers to an outgoing request:
the service's static headers, the remaining deadline and caller name, and the W3C
``traceparent`` of the attempt's span. Both
``mesh.http()`` and ``mesh.aiohttp()`` call it once per attempt, so a header added
here reaches every backend over every client.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from contextvars import ContextVar
from typing import Any

from opentelemetry import context as _context
from opentelemetry import propagate as _propagate
from opentelemetry import trace as _trace
from opentelemetry.context import Context
from opentelemetry.trace import Span

from .._context import TIMER_SLACK, CallContext
from .._errors import ConfigError, TimeoutExceeded
from .._inbound._headers import stamp_outgoing
from .._retry_after import parse_retry_after as _parse_retry_after
from ..routing._address import base_url_problem
from ..routing._tls import Headers
from ..telemetry._spans import record_http_request, record_http_status

__all__ = ["AT_DEADLINE", "IDEMPOTENT_METHODS", "MAX_FAILURE_BODY", "UNSENT", "KeptBody",
           "answered", "at_deadline", "check_base_url", "is_failure", "name_failure",
           "parse_retry_after", "relocated", "stamp"]


def _context_getter() -> Callable[[], Context]:
    # opentelemetry.context.get_current() is two Python calls down to a ContextVar
    # read (the contextvars runtime, the API's default); every attempt asks, so the
    # variable's own get is used when that runtime is the one loaded.
    variable = getattr(getattr(_context, "_RUNTIME_CONTEXT", None), "_current_context", None)
    return variable.get if isinstance(variable, ContextVar) else _context.get_current


_otel_context = _context_getter()


MAX_FAILURE_BODY = 1 << 20
"""Bytes of a failed answer's body (5xx, 429) the mesh keeps: it reads that body
itself, before the pipeline sees the failure and whether or not the caller streams,
so a longer one is cut here and its connection closed (a backend answering 503 with
an endless or huge body cannot hold a caller's memory or time)."""


class KeptBody:
    """The first :data:`MAX_FAILURE_BODY` bytes of a failed answer's body."""

    __slots__ = ("parts", "room")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.room = MAX_FAILURE_BODY

    def full(self, chunk: bytes) -> bool:
        """Keep what fits of ``chunk``; whether the rest of the body is to be left."""
        self.parts.append(chunk[:self.room])
        self.room -= len(self.parts[-1])
        return self.room <= 0

    def raw(self) -> bytes:
        """The bytes kept."""
        return b"".join(self.parts)


IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
"""Methods retried by default (RFC 9110 idempotent methods)."""


def parse_retry_after(value: str | None, date: str | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date), or None;
    ``date`` is the response's ``Date`` header, from which an HTTP date is counted
    (the server's clock, not this host's)."""
    return None if not value else _parse_retry_after(value, date=date)


def check_base_url(address: str, client: str) -> None:
    """Refuse a backend ``client`` (``"mesh.http()"``...) cannot send to: not an http(s)
    URL with a host (:func:`~meshlite.routing._address.base_url_problem`), or one with
    a query or fragment, which each request's own path and query would silently replace.

    Raises:
        ConfigError: naming the backend and what would be valid.
    """
    problem = base_url_problem(address)
    if problem is not None:
        raise ConfigError(f"backend {address!r} {problem}, so {client} cannot send to "
                          "it (each request's own path and query replace a query or "
                          "fragment); give it as http(s)://host:port/path, or use "
                          "mesh.call() for other backends", policy="routing")


def relocated(raw: list[tuple[bytes, bytes]], prefix: str
              ) -> list[tuple[bytes, bytes]] | None:
    """A redirect's raw headers with its ``Location`` moved from the backend's URLs
    into the service's, or None when it needs no move: an absolute path under the
    backend's path ``prefix`` (``/v1/new`` from backend ``http://host/v1``) loses it
    (``/new``), as a reverse proxy's default ``proxy_redirect`` does; followed as it
    was, it would be sent to ``/v1/v1/new``. Any other ``Location`` (relative,
    another path, another URL) is right as it is."""
    for i, (name, value) in enumerate(raw):
        if name.lower() == b"location":
            location = value.decode("latin-1")
            rest = location[len(prefix):]
            if not location.startswith(prefix) or rest[:1] not in ("/", "?", "#", ""):
                return None  # (/v10/x is not under /v1)
            moved = list(raw)
            moved[i] = (name, (rest if rest.startswith("/") else "/" + rest).encode("latin-1"))
            return moved
    return None


UNSENT = "@@@SKIP_HEADER@@@"
"""The value by which the sync wire tells urllib3 not to send a header it would add
(``urllib3.util.SKIP_HEADER``, spelled here: this module never imports urllib3)."""


def is_failure(status: int) -> bool:
    """Whether an answer counts as the backend's failure (5xx, or 429)."""
    return status >= 500 or status == 429


def stamp(headers: MutableMapping[str, str], static: Headers, method: str, url: Any,
          left: float | None, caller: str | None) -> Span | None:
    """Add the mesh's headers to one attempt's request headers (case-insensitive
    ``headers``: httpx's or aiohttp's, or the sync wire's plain dict keyed by
    lower-case name): the service's static headers the
    request does not set itself, the call's remaining budget ``left`` and the calling
    mesh's name (:func:`~meshlite._inbound._headers.stamp_outgoing`), and
    ``traceparent`` when the attempt is traced.

    Returns:
        The attempt's span when it records (it got the request's method and URL;
        give it to :func:`answered`), else None.
    """
    if static:
        # (a header the sync wire marks as not to be sent is not the request's own)
        present = {key.lower() for key, value in headers.items() if value != UNSENT}
        for name, value in static:
            if name.lower() not in present:
                headers[name] = value
    if left is not None or caller is not None:
        stamp_outgoing(headers, left, caller)
    context = _otel_context()
    if not context:
        # Nothing set in the OpenTelemetry context (no span, no baggage): the usual
        # case without a tracer provider, where the look-ups below would all find
        # the invalid span. One dict test instead of five calls per attempt.
        return None
    span = _trace.get_current_span(context)  # the attempt's span, when traced
    if span.get_span_context().is_valid:
        _propagate.inject(headers, context=context)
    if span.is_recording():
        record_http_request(method, str(url), span)
        return span
    return None


def answered(span: Span | None, status: int) -> None:
    """Record the answer's status on the attempt's span (from :func:`stamp`)."""
    if span is not None:
        record_http_status(status, span)


def name_failure(error: BaseException, service: str, address: str) -> None:
    """Put the service and backend an attempt failed on at the head of ``error``'s
    message, in place: its type and attributes stay (callers catch
    ``httpx.ConnectError``, ``aiohttp.ClientConnectorError``...), and an operator
    reading only the message learns which service it was. The text of an ``OSError``
    (aiohttp's connection errors, which format their own message around it) is its
    ``strerror``; another error's is its one argument. Failure path only."""
    where = f"service {service!r}, backend {address}"
    if isinstance(error, OSError) and error.strerror is not None:
        error.strerror = f"{where}: {error.strerror}"
        return
    args = error.args
    if len(args) == 1 and isinstance(args[0], str):
        error.args = (f"{where}: {args[0]}",)
    elif not args:
        error.args = (where,)


AT_DEADLINE: dict[type[BaseException], type[TimeoutExceeded]] = {TimeoutError: TimeoutExceeded}
"""The error :func:`at_deadline` raises for a wire's timeout, by its exact type: one
that is also ``ml.TimeoutExceeded``. A bare ``TimeoutError`` (``mesh.aiohttp()``'s
attempt timer) is one already; httpx's four timeouts get theirs
(:mod:`~meshlite._http._deadline_errors`, which adds them here: this module imports
no client library)."""


def at_deadline(error: BaseException, ctx: CallContext | None) -> None:
    """Raise, in place of ``error`` ending an attempt of ``ctx``, the error that says
    the call's deadline ended it, when it is a wire's timeout (:data:`AT_DEADLINE`)
    that fired because that deadline had passed (the wire's timeouts were the time
    the call had left); else return, and the caller re-raises ``error`` as it is.

    The error raised is of ``error``'s library type (``except httpx.ReadTimeout``
    still catches it) and also ``ml.TimeoutExceeded`` (``policy="routing"``), its
    message naming whose deadline it was (the caller's, inherited from an inbound
    request or an outer call, or the service's own ``Timeout``'s), ``error`` its
    ``__cause__``. A loop timer may fire up to
    :data:`~meshlite._context.TIMER_SLACK` early (uvloop's whole
    milliseconds), so that much before the deadline counts as at it. A timeout
    before that (the client's own, shorter) is the backend's. Failure path only.

    Raises:
        TimeoutExceeded: as above.
    """
    kind = AT_DEADLINE.get(type(error))
    if kind is None or ctx is None:
        return
    out = ctx.out_of_time(TIMER_SLACK)
    if out is None:
        return
    whose = ("its caller's deadline passed: the caller ran out of time" if out == "caller"
             else "the deadline of the service's Timeout passed")
    text = str(error) or (f"service {ctx.service!r}, backend "
                          f"{getattr(ctx.backend, 'address', None)}: timed out")
    made = kind(f"{text} ({whose})")
    made.__dict__.update(error.__dict__)  # httpx's request, notes
    made.service, made.policy = ctx.service, "routing"
    try:
        raise made from error
    finally:
        del made  # this frame is in its traceback: the two would be a reference cycle
