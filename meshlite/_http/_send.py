"""One HTTP attempt: the request copy for a backend, sending it, classifying the answer."""

from __future__ import annotations

import ssl
from collections.abc import AsyncGenerator, Awaitable, Iterable
from contextlib import aclosing
from typing import cast

import httpx
from httpx._multipart import MultipartStream
from multidict import CIMultiDict
from yarl import URL

from .._clock import bounded
from .._context import CallContext, _current
from ..routing._backend import Backend
from ..routing._events import ResponseStatusError
from ..routing._route import ResendRefused
from ..routing._service import Service
from ..telemetry._spans import record_http_status
from . import _deadline_errors  # noqa: F401 (registers httpx's timeouts in AT_DEADLINE)
from ._aio_wire import AiohttpTransport, wire_headers
from ._outgoing import (
    IDEMPOTENT_METHODS,
    KeptBody,
    at_deadline,
    is_failure,
    name_failure,
    parse_retry_after,
    relocated,
    stamp,
)
from ._pools import Pools, Target
from ._sync_wire import Urllib3Transport

__all__ = [
    "IDEMPOTENT_METHODS",
    "Call",
    "HttpResponseError",
    "asend",
    "outcome",
    "parse_retry_after",
    "send",
]

_UNSENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Failures before a single byte of the request left: resending is always safe.


class HttpResponseError(ResponseStatusError, httpx.TransportError):
    """A 5xx or 429 answer, raised inside the pipeline. Also an
    ``httpx.TransportError``, so Retry's default predicate retries it (for requests
    that may be resent) as it does connection errors and timeouts."""


class Call:
    """One logical HTTP request going through the pipeline (``ctx.args[0]``)."""

    __slots__ = ("ctx", "out", "pools", "replay", "request", "service")

    def __init__(self, request: httpx.Request, pools: Pools, service: Service) -> None:
        self.request = request
        self.pools = pools
        self.service = service
        self.replay = _replayable(request, service)
        self.out = False
        """Whether an attempt of this call (one shared by every hedge) may have sent
        it: a request that may not be resent is then refused by the others."""
        self.ctx: CallContext | None = None
        """A context given explicitly; by default each attempt uses the current one
        (its own copy under a hedge), and the call keeps no reference to it."""

    def attempt(self, target: Target) -> httpx.Request:
        """The request for one attempt: the backend's URL, Host header and deadline."""
        request = self.request
        url = request.url
        raw_path = target.prefix + url.raw_path if target.prefix else url.raw_path
        headers = request.headers.copy()
        headers["Host"] = target.netloc
        extensions = dict(request.extensions)
        ctx = self.ctx or _current.get()
        left = ctx.remaining() if ctx is not None else None
        if left is not None:
            extensions["timeout"] = _clamped(extensions.get("timeout"), left)
        sent_url = url.copy_with(scheme=target.scheme, host=target.host, port=target.port,
                                 raw_path=raw_path)
        stamp(headers, self.pools.headers, request.method, sent_url, left,
              self.service.caller())
        return httpx.Request(request.method, sent_url, headers=headers,
                             stream=request.stream, extensions=extensions)

    def exchange(self, target: Target) -> Awaitable[httpx.Response]:
        """Send this attempt over the aiohttp wire (``target.origin`` is set) without
        building an ``httpx.Request`` for it: the URL and headers go to aiohttp
        directly (a request it cannot send as given goes over httpcore, as an
        ``httpx.Request``: :func:`~meshlite._http._aio_wire.wire_headers`)."""
        request = self.request
        wire: AiohttpTransport = target.transport
        path = request.url.raw_path
        given_headers = wire_headers(request.headers.raw, path)
        if given_headers is None:  # a request aiohttp cannot send as given
            return wire.over_httpcore(self.attempt(target))
        headers = CIMultiDict(given_headers)
        headers["Host"] = target.netloc
        url = URL(f"{target.origin}{path.decode('ascii')}", encoded=True)
        given = request.extensions.get("timeout")
        ctx = self.ctx or _current.get()
        left = ctx.remaining() if ctx is not None else None
        stamp(headers, self.pools.headers, request.method, url, left, self.service.caller())
        if left is not None:
            given = _clamped(given, left)
        return wire.send(request, url, headers, wire.client_timeout(given))

    def exchange_sync(self, target: Target) -> httpx.Response:
        """Sync twin of :meth:`exchange`, over the urllib3 wire."""
        request = self.request
        wire: Urllib3Transport = target.transport
        headers = wire.headers(request)
        headers["host"] = target.netloc
        path = target.prefix.decode("ascii") + request.url.raw_path.decode("ascii")
        given = request.extensions.get("timeout")
        ctx = self.ctx or _current.get()
        left = ctx.remaining() if ctx is not None else None
        stamp(headers, self.pools.headers, request.method, f"{target.origin}{path}", left,
              self.service.caller())
        if left is None:
            return wire.send(request, target.scheme, target.host, target.port, path,
                             headers, given)
        # (ctx is set: `left` is its.) The wire cuts the connect and read timeouts to the
        # time left when it uses them, after any wait for a free connection.
        return wire.send(request, target.scheme, target.host, target.port, path, headers,
                         _clamped(given, left), ctx.deadline, ctx.clock)  # type: ignore[union-attr]

    def sent(self, sent: bool = True) -> None:
        """The request may have left (``sent=False``: it did not, after all): forbid
        resending it (a retry, or a hedge while it is in flight) unless that is safe.

        Raises:
            ResendRefused: it may not be resent and another attempt (a hedge that
                started before it left) has sent it.
        """
        if self.replay:
            return
        if sent and self.out:
            raise ResendRefused(
                f"service {self.service.name!r}: not sending {self.request.method!r} "
                "again: another attempt has sent it and it is not idempotent",
                error=None, service=self.service.name)
        self.out = sent
        ctx = self.ctx or _current.get()
        if ctx is not None:
            ctx.no_resend = sent

    def failure(self, backend: Backend, response: httpx.Response, raw: bytes
                ) -> HttpResponseError:
        status = response.status_code
        kept = httpx.Response(
            status, headers=response.headers, stream=httpx.ByteStream(raw),
            extensions={k: v for k, v in response.extensions.items()
                        if k in ("http_version", "reason_phrase")})
        return HttpResponseError(
            f"service {self.service.name!r}: {backend.address} answered "
            f"{self.request.method} {self.request.url.path} with {status}",
            response=kept, status_code=status, address=backend.address,
            service=self.service.name,
            retry_after=parse_retry_after(response.headers.get("Retry-After"),
                                          response.headers.get("Date")))


def _clamped(given: dict[str, float | None] | None, left: float
             ) -> dict[str, float | None]:
    """httpx's per-request timeouts, none longer than the ``left`` seconds of the
    call's deadline (nor than a socket takes: a deadline of centuries is at most
    :data:`~meshlite._clock.MAX_WAIT`, for every wire)."""
    given = given or {}
    left = bounded(left)
    return {k: left if (v := given.get(k)) is None or v > left else v
            for k in ("connect", "read", "write", "pool")}


def _replayable(request: httpx.Request, service: Service) -> bool:
    if not _rewinds(request.stream):
        return False  # a streamed body cannot be sent twice
    return (request.method in IDEMPOTENT_METHODS or service.retry_non_idempotent
            or "idempotency-key" in request.headers)


def _rewinds(stream: object) -> bool:
    """Whether ``stream`` sends the same bytes each time it is sent: bytes, or httpx's
    multipart body whose files are bytes or seekable (httpx renders it again each
    time, from the start of each file); not an iterator, nor a file read once."""
    if isinstance(stream, httpx.ByteStream):
        return True
    if not isinstance(stream, MultipartStream):
        return False
    for field in stream.fields:
        file = getattr(field, "file", b"")  # a FileField's
        if not isinstance(file, str | bytes) and not (
                callable(getattr(file, "seekable", None)) and file.seekable()):
            return False
    return True


def _tls_failure(call: Call, backend: Backend, request: httpx.Request,
                 error: ssl.SSLError) -> httpx.ReadError:
    # httpcore's async path lets TLS alerts that arrive after the handshake (a server
    # refusing a client certificate under TLS 1.3) escape as a bare ssl.SSLError,
    # where the sync path raises httpx.ReadError: map it once, here, so retry,
    # breakers and outlier detection see one kind of transport failure.
    return httpx.ReadError(f"service {call.service.name!r}: TLS with {backend.address} "
                           f"failed: {error}", request=request)


async def asend(backend: Backend, call: Call) -> httpx.Response:
    target = call.pools.get(backend)
    request = call.request
    # Marked before sending: its bytes may leave while a hedge is deciding whether
    # to start (cancellation, a per-attempt Timeout, is covered too).
    call.sent()
    try:
        if target.origin is not None and isinstance(request.stream, httpx.ByteStream):
            response = await call.exchange(target)
        else:
            request = call.attempt(target)
            response = await target.transport.handle_async_request(request)
    except _UNSENT as error:
        call.sent(False)
        name_failure(error, call.service.name, backend.address)
        at_deadline(error, call.ctx or _current.get())
        raise
    except ssl.SSLError as error:
        raise _tls_failure(call, backend, request, error) from error
    except httpx.TransportError as error:
        name_failure(error, call.service.name, backend.address)
        at_deadline(error, call.ctx or _current.get())
        raise
    record_http_status(response.status_code)
    if target.prefix and 300 <= response.status_code < 400:
        moved = relocated(response.headers.raw, target.prefix.decode("ascii"))
        if moved is not None:
            response.headers = httpx.Headers(moved)
    if is_failure(response.status_code):
        kept = KeptBody()
        try:
            # httpx types aiter_raw() as an iterator; it is a generator, closed here
            # when the body is cut short.
            chunks_ = cast(AsyncGenerator[bytes, None], response.aiter_raw())
            async with aclosing(chunks_) as chunks:
                async for chunk in chunks:
                    if kept.full(chunk):
                        break
        finally:
            await response.aclose()
        raw = kept.raw()
        raise call.failure(backend, response, raw)
    return response


def send(backend: Backend, call: Call) -> httpx.Response:
    target = call.pools.get(backend)
    request = call.request
    try:
        if target.origin is not None:
            response = call.exchange_sync(target)
        else:
            request = call.attempt(target)
            response = target.transport.handle_request(request)
    except _UNSENT as error:
        name_failure(error, call.service.name, backend.address)
        at_deadline(error, call.ctx or _current.get())
        raise
    except ssl.SSLError as error:
        call.sent()
        raise _tls_failure(call, backend, request, error) from error
    except Exception as error:
        call.sent()
        if isinstance(error, httpx.TransportError):
            name_failure(error, call.service.name, backend.address)
        at_deadline(error, call.ctx or _current.get())
        raise
    call.sent()
    record_http_status(response.status_code)
    if target.prefix and 300 <= response.status_code < 400:
        moved = relocated(response.headers.raw, target.prefix.decode("ascii"))
        if moved is not None:
            response.headers = httpx.Headers(moved)
    if is_failure(response.status_code):
        try:
            raw = _capped(response.iter_raw())
        finally:
            response.close()
        raise call.failure(backend, response, raw)
    return response


def _capped(chunks: Iterable[bytes]) -> bytes:
    kept = KeptBody()
    for chunk in chunks:
        if kept.full(chunk):
            break
    return kept.raw()


def outcome(error: BaseException) -> httpx.Response:
    """The response to return for a pipeline error, or re-raise it."""
    if isinstance(error, ResponseStatusError) and error.response is not None:
        return error.response  # type: ignore[no-any-return]
    if isinstance(error, ResendRefused) and error.error is not None:
        return outcome(error.error)
    raise error
