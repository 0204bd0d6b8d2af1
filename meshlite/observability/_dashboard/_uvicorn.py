"""Serving an ASGI app with uvicorn inside this process, for the dashboard and
``meshlite.testing.AsgiServer``: the socket bound here (a busy port is an error, not
an exit), a server in the background of the app's event loop (the app keeps its
signals and its log) or in the foreground, and a start that returns once it accepts
connections."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import socket
from collections.abc import Generator

import uvicorn
from uvicorn.middleware.message_logger import MessageLoggerMiddleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from .._http_server import note_cannot_listen

__all__ = ["Background", "Foreground", "Quiet", "bind", "drop_message_logger", "start",
           "url_of"]


_IN_BACKGROUND: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "meshlite_dashboard_in_background", default=False)


class Quiet(logging.Filter):
    """Drops uvicorn's records below WARNING from a dashboard served in an app's
    background: its lines (``Started server process [pid]``, ``Finished server
    process [pid]``, one per WebSocket) would read as the app's own server's. Its
    warnings and errors pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not _IN_BACKGROUND.get()


_QUIET = Quiet()


class Background(uvicorn.Server):
    """A server in the background of the app's event loop: the app keeps its
    signals, and a failed lifespan startup fails the server's task."""

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
            failed = True
        else:  # uvicorn before 0.50 returned, its exit left to its command line
            failed = self.lifespan.should_exit
        if failed:
            raise RuntimeError("the app's lifespan startup failed (uvicorn logged why)")


class Foreground(uvicorn.Server):
    """The server of ``meshlite dashboard``: it handles SIGINT and SIGTERM."""

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


def url_of(host: str, port: int) -> str:
    """The base URL of ``host:port`` (an IPv6 host in brackets)."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def bind(host: str, port: int, owner: str = "meshlite dashboard") -> socket.socket:
    """A TCP socket bound to ``host:port`` for :func:`start` (port 0: a free one).

    Raises:
        OSError: the port is in use, with a note naming ``owner`` and the way out.
    """
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
        note_cannot_listen(error, owner, host, port)
        raise
    return sock


def drop_message_logger(config: uvicorn.Config) -> None:
    """Take uvicorn's ASGI message logger out of a loaded ``config``'s app."""
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


async def start(server: uvicorn.Server, sock: socket.socket,
                 owner: str = "meshlite dashboard") -> asyncio.Task[None]:
    """Serve on ``sock`` in a task; returns once it accepts connections. In the
    background, uvicorn's informational lines are left out of the app's log."""
    context = contextvars.copy_context()
    if isinstance(server, Background):
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
