"""The seam between the HTTP layer and the mesh: what a mesh client needs of it."""

from __future__ import annotations

from typing import Any, Protocol

from .._context import CallContext
from ..routing._service import Service

__all__ = ["Dispatcher"]


class Dispatcher(Protocol):
    """What ``mesh.http()``, ``mesh.http_sync()`` and ``mesh.aiohttp()`` call: a
    :class:`meshlite.Mesh` is one. The HTTP layer knows nothing else of the mesh."""

    def target(self, name: str) -> Any:
        """The service called ``name`` now, or an override's fake.

        Raises:
            ConfigError: no such service.
        """
        ...

    def http_pools(self, service: Service, is_async: bool) -> Any:
        """The connection pools of ``service``'s async or sync clients (a
        ``Pools``, made on first use, closed when the dispatcher closes)."""
        ...

    async def dispatch(self, service: Service, ctx: CallContext) -> Any:
        """Run ``ctx`` through ``service``'s pipeline and routing."""
        ...

    def dispatch_sync(self, service: Service, ctx: CallContext) -> Any:
        """Sync twin of :meth:`dispatch`."""
        ...

    def adopt_session(self, session: Any) -> None:
        """Close ``session`` (an ``aiohttp.ClientSession``) when the mesh closes."""
        ...
