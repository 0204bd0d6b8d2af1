"""The live dashboard (the ``meshlite-mesh[dashboard]`` extra: Starlette and uvicorn).

Importing this package loads neither: the alert rules live here too and are
configuration any mesh may hold; the web server is imported when a dashboard
starts.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..._extras import requires_extra
from ._alerts import DEFAULT_KEEP_RESOLVED, DEFAULT_WEBHOOK_TIMEOUT, Alerts
from ._auth import DEFAULT_MAX_CLIENTS, MIN_TOKEN_LENGTH
from ._history import DEFAULT_HISTORY_SECONDS
from ._rules import CONDITIONS, Alert, AlertFired, AlertResolved, AlertRule

if TYPE_CHECKING:
    from ...mesh._mesh import Mesh
    from ._server import DashboardServer

__all__ = [
    "CONDITIONS",
    "DEFAULT_HISTORY_SECONDS",
    "DEFAULT_KEEP_RESOLVED",
    "DEFAULT_MAX_CLIENTS",
    "DEFAULT_WEBHOOK_TIMEOUT",
    "MIN_TOKEN_LENGTH",
    "Alert",
    "AlertFired",
    "AlertResolved",
    "AlertRule",
    "Alerts",
    "run_dashboard",
    "serve_dashboard",
]


def load_server() -> Any:
    """The dashboard's server module (imports the ``dashboard`` extra's libraries)."""
    with requires_extra("the dashboard", "dashboard"):
        return importlib.import_module(f"{__name__}._server")


async def serve_dashboard(mesh: Mesh, host: str = "127.0.0.1", port: int = 8686,
                          token: Any = None, admin_token: Any = None,
                          **options: Any) -> DashboardServer:
    """Start ``mesh``'s dashboard in the background; see ``Mesh.serve_dashboard``.

    Raises:
        ModuleNotFoundError: the ``meshlite-mesh[dashboard]`` extra (Starlette,
            uvicorn, websockets) is not installed.
    """
    server: DashboardServer = await load_server().serve_dashboard(
        mesh, host, port, token, admin_token, **options)
    return server


def run_dashboard(config_path: str, host: str = "127.0.0.1", port: int = 8686,
                  token: Any = None, admin_token: Any = None, **options: Any) -> int:
    """Serve the dashboard of the mesh in ``config_path`` until Ctrl+C (the
    ``meshlite dashboard CONFIG`` command); returns the exit status.

    Raises:
        ModuleNotFoundError: the ``meshlite-mesh[dashboard]`` extra (Starlette,
            uvicorn, websockets) is not installed.
        ConfigError: a bad config, or a non-loopback host without a token.
    """
    status: int = load_server().run_dashboard(config_path, host, port, token,
                                                 admin_token, **options)
    return status
