"""Retiring the services a config change took out of the registry (removed, or
replaced by a rebuilt one): wait for their calls in flight, up to the mesh's
``drain_timeout``, then stop their components, close their connection pools and
have the mesh let go of them. :func:`meshlite.config._apply.finish` starts a
:func:`retire` task for each; a mesh that is not open retires them at once
(:func:`retire_now`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..routing._lifecycle import stop_all
from ..routing._service import Service

if TYPE_CHECKING:
    from ..mesh._mesh import Mesh

__all__ = ["close_pools", "close_pools_sync", "retire", "retire_now"]

_DRAIN_POLL = 0.01


def _idle(service: Service) -> bool:
    return not any(e.in_flight for e in service.endpoints)


async def retire(mesh: Mesh, service: Service) -> None:
    """Drain ``service`` (taken out of the registry): wait up to the mesh's
    ``drain_timeout`` for its calls in flight, then stop its components, close its
    connection pools and have the mesh let go of it (``Mesh.forget_service``: its
    metrics, its hooks). Cancelling skips the wait, not the cleanup."""
    components = mesh.release_components(service)
    try:
        clock = mesh.clock
        deadline = clock.monotonic() + mesh.drain_timeout
        while not _idle(service) and (left := deadline - clock.monotonic()) > 0:
            await clock.asleep(min(_DRAIN_POLL, left))
    finally:
        await stop_all(components)
        await close_pools(mesh, service)
        mesh.forget_service(service)


async def close_pools(mesh: Mesh, service: Service) -> None:
    """Close ``service``'s HTTP connection pools, if it made any."""
    await mesh.close_service_pools(service)


def close_pools_sync(mesh: Mesh, service: Service) -> None:
    """Close ``service``'s pools without an event loop (a mesh that is not open)."""
    mesh.close_service_pools_now(service)


def retire_now(mesh: Mesh, services: list[Service]) -> None:
    """Retire services of a mesh that is not open: nothing runs, close their pools."""
    for service in services:
        close_pools_sync(mesh, service)
        mesh.forget_service(service)
