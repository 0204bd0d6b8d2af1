"""Running the dashboard: in the background on the caller's event loop
(:func:`serve_dashboard`, behind ``mesh.serve_dashboard``) or in the foreground
for the command line (:func:`run_dashboard`)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import socket
from collections.abc import Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any

import uvicorn

from ._app import build_app
from ._auth import DEFAULT_MAX_CLIENTS, check_bind
from ._monitor import Monitor

if TYPE_CHECKING:
    from ..._mesh import Mesh

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "DashboardServer", "run_dashboard", "serve_dashboard"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8686


class _Background(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # In the background the application owns SIGINT/SIGTERM, not the dashboard.
        yield


def _ws_protocol() -> str:
    for module, name in (("websockets", "websockets-sansio"), ("wsproto", "wsproto")):
        if importlib.util.find_spec(module) is not None:
            return name
    raise ImportError("the dashboard's WebSocket needs the 'websockets' package: "
                      "pip install 'meshlite[dashboard]'")


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _bind(host: str, port: int) -> socket.socket:
    # Bound here rather than by uvicorn (which exits the process on failure), so a
    # busy port is an OSError and port 0 tells us the port it picked. proto must be
    # IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets, and without it
    # Nagle's algorithm holds each response body back ~40 ms on keep-alive.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        error.add_note(f"meshlite dashboard: cannot listen on {host}:{port}; pick another "
                       "port (port=0 picks a free one)")
        raise
    return sock


def _setup(mesh: Mesh, host: str, port: int, token: str | None, max_clients: int,
           background: bool) -> tuple[uvicorn.Server, Monitor, socket.socket]:
    check_bind(host, port, token, max_clients)
    monitor = Monitor(mesh, max_clients=max_clients)
    config = uvicorn.Config(
        build_app(monitor, token), host=host, port=port, ws=_ws_protocol(),
        lifespan="off", log_config=None, access_log=False,  # logs must never hold tokens
        server_header=False, ws_max_size=65536, timeout_graceful_shutdown=2)
    server = _Background(config) if background else uvicorn.Server(config)
    return server, monitor, _bind(host, port)


class DashboardServer:
    """A dashboard running in the background; returned by ``mesh.serve_dashboard``.

    Attributes:
        url: The base URL, with the real port (``http://127.0.0.1:8686``).
        host: The host it is bound to.
        port: The port it listens on.
    """

    def __init__(self, server: uvicorn.Server, task: asyncio.Task[None], monitor: Monitor,
                 host: str, port: int) -> None:
        self._server = server
        self._task = task
        self.monitor = monitor
        self.host = host
        self.port = port
        self.url = _url(host, port)

    @property
    def running(self) -> bool:
        """Whether it still serves."""
        return not self._task.done()

    async def stop(self) -> None:
        """Close every connection and stop serving and sampling (idempotent)."""
        self._server.should_exit = True
        await asyncio.wait([self._task])
        await self.monitor.stop()

    async def __aenter__(self) -> DashboardServer:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    def __repr__(self) -> str:
        return f"DashboardServer({self.url!r}, running={self.running})"


async def _start(server: uvicorn.Server, sock: socket.socket) -> asyncio.Task[None]:
    """Serve on ``sock`` in a task; returns once it accepts connections."""
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    # uvicorn's `started` is a plain flag with nothing to await
    while not server.started and not task.done():  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    if task.done():
        sock.close()
        host, port = sock.getsockname()[:2]
        raise RuntimeError(f"meshlite dashboard failed to start on {host}:{port}"
                           ) from task.exception()
    return task


async def serve_dashboard(mesh: Mesh, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                          token: str | None = None, *,
                          max_clients: int = DEFAULT_MAX_CLIENTS) -> DashboardServer:
    """Start the dashboard of ``mesh`` in the background on the running loop; see
    :meth:`meshlite.Mesh.serve_dashboard`."""
    server, monitor, sock = _setup(mesh, host, port, token, max_clients, background=True)
    port = sock.getsockname()[1]
    task = await _start(server, sock)
    monitor.start()
    return DashboardServer(server, task, monitor, host, port)


async def _foreground(mesh: Mesh, host: str, port: int, token: str | None,
                      max_clients: int) -> None:
    server, monitor, sock = _setup(mesh, host, port, token, max_clients, background=False)
    url = _url(host, sock.getsockname()[1])
    async with mesh:
        task = await _start(server, sock)
        monitor.start()
        print(f"meshlite dashboard on {url} (Ctrl+C to stop)", flush=True)
        try:
            await task  # uvicorn handles SIGINT/SIGTERM: a graceful shutdown
        finally:
            await monitor.stop()


def run_dashboard(config_path: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                  token: str | None = None, *, max_clients: int = DEFAULT_MAX_CLIENTS) -> int:
    """Load the mesh from ``config_path`` and serve its dashboard until Ctrl+C (what
    ``meshlite dashboard CONFIG`` runs). The mesh is opened (health checks run).

    Returns:
        The exit status: 0 after Ctrl+C or SIGTERM.

    Raises:
        ConfigError: an invalid config file, or a non-loopback host without a token.
        OSError: the port is in use.
    """
    from ..._mesh import Mesh

    check_bind(host, port, token, max_clients)
    # The file's own dashboard: section is not served a second time: this is it.
    mesh: Any = Mesh.from_config(config_path, dashboard=False)
    if mesh.metrics is not None and mesh.metrics.shared is not None:
        mesh.metrics.shared.writing = False  # attached: shows the workers' files only
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_foreground(mesh, host, port, token, max_clients))
    return 0
