"""The mesh's monitor: samples it once a second and evaluates its alert rules while
it is open, whether or not a dashboard runs.

Every open mesh has one :class:`HostMonitor` (a mesh component). It runs a
:class:`~._dashboard._monitor.Monitor` (sampling, history, alert evaluation and
webhook posts) once the mesh has alert rules, or when a dashboard asks for it, and
a dashboard of the same mesh shares that monitor, so rules are evaluated once.

With a shared directory (``MESHLITE_MULTIPROC_DIR``, several workers) one worker of
the host leads: the one holding the directory's ``dashboard.lock`` (an ``flock``,
released by the kernel when that worker dies). It evaluates the rules on the
host-wide numbers (every worker's calls, read from their files) and serves the
config's dashboard; the others check every :data:`CHECK_SECONDS` and take over
when it stops. A process that only reads the directory (``meshlite dashboard``
attached to running workers) never leads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import TYPE_CHECKING

from .._fork import after_fork_in_child
from ._host_lock import HostLock

if TYPE_CHECKING:
    from ..mesh._mesh import Mesh
    from ._dashboard._monitor import Monitor

__all__ = ["CHECK_SECONDS", "LOCK_NAME", "HostMonitor"]

_log = logging.getLogger("meshlite.dashboard")

CHECK_SECONDS = 1.0
"""How often an open mesh checks whether it has alert rules to evaluate, and (with
several workers) whether the leading worker has stopped."""

LOCK_NAME = "dashboard.lock"
"""The lock file of the shared directory the leading worker holds."""


_guard = threading.Lock()
_locks: dict[str, HostLock] = {}  # lock file -> this process's lock on it
_users: dict[str, set[int]] = {}  # lock file -> the HostMonitors leading with it


def _after_fork() -> None:
    global _guard
    _guard = threading.Lock()  # a parent's thread may have held it at the fork
    _users.clear()  # a child leads with none of its parent's locks (HostLock.after_fork)


os.register_at_fork(after_in_child=_after_fork)


class HostMonitor:
    """Runs the mesh's :class:`Monitor` while the mesh is open (see the module).

    Args:
        mesh: The mesh it watches.

    Attributes:
        monitor: The running monitor, or None (no rules yet, or another worker of
            the host leads). A dashboard of this mesh shares it.
    """

    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh
        self.monitor: Monitor | None = None
        self._owned = False  # made here (not by a dashboard): stopped here
        self._lock: HostLock | None = None
        self._task: asyncio.Task[None] | None = None
        after_fork_in_child(self)

    def after_fork(self) -> None:
        """In a forked child: not running (the parent's task and monitor do not run
        here), so that opening the child's mesh starts the child's own."""
        self._task, self.monitor, self._owned = None, None, False

    def lead(self, *, announce: bool = True) -> bool:
        """Whether this process leads the host (taking the lock if it is free).
        Always True for a single process (no shared directory).

        Args:
            announce: Name this process in the lock file at once (see
                :meth:`HostLock.acquire`); :meth:`check` does it once it evaluates.
        """
        metrics = self.mesh.metrics
        shared = None if metrics is None else metrics.shared
        if shared is None:
            return True
        if not shared.writing:
            return False  # attached to the workers: they lead
        with _guard:  # the meshes of one process lead together: one lock per process
            if self._lock is None:
                path = os.path.join(shared.directory, LOCK_NAME)
                self._lock = _locks.get(path) or _locks.setdefault(path, HostLock(path))
            if not self._lock.acquire(announce=announce):
                return False
            _users.setdefault(self._lock.path, set()).add(id(self))
            return True

    def announce(self) -> None:
        """Name this process in the lock file it leads by: once it evaluates every
        call finished from then on (its monitor has a baseline; see :meth:`check`)."""
        if self._lock is not None:
            self._lock.announce()

    def _let_go(self) -> None:
        with _guard:
            lock = self._lock
            if lock is None:
                return
            users = _users.get(lock.path, set())
            users.discard(id(self))
            if not users:
                lock.release()

    @property
    def leading(self) -> bool:
        """Whether this process holds the host's lock now (or is on its own)."""
        metrics = self.mesh.metrics
        if metrics is None or metrics.shared is None:
            return True
        return self._lock is not None and self._lock.held

    def adopt(self, monitor: Monitor) -> None:
        """A dashboard made ``monitor``: evaluate the rules there, not twice."""
        self.monitor, self._owned = monitor, False

    def release(self, monitor: Monitor) -> None:
        """The dashboard that made ``monitor`` stopped it: make one here if needed."""
        if self.monitor is monitor:
            self.monitor = None
            # the mesh stays open: the rules go on at once (not while it closes)
            if self._task is not None and getattr(self.mesh, "_state", "") == "open":
                self.check()

    def check(self) -> None:
        """Start a monitor when the mesh has rules and this process leads."""
        if self.monitor is not None:
            return
        alerts = getattr(self.mesh, "_alerts", None)
        if alerts is None or not alerts.rules:
            return
        # Imported before taking the lock, and the pid written only once the monitor
        # has its baseline: a worker named in the lock file evaluates every call
        # finished from then on. (Named first, a worker taking over under load spent
        # seconds on the import and the saved history, and every call the others
        # counted meanwhile went into its baseline, never evaluated.)
        from ._dashboard._monitor import Monitor

        if not self.lead(announce=False):
            return
        self.monitor, self._owned = Monitor(self.mesh, max_clients=1), True
        self.monitor.start()
        self.announce()
        _log.info("alert rules are evaluated in this process (pid %d)", os.getpid())

    async def start(self) -> None:
        """Begin checking (and evaluating) on the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                self.check()
            except Exception:  # a bad directory must not stop the checks: say so
                _log.exception("starting the alert evaluation failed; retrying")
            await asyncio.sleep(CHECK_SECONDS)

    async def stop(self) -> None:
        """Stop evaluating, and let another worker of the host lead."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        monitor, self.monitor = self.monitor, None
        if monitor is not None and self._owned:
            await monitor.stop()
        self._let_go()

    def __repr__(self) -> str:
        return f"HostMonitor(running={self.monitor is not None})"
