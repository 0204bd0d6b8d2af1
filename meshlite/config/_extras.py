"""What a config sets up beside services: telemetry and the dashboard."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from ._schema import DashboardSection
from ._top import dashboard_token

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


class DashboardComponent:
    """Serves the mesh's dashboard while the mesh is open (a ``dashboard:`` section).

    Uses ``mesh.serve_dashboard(host=, port=, token=, admin_token=, ...)``, with
    tokens read from the environment or a file (relative to ``base``, the config
    file's directory) when the section says so; a mesh without ``serve_dashboard``
    (the dashboard extra is not installed) logs a warning and runs without it.
    """

    def __init__(self, mesh: Mesh, section: DashboardSection, base: str | None = None,
                 ) -> None:
        self.mesh = mesh
        self.section = section
        self.base = base
        self.server: Any = None

    async def start(self) -> None:
        """Start serving."""
        serve = getattr(self.mesh, "serve_dashboard", None)
        if serve is None:
            _log.warning("the config asks for a dashboard, but this meshlite has none "
                         "(install meshlite-mesh[dashboard]); continuing without it")
            return
        s = self.section
        options = {k: v for k, v in s.arguments().items()
                   if k not in ("enabled", "host", "port", "token", "admin_token")
                   and v is not None}
        base = self.base or os.curdir
        self.server = await serve(host=s.host, port=s.port,
                                  token=dashboard_token(s, "token", base),
                                  admin_token=dashboard_token(s, "admin_token", base),
                                  **options)

    async def stop(self) -> None:
        """Stop serving."""
        server, self.server = self.server, None
        if server is not None:
            await server.stop()

    def __repr__(self) -> str:
        return f"DashboardComponent({self.section.host}:{self.section.port})"
