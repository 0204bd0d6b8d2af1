"""``mesh.aiohttp(name)``: an ``aiohttp.ClientSession`` whose relative URLs go
through a mesh service.

The session is aiohttp's own; a client middleware (aiohttp 3.12+) routes each
request whose URL host is the service's (``http://<name>/`` is the session's base
URL, so relative URLs are) through the service: the pipeline runs around it, and
each attempt points the same ``ClientRequest`` at the chosen backend (URL, Host,
TLS context, static headers, ``traceparent``) and sends it with aiohttp's handler,
over the session's connector. Requests to other hosts pass through untouched.

5xx and 429 answers are read (once: aiohttp keeps the body) and raised inside the
pipeline as :class:`AiohttpResponseError`, so retry, breakers and outlier detection
count them; when the pipeline gives up, the last such response is returned.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from typing import Any, NamedTuple

import aiohttp
from aiohttp import hdrs
from aiohttp.client_middlewares import ClientHandlerType
from yarl import URL

from .._context import CallContext, _current
from .._errors import ConfigError
from ..routing._backend import Backend
from ..routing._events import ResponseStatusError
from ..routing._route import ResendRefused
from ..routing._service import Service
from ._dispatcher import Dispatcher
from ._outgoing import IDEMPOTENT_METHODS, answered, is_failure, parse_retry_after, stamp

__all__ = ["AiohttpResponseError", "aiohttp_session"]

_UNSENT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
# Failures before a byte of the request left: resending is always safe.


_TARGETS = 1024
"""Backends (per service object) whose URL parts a session remembers."""


class AiohttpResponseError(ResponseStatusError, ConnectionError):
    """A 5xx or 429 answer to a ``mesh.aiohttp()`` request, raised inside the
    pipeline. Also a ``ConnectionError``, so Retry's default predicate retries it
    (for requests that may be resent), as ``HttpResponseError`` is an
    ``httpx.TransportError`` for ``mesh.http()``."""


class _Target(NamedTuple):
    origin: str  # scheme://host:port plus the backend's path prefix
    netloc: str
    ssl: ssl.SSLContext | bool


class _Call:
    """One logical request going through the pipeline (``ctx.args[0]``)."""

    __slots__ = ("handler", "path", "replay", "request", "route", "service")

    def __init__(self, request: aiohttp.ClientRequest, handler: ClientHandlerType,
                 route: _Route,
                 service: Service) -> None:
        self.request = request
        self.handler = handler
        self.route = route
        self.service = service
        self.path = request.url.raw_path_qs
        body = request._body
        self.replay = (body is None or isinstance(body, aiohttp.payload.BytesPayload)) and (
            request.method in IDEMPOTENT_METHODS or service.retry_non_idempotent
            or "Idempotency-Key" in request.headers)


async def _attempt(backend: Backend, call: _Call) -> aiohttp.ClientResponse:
    ctx = _current.get()  # this attempt's context (a hedge's own copy, say)
    if ctx is not None and ctx.hedge:
        # Attempts re-point one ClientRequest in turn; racing ones would share it.
        raise ConfigError(f"mesh.aiohttp({call.route.name!r}): ml.Hedge cannot race "
                          "attempts of an aiohttp request; use mesh.http() for a hedged "
                          "service", policy="routing")
    service = call.service
    target = call.route.target(service, backend)
    request = call.request
    request.url = URL(target.origin + call.path, encoded=True)
    headers = request.headers
    headers[hdrs.HOST] = target.netloc
    left = ctx.remaining() if ctx is not None else None
    span = stamp(headers, service._headers, request.method, request.url, left,
                 service.caller())
    request._ssl = target.ssl
    try:
        if left is None:
            response = await call.handler(request)
        else:
            async with asyncio.timeout(left):
                response = await call.handler(request)
    except _UNSENT:
        raise
    except BaseException:
        # Cancellation too (a per-attempt Timeout): the request may have left.
        _sent(call, ctx)
        raise
    _sent(call, ctx)
    answered(span, response.status)
    if is_failure(response.status):
        try:
            await response.read()  # kept by the response: the caller reads it again
        except BaseException:
            response.close()
            raise
        raise AiohttpResponseError(
            f"service {service.name!r}: {backend.address} answered {request.method} "
            f"{call.path} with {response.status}",
            response=response, status_code=response.status, address=backend.address,
            service=service.name,
            retry_after=parse_retry_after(response.headers.get("Retry-After")))
    return response


def _sent(call: _Call, ctx: CallContext | None) -> None:
    if not call.replay and ctx is not None:
        ctx.no_resend = True


class _Route:
    """The middleware of one session: routes requests to the service's host."""

    def __init__(self, dispatcher: Dispatcher, name: str, host: str) -> None:
        self.dispatcher = dispatcher
        self.name = name
        self.host = host
        self._targets: dict[tuple[Service, str], _Target] = {}

    def target(self, service: Service, backend: Backend) -> _Target:
        key = (service, backend.address)
        found = self._targets.get(key)
        if found is None:
            if len(self._targets) >= _TARGETS:  # reloads and discovery make new ones
                self._targets.clear()
            url = URL(backend.address)
            if url.scheme not in ("http", "https") or not url.host:
                raise ConfigError(
                    f"backend {backend.address!r} is not an http(s) base URL, so "
                    "mesh.aiohttp() cannot send to it; use mesh.call() for other "
                    "backends", policy="routing")
            context = service.ssl_context() if url.scheme == "https" else None
            origin = str(url.origin()) + url.raw_path.rstrip("/")
            found = self._targets[key] = _Target(
                origin, url.raw_authority, True if context is None else context)
        return found

    async def __call__(self, request: aiohttp.ClientRequest, handler: ClientHandlerType
                       ) -> aiohttp.ClientResponse:
        if request.url.raw_host != self.host:
            return await handler(request)
        service = self.dispatcher.target(self.name)
        if not isinstance(service, Service):
            raise ConfigError(f"mesh.aiohttp({self.name!r}): the override {service!r} is "
                              "not a service or backends", policy="routing")
        call = _Call(request, handler, self, service)
        ctx = CallContext(_attempt, (call,), {}, request.method, self.name, _current.get())
        ctx.request = request
        try:
            return await self.dispatcher.dispatch(service, ctx)  # type: ignore[no-any-return]
        except (ResponseStatusError, ResendRefused) as error:
            return _outcome(error)


def _outcome(error: BaseException) -> aiohttp.ClientResponse:
    if isinstance(error, ResponseStatusError) and error.response is not None:
        return error.response  # type: ignore[no-any-return]
    if isinstance(error, ResendRefused) and error.error is not None:
        return _outcome(error.error)
    raise error


def aiohttp_session(dispatcher: Dispatcher, name: str, kwargs: dict[str, Any]
                    ) -> aiohttp.ClientSession:
    """The ``aiohttp.ClientSession`` behind ``mesh.aiohttp(name, **kwargs)``."""
    base_url = kwargs.pop("base_url", None) or f"http://{name}/"
    host = URL(str(base_url)).raw_host
    if not host:
        raise ConfigError(f"mesh.aiohttp({name!r}): base_url must be an absolute URL, "
                          f"got {base_url!r}", policy="routing")
    route = _Route(dispatcher, name, host)
    # The mesh routes innermost: the session's own middlewares see each request once.
    middlewares = (*kwargs.pop("middlewares", ()), route)
    session = aiohttp.ClientSession(base_url=base_url, middlewares=middlewares, **kwargs)
    _without_client_instrumentation(session)
    dispatcher.adopt_session(session)
    return session


def _without_client_instrumentation(session: aiohttp.ClientSession) -> None:
    # opentelemetry-instrumentation-aiohttp-client adds a trace config to every new
    # session, whose CLIENT span would start before the mesh's middleware and wrap the
    # whole logical call (retries included) above the mesh's own CLIENT span per
    # attempt. The mesh's session opts out through the instrumentation's public call;
    # the instrumentation is used only when the application already imported it.
    module = sys.modules.get("opentelemetry.instrumentation.aiohttp_client")
    if module is not None:
        module.AioHttpClientInstrumentor.uninstrument_session(session)
