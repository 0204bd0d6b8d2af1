"""Hot reload: watch a mesh's config file and apply each valid change.

A change is read, validated and built first; only a config without a single
problem is applied (see ``_apply``). A bad file changes nothing: the old config
keeps running, the error is logged, appended to ``mesh.reload_errors`` and emitted
as :class:`ConfigReloadFailed`. A good one increments ``mesh.config_version`` and
emits :class:`ConfigReloaded`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from .._audit import ACTOR_WATCHER, config_sha256
from .._errors import ConfigError
from .._events import Event, EventHooks
from ..discovery._watch import DEFAULT_DEBOUNCE_MS, DEFAULT_STEP_MS, FileWatch
from ._apply import apply_plan, describe, finish
from ._build import Plan
from ._events import ConfigReloaded, ConfigReloadFailed
from ._extras import DashboardComponent, apply_alerts, configure_telemetry
from ._load import Managed, digest, load_plan
from ._source import read_text

if TYPE_CHECKING:
    from .._mesh import Mesh

__all__ = ["MAX_RELOAD_ERRORS", "ConfigWatcher", "emit_mesh_event"]

MAX_RELOAD_ERRORS = 50
"""``mesh.reload_errors`` keeps this many of the latest rejected reloads."""

_log = logging.getLogger("meshlite.config")
_process_hooks = EventHooks()  # no hooks of its own: emits to the process-wide ones


def emit_mesh_event(mesh: Mesh, event: Event) -> None:
    """Deliver a mesh-level event to the hooks added with ``mesh.add_hook`` and to the
    process-wide hooks."""
    hooks = getattr(mesh, "hooks", None)
    if isinstance(hooks, EventHooks):  # a Mesh with hooks of its own
        if hooks.active:
            hooks.emit(event)
        return
    for hook, _ in list(mesh._hooks):
        try:
            hook(event)
        except Exception:
            _log.exception("meshlite event hook %r raised on %r; ignored", hook, event)
    if _process_hooks.active:
        _process_hooks.emit(event)


class ConfigWatcher:
    """Watches ``managed.path`` while the mesh is open and reloads it on each save.

    A mesh lifecycle component (``mesh.attach``): ``from_config`` attaches one when
    the file says ``hot_reload: true``, and ``meshlite.config.watch(mesh, path)``
    does for any mesh. :meth:`reload` may also be awaited directly.

    Args:
        mesh: The mesh the config describes.
        managed: The config state of that mesh.
        step_ms: Quiet time after a save before the file is read.
        debounce_ms: Longest a burst of saves is held back.
    """

    def __init__(self, mesh: Mesh, managed: Managed, *, step_ms: int = DEFAULT_STEP_MS,
                 debounce_ms: int = DEFAULT_DEBOUNCE_MS) -> None:
        self.mesh = mesh
        self.managed = managed
        self.step_ms = step_ms
        self.debounce_ms = debounce_ms
        self._watch: FileWatch | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Begin watching; a change made since the file was loaded is applied now."""
        watch = FileWatch(self.managed.path, step_ms=self.step_ms,
                          debounce_ms=self.debounce_ms)
        watch.open()
        self._watch = watch
        self._lock = asyncio.Lock()  # bound to this loop (a mesh may reopen on another)
        self._task = asyncio.get_running_loop().create_task(self._run())
        await self.reload()

    async def stop(self) -> None:
        """Stop watching; services still draining are stopped at once."""
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.close()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        drains = list(self.managed.drains)
        for drain in drains:
            drain.cancel()
        await asyncio.gather(*drains, return_exceptions=True)

    async def _run(self) -> None:
        assert self._watch is not None
        while True:
            await self._watch.changed()
            try:
                await self.reload()
            except Exception:  # a bug must not end hot reload for good
                _log.exception("reloading %s failed unexpectedly", self.managed.path)

    async def reload(self) -> bool:
        """Read the file and apply it if it changed and is valid.

        Returns:
            False when the file was rejected (see ``mesh.reload_errors``), else True
            (also when it had not changed).
        """
        return await self.reload_as(ACTOR_WATCHER) != "rejected"

    async def reload_as(self, actor: str, *, manual: bool = False) -> str:
        """:meth:`reload` on behalf of ``actor`` (the audit records' ``actor``).

        Args:
            actor: Who asked: ``"config-watcher"``, ``"api"``, ``"admin:<address>"``.
            manual: A reload asked for now (``mesh.reload()``): the file counts as
                unchanged only when it is the text in force (a file rejected before
                is checked again), and an unchanged file is audited too.

        Returns:
            ``"applied"``, ``"unchanged"`` or ``"rejected"``.
        """
        async with self._lock:
            managed = self.managed
            new_sha: str | None = None
            try:
                text = read_text(managed.path)
                new_sha = config_sha256(text)
                if (new_sha == managed.sha256) if manual else (digest(text) == managed.digest):
                    managed.digest = digest(text)
                    if manual:
                        self._audit(actor, "ok", new_sha, details={"changed": False})
                    return "unchanged"
                managed.digest = digest(text)
                plan = load_plan(managed.path, environ=managed.environ,
                                 profile=managed.profile, text=text, previous=managed.plan,
                                 others=managed.others(self.mesh), clock=managed.clock)
            except ConfigError as error:
                self._rejected(error, actor, new_sha)
                return "rejected"
            await self._apply(plan, actor, new_sha)
            return "applied"

    def _audit(self, actor: str, result: str, new_sha: str | None, *,
               error: ConfigError | None = None, details: dict[str, Any] | None = None,
               ) -> None:
        log = getattr(self.mesh, "audit", None)
        if log is None:
            return
        log.record(actor=actor, action="config.reload", target=self.managed.path,
                   result=result, error=None if error is None else str(error),
                   old_sha256=self.managed.sha256 or None, new_sha256=new_sha,
                   details=details, mask=self.managed.plan.document.secrets.mask)

    def _rejected(self, error: ConfigError, actor: str = ACTOR_WATCHER,
                  new_sha: str | None = None) -> None:
        mesh = self.mesh
        mesh.reload_errors.append(error)
        del mesh.reload_errors[:-MAX_RELOAD_ERRORS]
        _log.error("config reload rejected, the previous config keeps running: %s", error)
        self._audit(actor, "rejected", new_sha, error=error,
                    details={"errors": list(error.errors)})
        emit_mesh_event(mesh, ConfigReloadFailed(policy="config", path=self.managed.path,
                                                 errors=error.errors))

    async def _apply(self, plan: Plan, actor: str = ACTOR_WATCHER,
                     new_sha: str | None = None) -> None:
        mesh, managed = self.mesh, self.managed
        old = managed.plan
        changes = apply_plan(mesh, old, plan)
        managed.plan = plan
        extras = await self._extras(old, plan)
        if changes or extras:
            mesh.config_version += 1
            _log.info("config %s applied (version %d): %s", managed.path,
                      mesh.config_version, describe(changes))
        self._audit(actor, "applied", new_sha, details={
            "version": mesh.config_version, "added": changes.added,
            "removed": changes.removed, "changed": changes.changed})
        if new_sha is not None:
            managed.sha256 = new_sha
        if changes or extras:
            emit_mesh_event(mesh, ConfigReloaded(
                policy="config", path=managed.path, version=mesh.config_version,
                added=tuple(changes.added), removed=tuple(changes.removed),
                changed=tuple(changes.changed)))
        await finish(mesh, changes, managed.drains)

    async def _extras(self, old: Plan, new: Plan) -> bool:
        """Apply telemetry and dashboard changes; returns whether anything changed."""
        changed = False
        if new.top.audit != old.top.audit:
            _log.warning("the audit: section of %s changed; it is read when the mesh is "
                         "built, so the change takes effect at the next start",
                         self.managed.path)
        if new.top.telemetry is not None and new.top.telemetry != old.top.telemetry:
            configure_telemetry(new.top.telemetry)
            changed = True
        if new.top.alerts != old.top.alerts:
            apply_alerts(self.mesh, new.top.alerts)
            changed = True
        if new.config.metrics != old.config.metrics and self.mesh.metrics is not None:
            section = new.config.metrics
            self.mesh.metrics.service_label = (
                "service" if section is None else section.service_label)
            changed = True
        if new.config.dashboard != old.config.dashboard and self.managed.serve_dashboard:
            changed = True
            await self._restart_dashboard(new)
        return changed

    async def _restart_dashboard(self, plan: Plan) -> None:
        managed, mesh = self.managed, self.mesh
        if managed.dashboard is not None:
            if managed.dashboard in mesh._started:
                mesh._started.remove(managed.dashboard)
                await managed.dashboard.stop()
            if managed.dashboard in mesh._components:
                mesh._components.remove(managed.dashboard)
            managed.dashboard = None
        section = plan.config.dashboard
        if section is not None and section.enabled:
            managed.dashboard = DashboardComponent(mesh, section)
            mesh.attach(managed.dashboard)
            if mesh._state == "open":
                await managed.dashboard.start()
                mesh._started.append(managed.dashboard)

    def __repr__(self) -> str:
        return f"ConfigWatcher({self.managed.path!r})"
