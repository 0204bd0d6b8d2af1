"""``Mesh.from_config`` and ``mesh.watch``: a mesh from a file, and a file followed."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine, Mapping
from typing import Any, TypedDict, Unpack, cast

from .._audit import config_sha256
from .._clock import Clock
from .._errors import ConfigError
from .._fork import fork_safe
from ..mesh._mesh import Mesh
from ..mesh._retire import retire_now
from ._apply import apply_plan, finish, install, switch_now
from ._extras import DashboardComponent, apply_alerts, configure_telemetry
from ._load import Managed, digest, gc_paused, load_plan, managed_of, set_managed
from ._reload import open_audit, record_load
from ._source import read_text
from ._watcher import ConfigWatcher

__all__ = ["ConfigOptions", "ConfigWatcher", "MeshOptions", "mesh_from_config", "watch"]


class MeshOptions(TypedDict, total=False):
    """The keyword arguments of ``ml.Mesh`` a mesh built from a file is given as they
    are (all but ``services`` and ``clock``): the type of :func:`mesh_from_config`'s
    ``**mesh_kwargs``, so a misspelt one is a type error."""

    drain_timeout: float
    metrics: bool
    name: str | None


class ConfigOptions(MeshOptions, total=False):
    """The keyword arguments of ``ml.Mesh.from_config``: those of
    :func:`mesh_from_config` and :class:`MeshOptions`."""

    environ: Mapping[str, str] | None
    profile: str | None
    hot_reload: bool | None
    dashboard: bool
    clock: Clock | None

_Late = list[Coroutine[Any, Any, None]]

_watching = fork_safe(threading.Lock())
"""Held while ``watch`` finds or makes a mesh's config state and watcher: two threads
calling ``mesh.watch()`` at once on a mesh that follows no file apply the file once
and share one watcher (the second finds the first's). What must run on the mesh's
loop is started after it is released: the loop's thread may be the one waiting."""


def _managed(path: str, text: str, environ: Mapping[str, str] | None, profile: str | None,
             clock: Clock | None, mesh: Mesh | None = None) -> tuple[Managed, Any]:
    others = mesh.registered_now() if mesh is not None else None
    plan = load_plan(path, environ=environ, profile=profile, text=text, others=others,
                     clock=clock)
    return Managed(path, plan, environ, profile, clock, digest(text),
                   sha256=config_sha256(text)), plan


def mesh_from_config(path: str | os.PathLike[str], *,
                     environ: Mapping[str, str] | None = None, profile: str | None = None,
                     hot_reload: bool | None = None, dashboard: bool = True,
                     clock: Clock | None = None, **mesh_kwargs: Unpack[MeshOptions]) -> Mesh:
    """Build a mesh from a YAML or TOML config file (``ml.Mesh.from_config``).

    Args:
        path: The config file.
        environ: Environment for ``${VAR}``, ``MESHLITE_ENV`` and ``MESHLITE_*``
            overrides (default ``os.environ``).
        profile: The profile to overlay (default ``MESHLITE_ENV``).
        hot_reload: Watch the file while the mesh is open (default: the file's
            ``hot_reload``).
        dashboard: Serve the file's ``dashboard:`` while the mesh is open; False
            for a caller that serves the dashboard itself (``meshlite dashboard``).
        clock: Clock of the mesh and of every policy built (tests).
        **mesh_kwargs: Other ``ml.Mesh`` arguments (``drain_timeout`` overrides the
            file's).

    Returns:
        The mesh, not yet open. A ``telemetry:`` section is applied at once, the
        ``alerts:`` rules are given to ``mesh.alerts``.

    Raises:
        ConfigError: every problem of the file at once (``.errors``), with values
            from the environment masked.
    """
    path = os.path.abspath(os.fspath(path))
    text = read_text(path)
    with gc_paused():
        managed, plan = _managed(path, text, environ, profile, clock)
    services = [install(sp) for sp in plan.services.values()]
    managed.drain_from_file = "drain_timeout" not in mesh_kwargs
    if plan.config.drain_timeout is not None:
        mesh_kwargs.setdefault("drain_timeout", plan.config.drain_timeout)
    mesh = Mesh(services, clock=clock, **mesh_kwargs)
    set_managed(mesh, managed)
    open_audit(mesh, plan)
    record_load(mesh, managed)
    managed.serve_dashboard = dashboard
    _extras(mesh, managed, [])  # (not open: nothing runs late)
    reload = plan.config.hot_reload
    if reload.enabled if hot_reload is None else hot_reload:
        managed.watcher = ConfigWatcher(mesh, managed, step_ms=reload.step_ms,
                                        debounce_ms=reload.debounce_ms)
        mesh.attach(managed.watcher)
    return mesh


def _extras(mesh: Mesh, managed: Managed, late: _Late) -> None:
    """Apply what the file asks beside services: telemetry, alerts, the dashboard."""
    plan = managed.plan
    if plan.top.telemetry is not None:
        configure_telemetry(plan.top.telemetry)
    apply_alerts(mesh, plan.top.alerts)
    if plan.config.metrics is not None and mesh.metrics is not None:
        mesh.metrics.service_label = plan.config.metrics.service_label
    section = plan.config.dashboard
    if managed.serve_dashboard and section is not None and section.enabled:
        managed.dashboard = DashboardComponent(mesh, section, os.path.dirname(managed.path))
        mesh.attach(managed.dashboard)
        if mesh.is_open:
            late.append(_start_late(mesh, managed.dashboard))


def watch(mesh: Mesh, path: str | os.PathLike[str], *,
          environ: Mapping[str, str] | None = None, profile: str | None = None,
          step_ms: int | None = None) -> ConfigWatcher:
    """Make ``mesh`` follow a config file: apply it now, then every valid change of it
    while the mesh is open (``mesh.watch(path)``).

    The file's services are added to the mesh (a service of the same name is
    replaced); services registered in code and absent from the file are left alone.
    Call it before opening the mesh, or from the thread running the mesh's loop.

    Returns:
        The watcher (a lifecycle component of the mesh).

    Raises:
        ConfigError: the file is invalid now (nothing was changed), or the mesh
            already follows another file.
    """
    full = os.path.abspath(os.fspath(path))
    late: _Late = []
    try:
        with _watching:
            return _watch(mesh, full, environ, profile, step_ms, late)
    finally:  # (what was applied before an error is finished as well)
        for coro in late:  # (the mesh's config state was set before any)
            _late(mesh, coro, cast(Managed, managed_of(mesh)))


def _watch(mesh: Mesh, full: str, environ: Mapping[str, str] | None, profile: str | None,
           step_ms: int | None, late: _Late) -> ConfigWatcher:
    managed = managed_of(mesh)
    if managed is not None and managed.path != full:
        raise ConfigError(f"mesh.watch: this mesh already follows {managed.path}; a mesh "
                          "follows one config file", policy="config")
    if managed is None:
        text = read_text(full)
        managed, plan = _managed(full, text, environ, profile, None, mesh)
        changes = apply_plan(mesh, None, plan)
        switch_now(mesh, changes)  # none: a first plan has no running services
        set_managed(mesh, managed)
        open_audit(mesh, plan)
        record_load(mesh, managed)
        _finish(mesh, changes, managed, late)
        _extras(mesh, managed, late)
    if managed.watcher is None:
        section = managed.plan.config.hot_reload
        managed.watcher = ConfigWatcher(mesh, managed, step_ms=step_ms or section.step_ms,
                                        debounce_ms=section.debounce_ms)
        mesh.attach(managed.watcher)
        if mesh.is_open:
            late.append(_start_late(mesh, managed.watcher))
    return managed.watcher


async def _start_late(mesh: Mesh, component: ConfigWatcher | DashboardComponent) -> None:
    await component.start()
    mesh.mark_started(component)


def _finish(mesh: Mesh, changes: Any, managed: Managed, late: _Late) -> None:
    if not mesh.is_open:
        retire_now(mesh, changes.retired)
        return
    late.append(finish(mesh, changes, managed.drains))


def _late(mesh: Mesh, coro: Any, managed: Managed) -> None:
    """Run ``coro`` on the open mesh's loop: its loop thread, or the running loop."""
    thread = mesh.loop_thread
    if thread is not None:
        thread.run(coro)
        return
    task = asyncio.get_running_loop().create_task(coro)
    managed.drains.add(task)
    task.add_done_callback(managed.drains.discard)
