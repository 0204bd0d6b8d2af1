"""Hot reload: watch a mesh's config file and apply each valid change.

A change is read, validated and built first; only a config without a single
problem is applied (see ``_apply``). A bad file changes nothing: the old config
keeps running, the error is logged, appended to ``mesh.reload_errors`` and emitted
as :class:`ConfigReloadFailed`. A good one increments ``mesh.config_version`` and
emits :class:`ConfigReloaded`. Each reload's audit record, the rejections and the
mesh-level events are :mod:`meshlite.config._reload_report`'s.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, Any

from .._audit import ACTOR_WATCHER, config_sha256
from .._errors import ConfigError
from .._tasks import cancel_and_wait
from ..discovery._watch import DEFAULT_DEBOUNCE_MS, DEFAULT_STEP_MS, FileWatch
from ._apply import changes_of, finish, register, release, switch
from ._build import Plan
from ._diff import adopt_steps, diff_steps
from ._events import ConfigReloaded
from ._extras import apply_alerts, apply_extras
from ._incremental import parse_apart, plan_steps
from ._load import Managed, digest, gc_paused
from ._reload_report import audit_reload, emit_mesh_event, failure_of, reject
from ._source import read_text
from ._steps import in_slices

if TYPE_CHECKING:
    from ..mesh._mesh import Mesh

__all__ = ["ConfigWatcher"]

TURN_POLL = 0.005
"""Seconds between two looks of a reload waiting for another one to finish."""

_log = logging.getLogger("meshlite.config")


def _fields(managed: Managed) -> dict[str, Any]:
    # As a reload's state-change records have them: each worker reloads on its own.
    return {"path": managed.path, "pid": os.getpid()}


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
        self._rejected = False  # the last text read was rejected: its line is the last said

    async def start(self) -> None:
        """Begin watching; a change made since the file was loaded is applied now."""
        watch = FileWatch(self.managed.path, step_ms=self.step_ms,
                          debounce_ms=self.debounce_ms)
        watch.open()
        self._watch = watch
        self._task = asyncio.get_running_loop().create_task(self._run())
        await self.reload()

    async def stop(self) -> None:
        """Stop watching; services still draining are stopped at once."""
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.close()
        task, self._task = self._task, None
        try:
            if task is not None:
                await cancel_and_wait(task)
        finally:  # (also when the caller is cancelled meanwhile)
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
                _log.exception("reloading %s failed unexpectedly in pid %d",
                               self.managed.path, os.getpid(), extra=_fields(self.managed))

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
        await self._take_turn()
        try:
            result = await self._reload_as(actor, manual)
        finally:
            self.managed.turn.release()
        if result != "unchanged":  # (unchanged: the same text, or still unreadable)
            self._rejected = result == "rejected"
        return result

    async def _take_turn(self) -> None:
        """Wait, without holding up the event loop, until no other reload of the mesh
        runs (on this loop, another thread's, or another thread with a loop of its
        own: ``mesh.reload_sync()`` on a mesh that is not open), then hold
        ``managed.turn``. Reloads rarely meet, so the waiting one looks again every
        :data:`TURN_POLL` seconds rather than being woken across loops; an
        ``asyncio.Lock`` held here hung a reload awaiting it from another loop."""
        turn = self.managed.turn
        while not turn.acquire(blocking=False):  # noqa: ASYNC110 - held on another loop
            await asyncio.sleep(TURN_POLL)

    async def _reload_as(self, actor: str, manual: bool) -> str:
        managed = self.managed
        new_sha: str | None = None
        read = ""  # the text's digest: kept once the text is rejected or applied,
        try:       # not when the reload is cancelled first (then it is read again)
            text = await self._read(manual)
            if text is None:
                return "unchanged"
            new_sha, read = config_sha256(text), digest(text)
            if (new_sha == managed.sha256) if manual else (read == managed.digest):
                managed.digest = read
                if manual:
                    audit_reload(self.mesh, managed, actor, "ok", new_sha,
                                 details={"changed": False})
                return "unchanged"
            plan = await self._load(text)
        except ConfigError as error:
            managed.digest = read or managed.digest
            reject(self.mesh, managed, error, actor, new_sha)
            return "rejected"
        except Exception as error:  # a bug: still rejected and recorded, never half-done
            managed.digest = read or managed.digest
            _log.exception("reading %s failed unexpectedly in pid %d", managed.path,
                           os.getpid(), extra=_fields(managed))
            reject(self.mesh, managed, failure_of(managed.path, error), actor, new_sha)
            return "rejected"
        result = await self._apply(plan, actor, new_sha)
        managed.digest = read
        return result

    async def _read(self, manual: bool) -> str | None:
        """The file's text, or None when it still cannot be read for the reason
        already reported (the reason stands in for the text's digest: a file left
        unreadable is one rejection, as a file left bad is). Raises ConfigError."""
        try:
            return await asyncio.to_thread(read_text, self.managed.path)
        except ConfigError as error:
            unreadable = f"unreadable: {error}"
            if self.managed.digest == unreadable and not manual:
                return None
            self.managed.digest = unreadable
            raise

    async def _load(self, text: str) -> Plan:
        """Parse ``text`` away from the event loop (``_incremental.parse_apart``), then
        validate, build and compile the services whose section changed on the loop,
        a slice of about a millisecond at a time: a large or hostile file never holds
        up the calls the event loop is serving."""
        managed = self.managed
        parsed = await parse_apart(managed.path, text, managed.environ, managed.profile)
        others = managed.others(self.mesh)  # read on the loop, where the registry changes
        with gc_paused():
            return await in_slices(plan_steps(
                parsed, previous=managed.plan, others=others, clock=managed.clock,
                environ=managed.environ))

    async def _apply(self, plan: Plan, actor: str = ACTOR_WATCHER,
                     new_sha: str | None = None) -> str:
        """Apply ``plan`` whole, or nothing of it: the steps that can fail (serving the
        dashboard on its new address, configuring telemetry) run first and are
        undone if a later one fails; then the services change, which cannot fail
        and, once begun, is finished even if the reload is cancelled meanwhile (the
        cancellation is raised after)."""
        old = self.managed.plan
        try:
            extras = await apply_extras(self.mesh, self.managed, old, plan)
        except Exception as error:
            reject(self.mesh, self.managed, failure_of(self.managed.path, error), actor, new_sha)
            return "rejected"
        commit = asyncio.ensure_future(self._commit(old, plan, extras, actor, new_sha))
        cancelled = False
        while not commit.done():
            try:
                await asyncio.shield(commit)
            except asyncio.CancelledError:
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError
        return commit.result()

    async def _commit(self, old: Plan, plan: Plan, extras: tuple[str, ...], actor: str,
                      new_sha: str | None) -> str:
        mesh, managed = self.mesh, self.managed
        diff = await in_slices(diff_steps(old, plan))
        await in_slices(adopt_steps(mesh, diff))
        await asyncio.sleep(0)  # the registry change below is a turn of its own
        with gc_paused():  # no collection in the middle of the registry change
            replaced = register(mesh, diff)
        await asyncio.sleep(0)  # calls in between: the registry change is done
        changes = changes_of(diff, replaced)
        await switch(mesh, changes)
        managed.plan = plan
        self._release(old)
        if plan.top.alerts != old.top.alerts:  # after the services the rules may name
            apply_alerts(mesh, plan.top.alerts)
            extras = (*extras, "alerts")
        if changes or extras:
            mesh.config_version += 1
        details: dict[str, object] = {
            "version": mesh.config_version, "added": changes.added,
            "removed": changes.removed, "changed": changes.changed}
        if changes.kept:  # what was set by hand and stays so
            details["kept"] = changes.kept
        audit_reload(self.mesh, self.managed, actor, "applied", new_sha, details=details)
        if new_sha is not None:
            managed.sha256 = mesh.config_sha256 = new_sha
        if changes or extras:
            emit_mesh_event(mesh, ConfigReloaded(
                policy="config", path=managed.path, version=mesh.config_version,
                added=tuple(changes.added), removed=tuple(changes.removed),
                changed=tuple(changes.changed), sections=extras,
                sha256=managed.sha256))
        elif self._rejected:
            # A rejected file put back as it was: nothing changes, so no ConfigReloaded,
            # but the rejection must not stay the last word on the file.
            _log.info("config %s accepted by pid %d: valid again, and the same as the config "
                      "running (version %d), which keeps running unchanged", managed.path,
                      os.getpid(), mesh.config_version,
                      extra={**_fields(managed), "meshlite_event": "ConfigValidAgain",
                             "version": mesh.config_version})
        await finish(mesh, changes, managed.drains)
        return "applied"

    def _release(self, old: Plan) -> None:
        """Free the replaced plan in chunks, in the background (``_apply.release``)."""
        task = asyncio.get_running_loop().create_task(release(old))
        self.managed.drains.add(task)
        task.add_done_callback(self.managed.drains.discard)

    def __repr__(self) -> str:
        return f"ConfigWatcher({self.managed.path!r})"
