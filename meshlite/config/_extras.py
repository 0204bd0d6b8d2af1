"""What a config sets up beside services: telemetry and the dashboard."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..mesh._mesh import DEFAULT_DRAIN_TIMEOUT
from ._schema import DashboardSection
from ._top import dashboard_token

if TYPE_CHECKING:
    from ..mesh._mesh import Mesh
    from ._build import Plan
    from ._load import Managed
    from ._top import AlertsPlan

__all__ = ["DashboardComponent", "Undo", "apply_alerts", "apply_extras",
           "configure_telemetry", "move_dashboard"]

Undo = Callable[[], Awaitable[None]]
"""Puts back what a step of a reload changed (the reload was then rejected)."""

_log = logging.getLogger("meshlite.config")


def configure_telemetry(arguments: dict[str, Any]) -> None:
    """Call ``meshlite.telemetry.configure`` with a ``telemetry:`` section's options."""
    from ..telemetry import configure

    configure(**arguments)


def apply_alerts(mesh: Mesh, plan: AlertsPlan | None) -> None:
    """Give ``mesh.alerts`` the file's rules (none when the section is gone)."""
    if plan is None and not mesh.alerts_made:
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

    Uses ``mesh.serve_dashboard(host=, port=, token=, admin_token=, ...)``, with
    tokens read from the environment or a file (relative to ``base``, the config
    file's directory) when the section says so; a mesh without ``serve_dashboard``
    (the dashboard extra is not installed) logs a warning and runs without it. With a
    shared directory (``MESHLITE_MULTIPROC_DIR``) one worker of the host serves it:
    the one leading the host (holding the directory's ``dashboard.lock``, see
    ``meshlite.observability._host``); the others skip quietly and take over when it
    stops. Without one, a worker that finds the port taken logs a
    warning and runs without a dashboard (each worker would only see its own
    traffic anyway).
    """

    def __init__(self, mesh: Mesh, section: DashboardSection, base: str | None = None,
                 *, tolerate_taken: bool = True) -> None:
        self.mesh = mesh
        # At start-up a taken port means another worker serves it; a reload that
        # moves the dashboard to a taken port is rejected instead (all or nothing).
        self.tolerate_taken = tolerate_taken
        self.section = section
        self.base = base
        self.server: Any = None
        self._waiting: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start serving (or waiting for this host's dashboard to be free)."""
        serve = getattr(self.mesh, "serve_dashboard", None)
        if serve is None:
            _log.warning("the config asks for a dashboard, but this meshlite has none "
                         "(install meshlite-mesh[dashboard]); continuing without it")
            return
        metrics = getattr(self.mesh, "metrics", None)
        host = getattr(self.mesh, "host_monitor", None)
        if host is None or metrics is None or metrics.shared is None:
            await self._serve(quiet_if_taken=self.tolerate_taken)
            return
        # Several workers: the worker leading the host (its dashboard.lock) serves it.
        if host.lead(announce=False):  # named once its dashboard's monitor runs
            await self._serve()
            host.announce()
            return
        _log.info("dashboard: another worker of this host serves it; this one (pid %d) "
                  "takes over if it stops", os.getpid())
        self._waiting = asyncio.get_running_loop().create_task(self._take_over(host))

    async def _take_over(self, host: Any) -> None:
        failures = 0
        while True:
            await asyncio.sleep(TAKEOVER_SECONDS)
            if host.lead(announce=False):
                try:
                    await self._serve()
                    host.announce()
                except Exception as error:  # said once, then retried
                    failures += 1
                    # Once, and not at the first failure: the old server's socket
                    # may not be closed yet.
                    if failures == 2:
                        s = self.section
                        _log.warning("dashboard: this worker (pid %d) leads the host but "
                                     "cannot serve its dashboard on %s:%s (%s: %s); "
                                     "retrying every %g s", os.getpid(), s.host, s.port,
                                     type(error).__name__, error, TAKEOVER_SECONDS)
                    continue
                return

    async def _serve(self, *, quiet_if_taken: bool = False) -> None:
        s = self.section
        options = {k: v for k, v in s.arguments().items()
                   if k not in ("enabled", "host", "port", "token", "admin_token")
                   and v is not None}
        base = self.base or os.curdir
        try:
            self.server = await self.mesh.serve_dashboard(
                host=s.host, port=s.port, token=dashboard_token(s, "token", base),
                admin_token=dashboard_token(s, "admin_token", base), **options)
            _log.info("dashboard: served at %s by this process (pid %d)", self.server.url,
                      os.getpid())
        except OSError as error:
            if not (quiet_if_taken and error.errno == errno.EADDRINUSE):
                raise
            _log.warning("dashboard: %s:%s is in use (another worker?); continuing "
                         "without a dashboard in this process. With several workers, set "
                         "MESHLITE_MULTIPROC_DIR so one serves the whole host",
                         s.host, s.port)

    async def stop(self) -> None:
        """Stop serving (the mesh's closing lets another worker take over)."""
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.cancel()
            await asyncio.wait([waiting])
        server, self.server = self.server, None
        if server is not None:
            await server.stop()

    def __repr__(self) -> str:
        return f"DashboardComponent({self.section.host}:{self.section.port})"


async def _attach(mesh: Mesh, component: DashboardComponent, *, start: bool) -> None:
    if start:
        await component.start()  # first: a component that cannot start is not attached
        mesh.mark_started(component)
    mesh.attach(component)


def _same_address(a: DashboardSection, b: DashboardSection) -> bool:
    return a.host == b.host and a.port == b.port and a.port != 0


async def move_dashboard(mesh: Mesh, managed: Managed,
                         section: DashboardSection | None) -> Undo:
    """Serve the dashboard ``section`` describes in place of the one running.

    The new server starts before the old one stops, unless both want the same
    address; either way, when the new one cannot start (its port is in use) the old
    one is serving again and the error propagates, so the reload can be rejected
    with nothing changed.

    Returns:
        What puts the old dashboard back (when a later step of the reload fails).
    """
    previous = managed.dashboard
    fresh = DashboardComponent(mesh, section, os.path.dirname(managed.path),
                               tolerate_taken=False) \
        if section is not None and section.enabled else None
    running = mesh.is_open
    if fresh is not None and previous is not None and \
            _same_address(previous.section, fresh.section):
        await mesh.detach(previous)  # it holds the address the new one needs
        try:
            await _attach(mesh, fresh, start=running)
        except BaseException:
            await _attach(mesh, previous, start=running)
            raise
    else:
        if fresh is not None:
            await _attach(mesh, fresh, start=running)  # raises: nothing changed
        if previous is not None:
            await mesh.detach(previous)
    managed.dashboard = fresh

    async def undo() -> None:
        if fresh is not None:
            await mesh.detach(fresh)
        if previous is not None:
            try:
                await _attach(mesh, previous, start=running)
            except Exception:
                _log.exception("the previous dashboard could not be served again")
        managed.dashboard = previous

    return undo


async def apply_extras(mesh: Mesh, managed: Managed, old: Plan, new: Plan) -> tuple[str, ...]:
    """Apply a reload's dashboard and telemetry changes, the steps of a reload that can
    fail; returns the sections that changed. Raises, with the dashboard as it was,
    when one cannot be applied."""
    if new.top.audit != old.top.audit:
        _log.warning("the audit: section of %s changed (seen by pid %d); it is read "
                     "when the mesh is built, so the change takes effect at the next "
                     "start", managed.path, os.getpid(),
                     extra={"path": managed.path, "pid": os.getpid()})
    undo = None
    if new.config.dashboard != old.config.dashboard and managed.serve_dashboard:
        undo = await move_dashboard(mesh, managed, new.config.dashboard)
    changed: list[str] = [] if undo is None else ["dashboard"]
    if new.top.telemetry is not None and new.top.telemetry != old.top.telemetry:
        try:
            configure_telemetry(new.top.telemetry)
        except Exception:
            if undo is not None:
                await undo()
            raise
        changed.append("telemetry")
    if new.config.metrics != old.config.metrics and mesh.metrics is not None:
        section = new.config.metrics
        mesh.metrics.service_label = "service" if section is None else section.service_label
        changed.append("metrics")
    if new.config.inbound != old.config.inbound:
        changed.append("inbound")  # the middleware picks it up on its next request
    if new.config.drain_timeout != old.config.drain_timeout and managed.drain_from_file:
        # (a drain under way keeps the deadline it started with)
        mesh.drain_timeout = (DEFAULT_DRAIN_TIMEOUT if new.config.drain_timeout is None
                              else new.config.drain_timeout)
        changed.append("drain_timeout")
    return tuple(changed)
