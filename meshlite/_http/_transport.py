"""The transports behind ``mesh.http()`` / ``mesh.http_sync()``, and the clients'
factories (the client classes are in ``_client``)."""

from __future__ import annotations

from typing import Any

import httpx

from .._context import CallContext, _current
from .._errors import ConfigError
from .._semconv import KNOWN_METHODS
from ..routing._events import ResponseStatusError
from ..routing._route import ResendRefused
from ..routing._service import Service
from ._client import AsyncClient, Client
from ._dispatcher import Dispatcher
from ._pools import Pools
from ._send import Call, asend, outcome, send

__all__ = ["MeshTransport", "SyncMeshTransport", "async_client", "sync_client"]


class _Base:
    def __init__(self, mesh: Dispatcher, name: str, host: str) -> None:
        self._mesh = mesh
        self._name = name
        self._host = host

    def _context(self, request: httpx.Request, pools: Pools, service: Service,
                 send: Any) -> CallContext:
        call = Call(request, pools, service)
        # The operation is the method alone: it names spans and labels metrics, and a
        # path with IDs in it would make both unbounded (HTTP semantic conventions);
        # a made-up method is "HTTP", for the same reason.
        method = request.method
        ctx = CallContext(send, (call,), {}, method if method in KNOWN_METHODS else "HTTP",
                          self._name, _current.get())
        ctx.request = request
        return ctx

    def _no_http(self, fake: Any) -> ConfigError:
        return ConfigError(f"mesh.http({self._name!r}): the override {fake!r} is neither a "
                           "service, backends, nor an httpx transport", policy="routing")


class MeshTransport(_Base, httpx.AsyncBaseTransport):
    """Async transport routing each request to a backend of one mesh service.

    Requests whose URL host is the service's (``http://<name>`` by default, so
    relative URLs) are routed; others pass through unrouted. Closing it does not close
    the pools, which are shared: the mesh closes them when it closes.
    """

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        target = self._mesh.target(self._name)
        if not isinstance(target, Service):
            handle = getattr(target, "handle_async_request", None)
            if handle is None:
                raise self._no_http(target)
            return await handle(request)  # type: ignore[no-any-return]
        pools: Pools = self._mesh.http_pools(target, True)
        if request.url.host != self._host:
            passthrough: httpx.AsyncBaseTransport = pools.passthrough()
            return await passthrough.handle_async_request(request)
        ctx = self._context(request, pools, target, asend)
        try:
            return await self._mesh.dispatch(target, ctx)  # type: ignore[no-any-return]
        except (ResponseStatusError, ResendRefused) as error:
            return outcome(error)


class SyncMeshTransport(_Base, httpx.BaseTransport):
    """Sync twin of :class:`MeshTransport`, for ``mesh.http_sync()``."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        target = self._mesh.target(self._name)
        if not isinstance(target, Service):
            handle = getattr(target, "handle_request", None)
            if handle is None:
                raise self._no_http(target)
            return handle(request)  # type: ignore[no-any-return]
        pools: Pools = self._mesh.http_pools(target, False)
        if request.url.host != self._host:
            direct: httpx.BaseTransport = pools.passthrough()
            return direct.handle_request(request)
        ctx = self._context(request, pools, target, send)
        try:
            return self._mesh.dispatch_sync(target, ctx)  # type: ignore[no-any-return]
        except (ResponseStatusError, ResendRefused) as error:
            return outcome(error)


_POOL_OPTIONS: tuple[tuple[str, Any, str], ...] = (
    ("verify", True, "tls=ml.TLS(verify=..., ca_bundle=...) (or http_pool={'verify': ...})"),
    ("cert", None, "tls=ml.TLS(client_cert=..., client_key=...) (or http_pool={'cert': ...})"),
    ("limits", httpx.Limits(max_connections=100, max_keepalive_connections=20),
     "http_pool={'limits': httpx.Limits(...)}"),
    ("http1", True, "http_pool={'http1': ...}"),
    ("http2", False, "http_pool={'http2': True}"),
)
"""The client options httpx applies to the transport it makes (none when given one),
with httpx's defaults (given as such, they change nothing) and where each goes."""


def _client_args(name: str, kwargs: dict[str, Any], maker: str) -> tuple[str, str]:
    for forbidden in ("transport", "mounts"):
        if forbidden in kwargs:
            raise ConfigError(f"mesh.{maker}({name!r}): {forbidden}= cannot be given: the "
                              "mesh provides the transport", policy="routing")
    if kwargs.get("proxy") is not None:
        # httpx mounts a proxy transport of its own for every URL: the routed requests
        # would go to the proxy as http://<name>/..., past the mesh and its pipeline.
        raise ConfigError(f"mesh.{maker}({name!r}): proxy= cannot be given: httpx would "
                          "send every request, the routed ones too, to the proxy past the "
                          "mesh; to reach the backends through a proxy, give the service "
                          "http_pool={'proxy': ...}", policy="routing")
    for option, default, instead in _POOL_OPTIONS:
        if option in kwargs and kwargs[option] != default:
            # httpx builds no transport of its own when given one, and drops them
            raise ConfigError(
                f"mesh.{maker}({name!r}): {option}= would not be used: the service's "
                f"backends are reached through its own connection pools; give the "
                f"service {instead}", policy="routing")
    base_url = str(kwargs.pop("base_url", None) or f"http://{name}")
    # (httpx reads no proxy from the environment for a client given a transport, so
    # trust_env changes nothing of where requests go; False says so)
    kwargs.setdefault("trust_env", False)
    return base_url, httpx.URL(base_url).host


def async_client(mesh: Dispatcher, name: str, kwargs: dict[str, Any]) -> httpx.AsyncClient:
    """The ``httpx.AsyncClient`` behind ``mesh.http(name, **kwargs)``."""
    base_url, host = _client_args(name, kwargs, "http")
    return AsyncClient(transport=MeshTransport(mesh, name, host), base_url=base_url,
                       **kwargs)


def sync_client(mesh: Dispatcher, name: str, kwargs: dict[str, Any]) -> httpx.Client:
    """The ``httpx.Client`` behind ``mesh.http_sync(name, **kwargs)``."""
    base_url, host = _client_args(name, kwargs, "http_sync")
    return Client(transport=SyncMeshTransport(mesh, name, host), base_url=base_url,
                  **kwargs)
