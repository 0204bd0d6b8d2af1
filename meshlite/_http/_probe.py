"""The HTTP health check: ``GET <address><path>`` on every backend, 2xx is healthy.

It lives with the HTTP layer (routing knows only :class:`HealthCheck`, whose
``for_service`` hook lets this check pick up a service's TLS context and static
headers). httpx is imported when a probe session opens, never before.

A session is one ``httpx.AsyncClient`` on meshlite's aiohttp wire, as
``mesh.http()`` is: httpx's own stack cost about 1.3 ms of CPU a probe against
0.2 ms here (``benchmarks/topology.py``), and with its 20 idle connections a
client, a service of 50 backends opened 30 connections again every round. Each
backend keeps its idle connection from one round to the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from .._extras import requires_extra
from .._printable import error_shown, url_shown
from .._validate import fail
from ..routing._backend import Backend
from ..routing._health import (
    DEFAULT_HEALTH_INTERVAL,
    DEFAULT_HEALTH_JITTER,
    DEFAULT_HEALTH_PATH,
    DEFAULT_HEALTH_TIMEOUT,
    HealthCheck,
    Probe,
)
from ..routing._tls import Headers

if TYPE_CHECKING:
    from ..routing._service import Service

__all__ = ["HttpHealthCheck", "http_probe_session"]


class HttpHealthCheck(HealthCheck):
    """Probe each backend with ``GET <address><path>``; a 2xx answer is healthy.

    A service's check probes with the service's ``tls`` context and static
    ``headers``.

    Args:
        path: The path probed on every backend.
        interval, timeout, healthy_threshold, unhealthy_threshold, jitter: As for
            :class:`HealthCheck`.

    Raises:
        ConfigError: a bad argument (a path must start with ``/``).
    """

    def __init__(
        self,
        path: str = DEFAULT_HEALTH_PATH,
        *,
        interval: float = DEFAULT_HEALTH_INTERVAL,
        timeout: float = DEFAULT_HEALTH_TIMEOUT,
        healthy_threshold: int = 1,
        unhealthy_threshold: int = 2,
        jitter: float = DEFAULT_HEALTH_JITTER,
    ) -> None:
        if not isinstance(path, str) or not path.startswith("/"):
            fail("HttpHealthCheck", "path", url_shown(path) if isinstance(path, str) else path,
                 "a path starting with '/'")  # (a URL's password or token not shown)
        super().__init__(
            lambda backend: None, interval=interval, timeout=timeout,
            healthy_threshold=healthy_threshold, unhealthy_threshold=unhealthy_threshold,
            jitter=jitter,
        )
        self.path = path
        self._verify: ssl.SSLContext | None = None
        self._pool: dict[str, Any] = {}  # the service's http_pool TLS and local address
        self._headers: Headers = ()

    def for_service(self, service: Service) -> HealthCheck:
        """This check probing with ``service``'s TLS context and static headers (a
        copy of the same class, when the service has either), or with the
        ``verify``, ``cert`` and ``local_address`` of its ``http_pool``, as its
        transports do. A subclass with a ``session()`` of its own probes its own way
        and is used as it is."""
        pool = {k: v for k, v in service.http_pool.items() if k in _POOL_OPTIONS}
        if service.tls is None and not service._headers and not pool:
            return self
        if type(self).session is not HttpHealthCheck.session:
            return self
        bound = copy.copy(self)
        bound._verify = service.ssl_context()
        bound._pool = pool
        bound._headers = service._headers
        return bound

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Probe]:
        """Open an HTTP client and yield the probe."""
        o = self.options
        async with http_probe_session(
                self.path, o.timeout, verify=self._verify, headers=self._headers,
                keepalive=o.interval * (1.0 + o.jitter) + o.timeout,
                pool=self._pool) as probe:
            yield probe

    def __repr__(self) -> str:
        return f"HttpHealthCheck({url_shown(self.path)!r}, interval={self.options.interval!r})"


@contextlib.asynccontextmanager
async def http_probe_session(path: str, seconds: float, *,
                             verify: ssl.SSLContext | None = None,
                             headers: Headers = (), keepalive: float = 5.0,
                             pool: Mapping[str, Any] | None = None,
                             ) -> AsyncIterator[Any]:
    """An HTTP health probe: ``probe(backend)`` returns None on a 2xx answer to
    ``GET <address><path>``, else why the backend is unhealthy. ``verify`` and
    ``headers`` are the service's TLS context and static headers, ``pool`` the
    ``verify``, ``cert`` and ``local_address`` of its ``http_pool`` (used without
    ``verify``); an idle connection is kept ``keepalive`` seconds (the next round's
    probe reuses it)."""
    with requires_extra("HttpHealthCheck", "http"):
        import httpx

        from ._aio_wire import AiohttpTransport
        from ._pools import tls_context

    pool = pool or {}
    if verify is None and ("verify" in pool or "cert" in pool):
        # The service's transports read these as httpx does (_pools._ssl_of).
        given = pool.get("verify", True)
        verify = (given if isinstance(given, ssl.SSLContext) and pool.get("cert") is None
                  else httpx.create_ssl_context(verify=given, cert=pool.get("cert")))
    # No cap on idle connections (httpx keeps 20): one per backend probed is kept
    # until the next round. At most PROBE_CONNECTIONS are open at once.
    limits = httpx.Limits(max_connections=PROBE_CONNECTIONS,
                          max_keepalive_connections=None, keepalive_expiry=keepalive)
    transport = AiohttpTransport(verify or tls_context("https"), limits,
                                 pool.get("local_address"))
    # The client builds each request (its headers, timeouts) and closes the transport;
    # the transport sends it: a client's send would log an INFO line a probe on the
    # `httpx` logger, its query (a token) shown, and keep the backends' cookies.
    async with httpx.AsyncClient(timeout=seconds, trust_env=False, headers=list(headers),
                                 transport=transport) as client:

        shown = url_shown(path)  # (a token in the query is no reason to show)

        async def probe(backend: Backend) -> str | None:
            # The timeout bounds the whole exchange (httpx's bounds each read), and
            # at most MAX_PROBE_BODY bytes of the body are read, undecoded: a body
            # that never ends holds neither this round of probes nor the memory.
            request = client.build_request("GET", backend.address.rstrip("/") + path)
            try:
                async with asyncio.timeout(seconds):
                    response = await transport.handle_async_request(request)
                    try:
                        await _skim(response)
                    finally:
                        await response.aclose()
            except (TimeoutError, httpx.TimeoutException):
                return f"GET {shown} timed out after {seconds} s"
            except httpx.HTTPError as error:  # (its message may hold the URL: masked)
                return f"GET {shown} failed: {error_shown(error)}"
            if 200 <= response.status_code < 300:
                return None
            return f"GET {shown} answered {response.status_code}"

        yield probe


_POOL_OPTIONS = ("verify", "cert", "local_address")
"""The options of a service's ``http_pool`` its HTTP health check probes with."""


PROBE_CONNECTIONS = 100
"""Connections a service's probes open at once (httpx's default limit): a round of
more backends than this waits for free ones."""

MAX_PROBE_BODY = 65536
"""Bytes of a health answer's body a probe reads (a longer one is left with its
connection): the status is the answer, the body only lets the connection be reused."""


async def _skim(response: Any) -> None:
    read = 0
    chunks = response.aiter_raw()
    try:
        async for chunk in chunks:
            read += len(chunk)
            if read > MAX_PROBE_BODY:
                break
    finally:
        await chunks.aclose()
