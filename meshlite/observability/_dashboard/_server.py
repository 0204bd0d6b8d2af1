"""Running the dashboard: in the background on the caller's event loop
(:func:`serve_dashboard`, behind ``mesh.serve_dashboard``) or in the foreground
for the command line (:func:`run_dashboard`); the uvicorn server under it is
:mod:`._uvicorn`'s."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import uvicorn

from ..._errors import ConfigError
from ..._fork import after_fork_in_child
from ._app import build_app
from ._auth import DEFAULT_MAX_CLIENTS, check_bind
from ._limits import Limits, http_protocol, ws_protocol
from ._monitor import Monitor
from ._tokens import resolve_token
from ._uvicorn import Background, Foreground, bind, drop_message_logger, start, url_of

if TYPE_CHECKING:
    from ...mesh._mesh import Mesh

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "DashboardServer", "run_dashboard", "serve_dashboard"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8686


@dataclass(frozen=True, slots=True)
class _Settings:
    """The checked arguments of one dashboard (tokens resolved)."""

    host: str
    port: int
    token: str | None
    admin_token: str | None
    max_clients: int
    limits: Limits


_OPTIONS = ("max_clients", *Limits.__dataclass_fields__)


def _settings(host: Any, port: Any, token: Any, admin_token: Any,
              options: dict[str, Any]) -> _Settings:
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise ConfigError(f"serve_dashboard: unknown option {unknown[0]!r} (options: "
                          f"{', '.join(_OPTIONS)})", policy="dashboard")
    rest = dict(options)
    max_clients = rest.pop("max_clients", DEFAULT_MAX_CLIENTS)
    token = resolve_token(token, "token")
    admin_token = resolve_token(admin_token, "admin_token")
    check_bind(host, port, token, max_clients, admin_token)
    return _Settings(host, port, token, admin_token, max_clients, Limits(**rest))


def _setup(mesh: Mesh, s: _Settings, background: bool,
           ) -> tuple[uvicorn.Server, Monitor, socket.socket]:
    monitor = _monitor(mesh, s.max_clients)
    limits = s.limits
    config = uvicorn.Config(
        build_app(monitor, s.token, s.admin_token), host=s.host, port=s.port,
        http=http_protocol(limits), ws=ws_protocol(limits),
        lifespan="off", log_config=None, access_log=False,  # logs must never hold tokens
        server_header=False, ws_max_size=65536, timeout_graceful_shutdown=2,
        # uvicorn answers 503 from `limit_concurrency` connections on, counting the
        # one asking; the protocol closes those beyond max_connections: the same cap
        limit_concurrency=limits.max_connections + 1, timeout_keep_alive=limits.keep_alive,
        h11_max_incomplete_event_size=limits.max_header_bytes)
    config.load()
    drop_message_logger(config)
    server = Background(config) if background else Foreground(config)
    return server, monitor, bind(s.host, s.port)


def _monitor(mesh: Mesh, max_clients: int) -> Monitor:
    """The mesh's running monitor (it evaluates the alert rules: once, shared), or
    a new one that the mesh then uses."""
    host = getattr(mesh, "host_monitor", None)
    running: Monitor | None = None if host is None else host.monitor
    if running is not None:
        running.max_clients = max_clients
        return running
    monitor = Monitor(mesh, max_clients=max_clients)
    monitor.owner = True
    if host is not None:
        host.adopt(monitor)
    return monitor


class DashboardServer:
    """A dashboard running in the background; returned by ``mesh.serve_dashboard``.

    Attributes:
        url: The base URL, with the real port (``http://127.0.0.1:8686``).
        host: The host it is bound to.
        port: The port it listens on.
    """

    def __init__(self, server: uvicorn.Server, task: asyncio.Task[None], monitor: Monitor,
                 host: str, port: int, sock: socket.socket | None = None) -> None:
        self._server = server
        self._task = task
        self._sock = sock
        if sock is not None:
            after_fork_in_child(self)
        self.monitor = monitor
        monitor.servers += 1
        self._serving = True
        self.host = host
        self.port = port
        self.url = url_of(host, port)

    def after_fork(self) -> None:
        """In a forked child: close the child's copy of the listening socket (the
        server is the parent's; a copy left open kept the port bound, and accepting
        into a queue nobody reads, after the parent stopped)."""
        if self._sock is not None:
            self._sock.close()

    @property
    def running(self) -> bool:
        """Whether it still serves."""
        return not self._task.done()

    async def stop(self) -> None:
        """Close every connection and stop serving and sampling (idempotent)."""
        self._server.should_exit = True
        await asyncio.wait([self._task])
        if not self._serving:
            return
        self._serving = False
        self.monitor.servers -= 1
        # A monitor the host made goes on evaluating the alert rules; one a dashboard
        # made goes on while another dashboard serves from it.
        if self.monitor.owner and not self.monitor.servers:
            await self.monitor.stop()
            host = getattr(self.monitor.mesh, "host_monitor", None)
            if host is not None:
                host.release(self.monitor)

    async def __aenter__(self) -> DashboardServer:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    def __repr__(self) -> str:
        return f"DashboardServer({self.url!r}, running={self.running})"


async def serve_dashboard(mesh: Mesh, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                          token: Any = None, admin_token: Any = None,
                          **options: Any) -> DashboardServer:
    """Start the dashboard of ``mesh`` in the background on the running loop; see
    :meth:`meshlite.Mesh.serve_dashboard`."""
    server, monitor, sock = _setup(mesh, _settings(host, port, token, admin_token, options),
                                   background=True)
    port = sock.getsockname()[1]
    task = await start(server, sock)
    monitor.start()
    return DashboardServer(server, task, monitor, host, port, sock)


async def _foreground(mesh: Mesh, settings: _Settings) -> None:
    server, monitor, sock = _setup(mesh, settings, background=False)
    url = url_of(settings.host, sock.getsockname()[1])
    async with mesh:
        task = await start(server, sock)
        monitor.start()
        print(f"meshlite dashboard on {url} (Ctrl+C to stop)", flush=True)
        try:
            await task  # uvicorn handles SIGINT/SIGTERM: a graceful shutdown
        finally:
            await monitor.stop()


def run_dashboard(config_path: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                  token: Any = None, admin_token: Any = None, **options: Any) -> int:
    """Load the mesh from ``config_path`` and serve its dashboard until Ctrl+C (what
    ``meshlite dashboard CONFIG`` runs). The mesh is opened (health checks run).
    Arguments and options are those of :func:`serve_dashboard`.

    Returns:
        The exit status: 0 after Ctrl+C or SIGTERM.

    Raises:
        ConfigError: an invalid config file or argument, or a non-loopback host
            without a token.
        OSError: the port is in use.
    """
    from ...mesh._mesh import Mesh

    settings = _settings(host, port, token, admin_token, options)
    # The file's own dashboard: section is not served a second time: this is it.
    mesh: Any = Mesh.from_config(config_path, dashboard=False)
    if mesh.metrics is not None and mesh.metrics.shared is not None:
        mesh.metrics.shared.writing = False  # attached: shows the workers' files only
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_foreground(mesh, settings))
    return 0
