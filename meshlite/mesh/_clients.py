"""A mesh's HTTP facades: the httpx and aiohttp clients that route a service's
requests, and the connection pools they share.

A mixin of :class:`meshlite.Mesh`; the HTTP layer (``meshlite._http``) is imported
when the first client is made, and sees the mesh only through its dispatcher protocol.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, cast

from .._extras import requires_extra
from .._fork import fork_safe
from ..routing._service import Service

if TYPE_CHECKING:
    import aiohttp
    import httpx

    from .._http._dispatcher import Dispatcher
    from ..routing._events import MeshClosedError

__all__ = ["MeshClients"]

_HTTP_LOCK = fork_safe(threading.Lock())  # makes each mesh's HTTP pool registry once


class MeshClients:
    """``mesh.http``, ``mesh.http_sync``, ``mesh.aiohttp`` and their pools (mixed into
    ``Mesh``)."""

    _http: Any
    _refusing: bool

    if TYPE_CHECKING:
        def _target(self, name: str) -> Any: ...  # MeshCalls': raises on an unknown name
        def _refused(self) -> MeshClosedError: ...  # MeshCalls'

    def http_pools(self, service: Service, is_async: bool) -> Any:
        """The connection pools (one per backend) of ``service``'s async or sync HTTP
        clients: the HTTP layer's, held here so that closing the mesh closes them.

        Raises:
            MeshClosedError: the mesh is closing or closed and its pools are gone: a
                registry made now would be closed by no one (so a closed mesh's
                clients refuse every request, passthrough ones too).
        """
        http = self._http
        if http is None:
            if self._refusing:
                raise self._refused()
            from .._http._pools import MeshPools

            with _HTTP_LOCK:
                http = self._http
                if http is None:
                    http = self._http = MeshPools()
        return http.get(service, is_async)

    def http(self, name: str, **httpx_kwargs: Any) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` whose requests to relative URLs are routed to the
        backends of service ``name`` through its pipeline (see :mod:`meshlite.http`).

        Raises:
            ConfigError: no such service, or ``transport=``, ``mounts=`` or ``proxy=``
                given (a proxy for the backends is the service's
                ``http_pool={"proxy": ...}``).
            ModuleNotFoundError: the ``meshlite-mesh[http]`` extra is not installed.
        """
        self._target(name)
        with requires_extra("mesh.http()", "http"):
            from .._http._transport import async_client

        return async_client(cast("Dispatcher", self), name, httpx_kwargs)

    def http_sync(self, name: str, **httpx_kwargs: Any) -> httpx.Client:
        """Sync twin of :meth:`http`: an ``httpx.Client``."""
        self._target(name)
        with requires_extra("mesh.http_sync()", "http"):
            from .._http._transport import sync_client

        return sync_client(cast("Dispatcher", self), name, httpx_kwargs)

    def aiohttp(self, name: str, **session_kwargs: Any) -> aiohttp.ClientSession:
        """An ``aiohttp.ClientSession`` (the ``meshlite-mesh[aiohttp]`` extra) whose requests
        to relative URLs go through service ``name``: balancer, pipeline, outlier
        detection, metrics and spans, as for :meth:`http`. Requests to absolute URLs of
        other hosts pass through. Closing the mesh closes the session.

        Args:
            name: The service.
            **session_kwargs: Passed to ``aiohttp.ClientSession`` (``timeout=``,
                ``connector=``, ``headers=``, ``middlewares=``...); ``base_url``
                defaults to ``http://<name>/``.

        Raises:
            ConfigError: no such service, or a ``base_url`` that is not absolute.
            RuntimeError: called with no running event loop (as
                ``aiohttp.ClientSession`` needs one).
            ModuleNotFoundError: the ``meshlite-mesh[aiohttp]`` extra is not installed.
        """
        self._target(name)
        with requires_extra("mesh.aiohttp()", "aiohttp"):
            from .._http._aio_session import aiohttp_session

        return aiohttp_session(cast("Dispatcher", self), name, session_kwargs)
