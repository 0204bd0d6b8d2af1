"""What a config sets up beside services: telemetry and the dashboard."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from typing import TYPE_CHECKING, Any

from ._schema import DashboardSection

if TYPE_CHECKING:
    from .._mesh import Mesh
    from ._top import AlertsPlan

__all__ = ["DashboardComponent", "apply_alerts", "configure_telemetry"]

_log = logging.getLogger("meshlite.config")


def configure_telemetry(arguments: dict[str, Any]) -> None:
    """Call ``meshlite.telemetry.configure`` with a ``telemetry:`` section's options."""
    from ..telemetry import configure

    configure(**arguments)


def apply_alerts(mesh: Mesh, plan: AlertsPlan | None) -> None:
    """Give ``mesh.alerts`` the file's rules (none when the section is gone)."""
    if plan is None and getattr(mesh, "_alerts", False) is None:
        return  # no rules, and no alerts made yet: nothing to clear (nor to import)
    alerts = getattr(mesh, "alerts", None)
    if alerts is None:
        if plan is not None and plan.rules:
            _log.warning("the config has alert rules, but this meshlite's Mesh has no "
                         "alerts; they are ignored")
        return
    if plan is None:
        alerts.replace(())
        return
    alerts.replace(plan.rules, webhook=plan.webhook)
    if plan.webhook_timeout is not None:
        alerts.webhook_timeout = plan.webhook_timeout


TAKEOVER_SECONDS = 2.0
"""How often a worker that does not serve the host's dashboard checks whether the
one that does has stopped (and then serves it itself)."""


class DashboardComponent:
    """Serves the mesh's dashboard while the mesh is open (a ``dashboard:`` section).

    Uses ``mesh.serve_dashboard(host=, port=, token=)``; a mesh without one (the
    dashboard extra is not installed) logs a warning and runs without it. With a
    shared directory (``MESHLITE_MULTIPROC_DIR``) one worker of the host serves it:
    the one holding the directory's ``dashboard.lock``; the others skip quietly and
    take over when it stops. Without one, a worker that finds the port taken logs a
    warning and runs without a dashboard (each worker would only see its own
    traffic anyway).
    """

    def __init__(self, mesh: Mesh, section: DashboardSection) -> None:
        self.mesh = mesh
        self.section = section
        self.server: Any = None
        self._lock: Any = None
        self._waiting: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start serving (or waiting for this host's dashboard to be free)."""
        serve = getattr(self.mesh, "serve_dashboard", None)
        if serve is None:
            _log.warning("the config asks for a dashboard, but this meshlite has none "
                         "(install meshlite[dashboard]); continuing without it")
            return
        metrics = getattr(self.mesh, "metrics", None)
        shared = None if metrics is None else metrics.shared
        if shared is None:
            await self._serve(quiet_if_taken=True)
            return
        from ..observability._multiproc import HostLock

        self._lock = HostLock(os.path.join(shared.directory, "dashboard.lock"))
        if self._lock.acquire():
            await self._serve()
            return
        _log.info("dashboard: another worker of this host serves it; this one (pid %d) "
                  "takes over if it stops", os.getpid())
        self._waiting = asyncio.get_running_loop().create_task(self._take_over())

    async def _take_over(self) -> None:
        while True:
            await asyncio.sleep(TAKEOVER_SECONDS)
            if self._lock.acquire():
                try:
                    await self._serve()
                except OSError:  # the old server's socket is not closed yet
                    self._lock.release()
                    continue
                return

    async def _serve(self, *, quiet_if_taken: bool = False) -> None:
        s = self.section
        options = {"max_clients": s.max_clients} if s.max_clients is not None else {}
        try:
            self.server = await self.mesh.serve_dashboard(host=s.host, port=s.port,
                                                          token=s.token, **options)
        except OSError as error:
            if not (quiet_if_taken and error.errno == errno.EADDRINUSE):
                raise
            _log.warning("dashboard: %s:%s is in use (another worker?); continuing "
                         "without a dashboard in this process. With several workers, set "
                         "MESHLITE_MULTIPROC_DIR so one serves the whole host",
                         s.host, s.port)

    async def stop(self) -> None:
        """Stop serving (and let another worker take over)."""
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.cancel()
            await asyncio.wait([waiting])
        server, self.server = self.server, None
        if server is not None:
            await server.stop()
        if self._lock is not None:
            self._lock.release()

    def __repr__(self) -> str:
        return f"DashboardComponent({self.section.host}:{self.section.port})"
