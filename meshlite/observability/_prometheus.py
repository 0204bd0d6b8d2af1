"""Prometheus text exposition (format 0.0.4): a renderer, an ASGI app, and a small
stdlib HTTP server for processes without the dashboard.

Sources are anything with ``collect()`` (``mesh.metrics``, an ``ml.Metrics``
policy) or a mesh (its ``metrics``), or a list of them.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

from .._errors import ConfigError
from .._fork import after_fork_in_child
from .._validate import fail, listen_host
from ._metrics import Collector, MetricFamily, Sample

if TYPE_CHECKING:
    from http.server import ThreadingHTTPServer

__all__ = [
    "CONTENT_TYPE",
    "MetricsServer",
    "SharedRender",
    "prometheus_app",
    "read_families",
    "render",
    "render_mesh",
    "start_http_server",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The Content-Type of Prometheus text exposition."""

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def collectors(source: Any) -> list[Collector]:
    """The collectors behind ``source``: a collector, a mesh, or an iterable of them.

    Raises:
        ConfigError: ``source`` is none of these, or a mesh made with ``metrics=False``.
    """
    if hasattr(source, "collect"):
        return [source]
    if hasattr(source, "metrics") and hasattr(source, "services"):  # a Mesh
        if source.metrics is None:
            raise ConfigError("metrics: this mesh was made with metrics=False, so it has "
                              "nothing to expose; make it with ml.Mesh(..., metrics=True)",
                              policy="metrics")
        return [source.metrics]  # with what was registered in it (inbound series)
    if isinstance(source, Iterable) and not isinstance(source, str | bytes):
        return [c for item in source for c in collectors(item)]
    return fail("metrics", "source", source, "a mesh, mesh.metrics, an ml.Metrics policy, "
                "or a list of them")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, int) or (math.isfinite(value) and value.is_integer()
                                  and abs(value) < 2**53):
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _merge(families: Iterable[MetricFamily]) -> list[MetricFamily]:
    # Two sources may share a name (two meshes' retries_total): one family, and a
    # series both report is summed, so the exposition stays valid.
    merged: dict[str, tuple[MetricFamily, dict[tuple[str, Any], float]]] = {}
    for family in families:
        entry = merged.get(family.name)
        if entry is None:
            entry = merged[family.name] = (family, {})
        series = entry[1]
        for s in family.samples:
            key = (s.suffix, s.labels)
            series[key] = series.get(key, 0.0) + s.value
    return [MetricFamily(f.name, f.type, f.help,
                         tuple(Sample(k[0], k[1], v) for k, v in series.items()))
            for f, series in merged.values()]


def render(source: Any) -> str:
    """The text exposition of ``source`` (see :func:`collectors`).

    Raises:
        ConfigError: ``source`` is not something with metrics.
    """
    return _render(collectors(source))


def render_mesh(mesh: Any) -> str:
    """The text exposition of ``mesh`` for the dashboard's ``/metrics``; a mesh made
    with ``metrics=False`` gives a comment saying so (still valid exposition)."""
    if getattr(mesh, "metrics", None) is None:
        return "# meshlite: this mesh was made with metrics=False; nothing is recorded\n"
    return _render(collectors(mesh))


def read_families(sources: list[Collector]) -> list[MetricFamily]:
    """One reading of ``sources`` for an exposition, a series of several sources
    summed. A mesh with a shared directory reads every file there, those of the
    process's other meshes included, so a directory is read once (the other meshes'
    files written first): two meshes of a process counted each call twice."""
    read: list[Collector] = []
    directories: set[str] = set()
    for source in sources:
        shared = getattr(source, "shared", None)
        if shared is not None:
            if shared.directory in directories:
                shared.flush()
                continue
            directories.add(shared.directory)
        read.append(source)
    families = [f for c in read for f in c.collect()]
    return _merge(families) if len(read) > 1 else families


def _render(sources: list[Collector]) -> str:
    families = read_families(sources)
    lines: list[str] = []
    for f in families:
        help_text = f.help.replace("\\", "\\\\").replace("\n", "\\n")
        lines.append(f"# HELP {f.name} {help_text}")
        lines.append(f"# TYPE {f.name} {f.type}")
        for s in f.samples:
            if s.labels:
                labels = ",".join(f'{k}="{_escape(v)}"' for k, v in s.labels)
                lines.append(f"{f.name}{s.suffix}{{{labels}}} {_number(s.value)}")
            else:
                lines.append(f"{f.name}{s.suffix} {_number(s.value)}")
    lines.append("")
    return "\n".join(lines)


class SharedRender:
    """The exposition for scrapes on an event loop: rendered in a worker thread, so a
    large mesh's render (tens of milliseconds) does not stop the loop the service's
    calls run on, and shared by the scrapes that arrive while one is being made.

    A scrape takes the render that starts next after it arrived (never one already
    under way, which may have read the registry before the calls the scraper saw
    end), so any number of concurrent scrapes cost at most two renders at a time.

    Args:
        render: Makes the text (called in a worker thread).
    """

    def __init__(self, render: Callable[[], str]) -> None:
        self._render = render
        self._task: asyncio.Future[str] | None = None
        self._started = 0  # renders started so far; the running one's number

    async def __call__(self) -> str:
        """The text, as read after this call began."""
        loop = asyncio.get_running_loop()
        arrived = self._started
        while True:
            task = self._task
            if task is None or task.done() or task.get_loop() is not loop:
                self._started += 1
                task = self._task = asyncio.ensure_future(asyncio.to_thread(self._render))
                task.add_done_callback(_retrieved)
                return await asyncio.shield(task)
            if self._started > arrived:  # began after this scrape arrived: share it
                return await asyncio.shield(task)
            await asyncio.wait((task,))  # under way since before: take the next one


def _retrieved(task: asyncio.Future[str]) -> None:
    # Every scraper waiting on a failed render may have gone: asyncio would then log
    # "exception was never retrieved" (the scrapers still there get the error).
    if not task.cancelled():
        task.exception()


def prometheus_app(source: Any) -> ASGIApp:
    """An ASGI app answering ``GET`` (and ``HEAD``) on any path with the Prometheus
    text of ``source``; mount it at ``/metrics``. It needs no web framework.

    Args:
        source: A mesh, ``mesh.metrics``, an ``ml.Metrics`` policy, or a list of them.

    Returns:
        The ASGI application (it also answers ``lifespan`` events).

    Raises:
        ConfigError: ``source`` has no metrics.
    """
    sources = collectors(source)
    text = SharedRender(lambda: _render(sources))

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[-1]
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1003})
            return
        if scope["type"] != "http":
            return
        if scope["method"] not in ("GET", "HEAD"):
            status, body, ctype = 405, b"use GET\n", "text/plain; charset=utf-8"
        else:
            status, body, ctype = 200, (await text()).encode(), CONTENT_TYPE
        headers = [(b"content-type", ctype.encode()),
                   (b"content-length", str(len(body)).encode())]
        if status == 405:
            headers.append((b"allow", b"GET, HEAD"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body",
                    "body": b"" if scope["method"] == "HEAD" else body})

    return app


class MetricsServer:
    """A running :func:`start_http_server`: ``.url`` is its ``/metrics`` address;
    ``stop()`` (or leaving ``with``) shuts it down."""

    def __init__(self, server: ThreadingHTTPServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        host, port = server.server_address[:2]
        self.host: str = str(host)
        self.port: int = int(port)
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{self.port}/metrics"
        """Where Prometheus scrapes, such as ``http://127.0.0.1:9464/metrics``."""
        after_fork_in_child(self)

    def after_fork(self) -> None:
        """In a forked child: close the child's copy of the listening socket (the
        server thread is the parent's; a copy left open kept the port bound, and
        accepting into a queue nobody reads, after the parent stopped)."""
        self._server.socket.close()

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"MetricsServer({self.url!r})"


def start_http_server(source: Any, port: int = 0, host: str = "127.0.0.1") -> MetricsServer:
    """Serve the Prometheus text of ``source`` at ``http://host:port/metrics`` from a
    background thread (stdlib only: for processes without the dashboard).

    Args:
        source: A mesh, ``mesh.metrics``, an ``ml.Metrics`` policy, or a list of them.
        port: TCP port, 0 for a free one (read it back from ``.url`` / ``.port``).
        host: Address to listen on; the loopback by default. Metrics name your
            services and backends: listen beyond the loopback only on a trusted network.

    Returns:
        The running :class:`MetricsServer`.

    Raises:
        ConfigError: a bad source, port or host.
        OSError: the port is taken.
    """
    sources = collectors(source)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        fail("start_http_server", "port", port, "an integer from 0 to 65535")
    listen_host("start_http_server", "host", host)
    from ._http_server import make_server

    server = make_server(host, port, lambda: _render(sources).encode(), CONTENT_TYPE)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name=f"meshlite-metrics-{port}", daemon=True)
    thread.start()
    return MetricsServer(server, thread)
