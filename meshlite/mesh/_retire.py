"""Retiring services a mesh no longer routes to: those a config change took out of
the registry (removed, or replaced by a rebuilt one), and the one an override made
once the override ends (``mesh.override``). Each is drained (its calls in flight
finish, up to the mesh's ``drain_timeout``), then its components stop, its
connection pools close and the mesh lets go of it (its hooks, its metrics series).

:func:`meshlite.config._apply.finish` starts a :func:`retire` task for each service
a reload retired; a mesh that is not open retires them at once
(:func:`retire_now`). An override's service is retired by :func:`retire_soon`.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

from .._inflight import count
from .._tasks import kept
from ..routing._lifecycle import stop_all
from ..routing._service import Service

if TYPE_CHECKING:
    from ._mesh import Mesh

__all__ = ["retire", "retire_now", "retire_soon"]

_DRAIN_POLL = 0.01

def _idle(mesh: Mesh, service: Service) -> bool:
    # No call in flight (one waiting for its retry's backoff has no attempt in flight),
    # no attempt in flight (a losing hedge's, cancelled as its call returned, may end
    # after it), and no connection of its pools in use (a response body still being
    # read after its attempt ended).
    return (not count(service._calls) and not any(e.in_flight for e in service.endpoints)
            and not mesh.pools_busy(service))


async def retire(mesh: Mesh, service: Service) -> None:
    """Drain ``service`` (out of use): wait up to the mesh's ``drain_timeout`` for its
    calls in flight, then stop its components, and have the mesh let go of it
    (``Mesh.forget_service``: its metrics, its hooks) and close its connection pools.
    Cancelling skips the wait, not the cleanup."""
    components = mesh.release_components(service)
    try:
        clock = mesh.clock
        deadline = clock.monotonic() + mesh.drain_timeout
        while not _idle(mesh, service) and (left := deadline - clock.monotonic()) > 0:
            await clock.asleep(min(_DRAIN_POLL, left))
    finally:
        await stop_all(components)
        if mesh.forget_service(service):
            await mesh.close_service_pools(service)


def retire_now(mesh: Mesh, services: list[Service]) -> None:
    """Retire services without waiting (a mesh that is not open, or services no call
    runs on): let go of them and close their pools."""
    for service in services:
        if mesh.forget_service(service):
            mesh.close_service_pools_now(service)


def retire_soon(mesh: Mesh, service: Service) -> None:
    """Retire ``service`` (an override's, which ended) from where the caller runs: at
    once when no call runs on it; else by a :func:`retire` task on the running event
    loop, or (none runs here: a sync caller) on an event loop of its own, in a daemon
    thread."""
    if _idle(mesh, service):
        retire_now(mesh, [service])
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        threading.Thread(target=asyncio.run, args=(retire(mesh, service),),
                         name="meshlite-retire", daemon=True).start()
        return
    kept(retire(mesh, service))
