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
from typing import Any

import aiohttp
from aiohttp import hdrs
from aiohttp.client_middlewares import ClientHandlerType
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from .._context import CallContext, _current
from .._errors import ConfigError, MeshClosedError
from .._memo import remember
from .._printable import url_shown
from .._semconv import KNOWN_METHODS
from ..policies._hedge_race import refuse_hedges
from ..routing._backend import Backend
from ..routing._events import ResponseStatusError
from ..routing._route import ResendRefused
from ..routing._service import Service
from ._aio_adapt import (
    close_at_its_loop_end,
    closed_by_mesh,
    cut_by_close,
    read_capped,
    relocate,
    remembering_urls,
    routing_every_request,
    timing_totals,
    without_client_instrumentation,
    without_resend,
)
from ._aio_forget import Forgetting
from ._dispatcher import Dispatcher
from ._outgoing import (
    IDEMPOTENT_METHODS,
    answered,
    at_deadline,
    check_base_url,
    is_failure,
    name_failure,
    parse_retry_after,
    stamp,
)

__all__ = ["AiohttpResponseError", "aiohttp_session"]

_UNSENT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
# Failures before a byte of the request left: resending is always safe.


_URLS = 256
"""Paths per backend whose full ``yarl.URL`` a session remembers."""

_RELATIVE_URLS = 256
"""Relative URL strings whose ``yarl.URL`` joined to the base URL a session remembers."""


class AiohttpResponseError(ResponseStatusError, ConnectionError):
    """A 5xx or 429 answer to a ``mesh.aiohttp()`` request, raised inside the
    pipeline. Also a ``ConnectionError``, so Retry's default predicate retries it
    (for requests that may be resent), as ``HttpResponseError`` is an
    ``httpx.TransportError`` for ``mesh.http()``."""


class _Target:
    """What a session sends to one backend with: its URL origin (plus path prefix),
    ``Host`` and TLS context, and the URLs made for the paths sent there."""

    __slots__ = ("netloc", "origin", "prefix", "ssl", "urls")

    def __init__(self, origin: str, prefix: str, netloc: str,
                 context: ssl.SSLContext | bool) -> None:
        self.origin = origin + prefix  # scheme://host:port plus the backend's path prefix
        self.prefix = prefix
        self.netloc = netloc
        self.ssl = context
        # Parsing a URL is a tenth of the mesh's own work on a request; the paths a
        # service is called on repeat (a cache of at most _URLS: meshlite._memo).
        self.urls: dict[str, URL] = {}

    def url(self, path: str) -> URL:
        """The URL of ``path`` (the request's raw path and query) on this backend."""
        urls = self.urls
        found = urls.get(path)
        if found is None:
            found = remember(urls, path, URL(self.origin + path, encoded=True), _URLS)
        return found


async def _attempt(backend: Backend, request: aiohttp.ClientRequest,
                   handler: ClientHandlerType, route: _Route, service: Service,
                   path: str, replay: bool) -> aiohttp.ClientResponse:
    # One attempt of a routed request (ctx.fn; the rest are ctx.args, set once per
    # call by _Route: the request, aiohttp's handler, the route, the service, the
    # request's raw path and query, and whether it may be sent twice).
    ctx = _current.get()  # this attempt's context (a retry's, say)
    # A retry due after the session closed (aiohttp's handler would fail an assert:
    # no connector). A first attempt passed aiohttp's own check a moment ago.
    if ctx is not None and ctx.attempt > 1 and request.session.closed:
        raise _closed(request.session, service)
    # route.target() and its url(), their remembered cases inlined: every attempt
    # asks (a _Target is always true; a miss makes and remembers it there).
    target = route._targets.get((service, backend.address)) or route.target(service, backend)
    url = target.urls.get(path)
    if url is None:
        url = target.url(path)
    request.url = url
    headers = request.headers
    headers[hdrs.HOST] = target.netloc
    left = None if ctx is None or ctx.deadline is None else ctx.remaining()
    span = stamp(headers, service._headers, request.method, url, left, service.caller())
    request._ssl = target.ssl
    try:
        if left is None:
            response = await handler(request)
        else:
            async with asyncio.timeout(left):
                response = await handler(request)
    except _UNSENT as error:
        name_failure(error, service.name, backend.address)
        raise
    except BaseException as error:
        # Cancellation too (a per-attempt Timeout): the request may have left.
        if not replay and ctx is not None:
            ctx.no_resend = True
        if cut_by_close(request.session, error):  # (not a server's disconnection)
            cut = aiohttp.ClientConnectionError(
                "connection closed: the mesh was closed while the request was in flight")
            name_failure(cut, service.name, backend.address)
            raise cut from error
        if isinstance(error, aiohttp.ClientError):
            name_failure(error, service.name, backend.address)
        at_deadline(error, ctx)
        raise
    if not replay and ctx is not None:
        ctx.no_resend = True
    status = response.status
    if span is not None:
        answered(span, status)
    if target.prefix and 300 <= status < 400:
        relocate(response, target.prefix)
    if is_failure(status):
        await _failure(backend, request, service, path, response)
    return response


async def _attempt_env_proxied(backend: Backend, request: aiohttp.ClientRequest,
                               handler: ClientHandlerType, route: _Route, service: Service,
                               path: str, replay: bool) -> aiohttp.ClientResponse:
    # The attempt of a session with trust_env=True: aiohttp picked the proxy from
    # HTTP_PROXY/HTTPS_PROXY/NO_PROXY for the service's URL (http://users/...), but the
    # request goes to a backend, so the choice is made again for the backend's URL, as a
    # plain session sending there would make it (NO_PROXY naming the backend's host:
    # straight to it). A proxy given as proxy= (the request's or the session's) stays:
    # aiohttp gives it proxy headers, never one from the environment.
    if request.proxy is None or request.proxy_headers is None:
        url = route.target(service, backend).url(path)
        try:
            proxy, auth = await asyncio.to_thread(get_env_proxy_for_url, url)
        except LookupError:  # no proxy for it, or NO_PROXY names its host
            proxy, auth = None, None
        request.update_proxy(proxy, auth, None)
    return await _attempt(backend, request, handler, route, service, path, replay)


def _closed(session: aiohttp.ClientSession, service: Service) -> Exception:
    """The error of an attempt (a retry, say) due once its session has closed."""
    name = service.name
    if closed_by_mesh(session):
        return MeshClosedError(
            f"service {name!r}: its mesh.aiohttp() session was closed (the mesh closed, "
            "or the session's event loop ended) while the call was in flight; it is not "
            "sent again", service=name, policy="mesh")
    # Closed by its user: aiohttp's own words for a request on a closed session.
    return RuntimeError(f"Session is closed (service {name!r}: the mesh.aiohttp() session "
                        "was closed while the call was in flight; it is not sent again)")


def _no_hedge(ctx: CallContext) -> ConfigError:
    return ConfigError(f"mesh.aiohttp({ctx.service!r}): ml.Hedge cannot race attempts "
                       "of an aiohttp request; use mesh.http() for a hedged service",
                       policy="routing")


# Attempts re-point one ClientRequest in turn; racing ones would share it. A Hedge
# refuses before a backend is picked for a hedge (and an attempt pays no check).
refuse_hedges(_attempt, _no_hedge)
refuse_hedges(_attempt_env_proxied, _no_hedge)


async def _failure(backend: Backend, request: aiohttp.ClientRequest, service: Service,
                   path: str, response: aiohttp.ClientResponse) -> None:
    """Read a failed answer's body, at most :data:`MAX_FAILURE_BODY` bytes (kept by the
    response: the caller reads it again), and raise it as an
    :class:`AiohttpResponseError`."""
    try:
        await read_capped(response)
    except BaseException:
        response.close()
        raise
    raise AiohttpResponseError(
        f"service {service.name!r}: {backend.address} answered {request.method} "
        f"{url_shown(path)} with {response.status}",  # (a query's token not shown)
        response=response, status_code=response.status, address=backend.address,
        service=service.name,
        retry_after=parse_retry_after(response.headers.get("Retry-After"),
                                          response.headers.get("Date")))


class _Route:
    """The middleware of one session: routes requests to the service's host."""

    def __init__(self, dispatcher: Dispatcher, name: str, host: str,
                 env_proxies: bool = False) -> None:
        self.dispatcher = dispatcher
        self.name = name
        self.host = host
        self.attempt = _attempt_env_proxied if env_proxies else _attempt
        """The function of each attempt (a session with ``trust_env=True`` picks its
        proxy from the environment for each backend's URL)."""
        self._targets: dict[tuple[Service, str], _Target] = {}
        # The service the targets are of (a removed backend's are dropped by forget,
        # which the service's watcher calls).
        self._service: Service | None = None
        self._find, self._dispatch = dispatcher.target, dispatcher.dispatch
        self.forgetting: Forgetting | None = None
        """Drops what the session keeps of backends the service no longer has (set
        once the session is made)."""

    def target(self, service: Service, backend: Backend) -> _Target:
        """Where ``backend`` of ``service`` is (remembered per service object, for
        the service's current backends only).

        Raises:
            ConfigError: the backend's address is not an http(s) base URL, or has a
                query or fragment.
        """
        key = (service, backend.address)
        found = self._targets.get(key)
        if found is None:  # a new backend, or a new service object (a reload)
            if service is not self._service:  # the old one's URLs go with it
                self._targets = {k: v for k, v in self._targets.items() if k[0] is service}
                self._service = service
                if self.forgetting is not None:
                    self.forgetting.watch(service)
            check_base_url(backend.address, "mesh.aiohttp()")
            url = URL(backend.address)
            context = service.ssl_context() if url.scheme == "https" else None
            found = self._targets[key] = _Target(
                str(url.origin()), url.raw_path.rstrip("/"), url.raw_authority,
                True if context is None else context)
        return found

    def forget(self, service: Service, addresses: set[str]) -> None:
        """Drop the URL parts of ``addresses``, backends ``service`` no longer has."""
        self._targets = {k: v for k, v in list(self._targets.items())
                         if k[0] is not service or k[1] not in addresses}

    async def __call__(self, request: aiohttp.ClientRequest, handler: ClientHandlerType
                       ) -> aiohttp.ClientResponse:
        url = request.url
        if url.raw_host != self.host:
            return await handler(request)
        name = self.name
        service = self._find(name)
        if not isinstance(service, Service):
            raise ConfigError(f"mesh.aiohttp({name!r}): the override {service!r} is "
                              "not a service or backends", policy="routing")
        method = request.method  # the operation (a made-up one: "HTTP"), as mesh.http()'s
        # Whether the request may be sent again once it may have reached a backend (in
        # this function: every request asks): a body aiohttp can send twice, and an
        # idempotent method (or Idempotency-Key, or a service that retries them all).
        body = request._body
        replay = (body is None or isinstance(body, aiohttp.payload.BytesPayload)) and (
            method in IDEMPOTENT_METHODS or service.retry_non_idempotent
            or "Idempotency-Key" in request.headers)
        ctx = CallContext(self.attempt, (request, handler, self, service, url.raw_path_qs,
                                     replay), {}, method if method in KNOWN_METHODS else "HTTP",
                          name, _current.get())
        ctx.request = request
        try:
            return await self._dispatch(service, ctx)  # type: ignore[no-any-return]
        except (ResponseStatusError, ResendRefused) as error:
            return _outcome(error)
        except aiohttp.ClientError:
            raise
        except OSError as error:
            # What aiohttp makes of an OSError leaving a request: a bare TimeoutError
            # as it is (its cause kept), else a ClientOSError. (No local holds the
            # error raised: this frame is in its traceback, the two would be a cycle.)
            if error.errno is None and isinstance(error, TimeoutError):
                raise
            raise _client_error(error) from error


def _client_error(error: OSError) -> aiohttp.ClientOSError:
    """The ``ClientOSError`` aiohttp makes of ``error`` leaving a request, made here so
    that its notes stay on it: an error ``ml.FaultInjection`` injected says so."""
    made = aiohttp.ClientOSError(*error.args)
    for note in getattr(error, "__notes__", ()):
        made.add_note(note)
    return made


def _outcome(error: BaseException) -> aiohttp.ClientResponse:
    if isinstance(error, ResponseStatusError) and error.response is not None:
        return error.response  # type: ignore[no-any-return]
    if isinstance(error, ResendRefused) and error.error is not None:
        return _outcome(error.error)
    raise error


def aiohttp_session(dispatcher: Dispatcher, name: str, kwargs: dict[str, Any]
                    ) -> aiohttp.ClientSession:
    """The ``aiohttp.ClientSession`` behind ``mesh.aiohttp(name, **kwargs)``."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(f"mesh.aiohttp({name!r}) makes an aiohttp.ClientSession, which "
                           "needs a running event loop: take it in a coroutine (an app's "
                           "lifespan, say), not at import") from None
    base_url = kwargs.pop("base_url", None) or f"http://{name}/"
    host = URL(str(base_url)).raw_host
    if not host:
        raise ConfigError(f"mesh.aiohttp({name!r}): base_url must be an absolute URL, "
                          f"got {base_url!r}", policy="routing")
    route = _Route(dispatcher, name, host, bool(kwargs.get("trust_env")))
    # The mesh routes innermost: the session's own middlewares see each request once.
    # Its bound method, not the object: calling an instance goes through its type's
    # __call__ slot, about 700 instructions a request more (dataplane_layers.py).
    middlewares = (*kwargs.pop("middlewares", ()), route.__call__)
    session = aiohttp.ClientSession(base_url=base_url, middlewares=middlewares, **kwargs)
    route.forgetting = Forgetting(session, loop, route.forget)
    without_client_instrumentation(session)
    without_resend(session)
    remembering_urls(session, _RELATIVE_URLS)
    routing_every_request(session, route.__call__, timing_totals(session, route.__call__))
    # Left open by its user, it is closed on its loop as the loop ends (the loop's
    # close would close its connections itself on uvloop, each with a warning, or
    # they would stay open until the mesh closes).
    close_at_its_loop_end(session)
    dispatcher.adopt_session(session)
    return session
