"""Running the dashboard: in the background on the caller's event loop
(:func:`serve_dashboard`, behind ``mesh.serve_dashboard``) or in the foreground
for the command line (:func:`run_dashboard`)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import socket
from collections.abc import Generator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.middleware.message_logger import MessageLoggerMiddleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from ..._errors import ConfigError
from ..._fork import after_fork_in_child
from ._app import build_app
from ._auth import DEFAULT_MAX_CLIENTS, check_bind
from ._limits import Limits, http_protocol, ws_protocol
from ._monitor import Monitor
from ._tokens import resolve_token

if TYPE_CHECKING:
    from ...mesh._mesh import Mesh

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "DashboardServer", "run_dashboard", "serve_dashboard"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8686


_IN_BACKGROUND: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "meshlite_dashboard_in_background", default=False)


class _Quiet(logging.Filter):
    """Drops uvicorn's records below WARNING from a dashboard served in an app's
    background: its lines (``Started server process [pid]``, ``Finished server
    process [pid]``, one per WebSocket) would read as the app's own server's. Its
    warnings and errors pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not _IN_BACKGROUND.get()


_QUIET = _Quiet()


class _Background(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # In the background the application owns SIGINT/SIGTERM, not the dashboard.
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn exits the process when the app's lifespan startup fails; in the
        # background that is an error of this server's task (SystemExit in a task
        # would stop the application's event loop).
        try:
            await super().startup(sockets)
        except SystemExit:
            raise RuntimeError("the app's lifespan startup failed (uvicorn logged why)"
                               ) from None


class _Foreground(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn raises the SIGTERM it shut down on again once it is done, whose
        # default action kills the process there: the mesh would never close (no
        # drain, no telemetry flush) and the exit status would be -15, not 0.
        with super().capture_signals():
            try:
                yield
            finally:
                getattr(self, "_captured_signals", []).clear()  # uvicorn's, since 0.29


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _bind(host: str, port: int, owner: str = "meshlite dashboard") -> socket.socket:
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
        error.add_note(f"{owner}: cannot listen on {host}:{port}; pick another "
                       "port (port=0 picks a free one)")
        raise
    return sock


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
    _drop_message_logger(config)
    server = _Background(config) if background else _Foreground(config)
    return server, monitor, _bind(s.host, s.port)


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


def _drop_message_logger(config: uvicorn.Config) -> None:
    # At uvicorn's TRACE level every ASGI message is logged, query strings and
    # subprotocols included, where a client may have put a credential: never here.
    outer = config.loaded_app
    holder = outer if isinstance(outer, ProxyHeadersMiddleware) else None
    inner = outer.app if holder is not None else outer
    if isinstance(inner, MessageLoggerMiddleware):
        if holder is not None:
            holder.app = inner.app
        else:
            config.loaded_app = inner.app


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
        self.url = _url(host, port)

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


async def _start(server: uvicorn.Server, sock: socket.socket,
                 owner: str = "meshlite dashboard") -> asyncio.Task[None]:
    """Serve on ``sock`` in a task; returns once it accepts connections. In the
    background, uvicorn's informational lines are left out of the app's log."""
    context = contextvars.copy_context()
    if isinstance(server, _Background):
        uvicorn_log = logging.getLogger("uvicorn.error")
        if _QUIET not in uvicorn_log.filters:
            uvicorn_log.addFilter(_QUIET)
        # the server's task and every connection it accepts run in this context
        context.run(_IN_BACKGROUND.set, True)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]),
                                                  context=context)
    # uvicorn's `started` is a plain flag with nothing to await
    while not server.started and not task.done():  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    if task.done():
        host, port = sock.getsockname()[:2]
        sock.close()
        raise RuntimeError(f"{owner} failed to start on {host}:{port}"
                           ) from task.exception()
    return task


async def serve_dashboard(mesh: Mesh, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                          token: Any = None, admin_token: Any = None,
                          **options: Any) -> DashboardServer:
    """Start the dashboard of ``mesh`` in the background on the running loop; see
    :meth:`meshlite.Mesh.serve_dashboard`."""
    server, monitor, sock = _setup(mesh, _settings(host, port, token, admin_token, options),
                                   background=True)
    port = sock.getsockname()[1]
    task = await _start(server, sock)
    monitor.start()
    return DashboardServer(server, task, monitor, host, port, sock)


async def _foreground(mesh: Mesh, settings: _Settings) -> None:
    server, monitor, sock = _setup(mesh, settings, background=False)
    url = _url(settings.host, sock.getsockname()[1])
    async with mesh:
        task = await _start(server, sock)
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
