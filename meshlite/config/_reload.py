"""Reloading on demand (``mesh.reload()``, the dashboard's admin API) and the audit
records of a config's first load.

A reload asked for goes through the same path as hot reload (the mesh's
:class:`ConfigWatcher`, or one made for the purpose that never watches), so it is
validated, applied, logged, counted and audited exactly the same way.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .._audit import ACTOR_API, AuditLog
from .._errors import ConfigError
from ._build import Plan
from ._load import Managed, managed_of
from ._watcher import ConfigWatcher

if TYPE_CHECKING:
    from ..mesh._mesh import Mesh

__all__ = ["open_audit", "record_load", "reload_blocking", "reload_now"]


def _managed(mesh: Mesh) -> Managed:
    managed = managed_of(mesh)
    if managed is None:
        raise ConfigError("Mesh.reload: this mesh follows no config file; build it with "
                          "ml.Mesh.from_config(path) or call mesh.watch(path) first",
                          policy="config")
    return managed


async def _reload(mesh: Mesh, managed: Managed, actor: str) -> str:
    reloader = managed.watcher or managed.reloader
    if reloader is None:
        reloader = managed.reloader = ConfigWatcher(mesh, managed)
    return await reloader.reload_as(actor, manual=True)


def _running() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def reload_now(mesh: Mesh, *, actor: str = ACTOR_API) -> str:
    """Re-read and apply the file ``mesh`` follows, on the mesh's loop thread when it
    has one.

    Returns:
        ``"applied"``, ``"unchanged"`` or ``"rejected"``.

    Raises:
        ConfigError: the mesh follows no config file.
    """
    managed = _managed(mesh)
    thread = mesh.loop_thread
    if thread is not None and _running() is not thread.loop:
        return await thread.arun(_reload(mesh, managed, actor))
    return await _reload(mesh, managed, actor)


def reload_blocking(mesh: Mesh, *, actor: str = ACTOR_API) -> str:
    """:func:`reload_now` from sync code (``mesh.reload_sync()``).

    Raises:
        ConfigError: the mesh follows no config file, or it is open on an event loop
            other than its own loop thread (await ``mesh.reload()`` there).
    """
    managed = _managed(mesh)
    thread, running = mesh.loop_thread, _running()
    if thread is not None and running is not thread.loop:
        return thread.run(_reload(mesh, managed, actor))
    if running is not None or mesh.is_open:
        raise ConfigError("Mesh.reload_sync: the mesh is open on an event loop; use "
                          "await mesh.reload() on that loop", policy="config")
    return asyncio.run(_reload(mesh, managed, actor))


def open_audit(mesh: Mesh, plan: Plan) -> None:
    """Give ``mesh`` the audit log the file's ``audit:`` section names, if any."""
    path = plan.top.audit
    if path is not None:
        mesh.audit = AuditLog(path)


def record_load(mesh: Mesh, managed: Managed) -> None:
    """Audit the first load of a config into ``mesh`` (``from_config``, ``watch``)."""
    log = mesh.audit
    if log is not None:
        log.record(actor=ACTOR_API, action="config.load", target=managed.path,
                   result="applied", new_sha256=managed.sha256 or None,
                   details={"services": sorted(managed.plan.services)},
                   mask=managed.plan.document.secrets.mask)
