"""The dashboard's ASGI application (Starlette): the page, the REST API, the
WebSocket feed and the Prometheus endpoint, behind :class:`~._auth.Guard`."""

from __future__ import annotations

import importlib.resources
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..._errors import ConfigError
from ..._validate import digits, shown
from ...routing._service import Service
from ...routing._snapshot import balancer_name
from .._prometheus import CONTENT_TYPE, SharedRender, render_mesh
from ._admin import Admin
from ._auth import ASGIApp, Guard, Receive, Scope, Send
from ._frames import hello_frame
from ._gzip import Compress
from ._monitor import Monitor, dumps
from ._payload import (
    health_body,
    health_payload,
    service_dict,
    workers_payload,
    workers_totals,
)
from ._tickets import SUBPROTOCOL

__all__ = ["build_app", "metrics_text"]

_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}


def _assets() -> dict[str, tuple[bytes, str]]:
    # Read once: the page is a few kilobytes and ships inside the package.
    folder = importlib.resources.files(__package__) / "static"
    out = {}
    for item in folder.iterdir():
        suffix = "." + item.name.rsplit(".", 1)[-1]
        if item.is_file() and suffix in _TYPES:
            out[item.name] = (item.read_bytes(), _TYPES[suffix])
    return out


def metrics_text(mesh: Any) -> str:
    """The Prometheus exposition of ``mesh``'s registry (``mesh.metrics``): the one
    place the dashboard calls the metrics code."""
    return render_mesh(mesh)


class _JSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return dumps(content).encode()


def _error(status: int, message: str) -> _JSON:
    return _JSON({"error": message}, status_code=status)


class _Routes:
    """The handlers of the Starlette routes (``/api/health`` is :class:`_HealthFirst`)."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.mesh = monitor.mesh
        self.assets = _assets()
        self.text = SharedRender(lambda: metrics_text(self.mesh))

    def _service(self, request: Request) -> Service:
        name = request.path_params["name"]
        try:
            return self.mesh.service(name)
        except ConfigError:
            raise HTTPException(404, f"no service named {name!r}") from None

    def _services(self) -> list[dict[str, Any]]:
        latest, state = self.monitor.latest, self.monitor.state
        return [service_dict(*state(s), latest.get(s.name), self.mesh)
                for s in self.monitor.services()]

    async def page(self, request: Request) -> Response:
        body, kind = self.assets["index.html"]
        return Response(body, media_type=kind)

    async def static(self, request: Request) -> Response:
        found = self.assets.get(request.path_params["file"])
        if found is None:
            raise HTTPException(404, "no such file")
        return Response(found[0], media_type=found[1])

    async def services(self, request: Request) -> Response:
        return _JSON({"services": self._services()})

    async def service(self, request: Request) -> Response:
        svc = self._service(request)
        return _JSON(service_dict(*self.monitor.state(svc), self.monitor.latest.get(svc.name),
                                  self.mesh))

    async def history(self, request: Request) -> Response:
        svc, most = self._service(request), self.monitor.history_seconds
        raw = request.query_params.get("seconds", str(most))
        seconds = digits(raw)
        if seconds is None or not 1 <= seconds <= most:
            return _error(400, f"seconds must be an integer in [1, {most}], got {shown(raw)}")
        found = self.monitor.histories.get(svc.name)
        if found is None or found.last < 0:
            data: dict[str, Any] = {"start": None, "step": 1, "requests": [], "errors": [],
                                    "p50": [], "p99": []}
        else:
            data = found.columns(seconds)
        return _JSON({"service": svc.name, **data})

    async def alerts(self, request: Request) -> Response:
        return _JSON(self.mesh.alerts.as_dict())

    async def workers(self, request: Request) -> Response:
        view = request.query_params.get("view", "full")
        if view not in ("full", "totals"):
            return _error(400, f"view must be 'full' or 'totals', got {shown(view)}")
        found = workers_payload(self.mesh, with_views=view == "full")
        return _JSON(found if view == "full" else workers_totals(found))

    async def topology(self, request: Request) -> Response:
        from ..._inbound._topology import topology
        from .._hostview import host_topology

        return _JSON(host_topology(topology(self.mesh, self.monitor.latest), self.mesh,
                                   self.monitor.callers))

    async def inbound(self, request: Request) -> Response:
        from ..._inbound._topology import inbound

        return _JSON(inbound(self.mesh))

    async def metrics(self, request: Request) -> Response:
        return Response(await self.text(), headers={"content-type": CONTENT_TYPE})

    async def feed(self, ws: WebSocket) -> None:
        clients = self.monitor.clients
        offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",")]
        await ws.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
        if len(clients) >= self.monitor.max_clients:
            await ws.close(code=1013, reason="too many dashboard clients; try again later")
            return
        clients.add(ws)
        try:
            await ws.send_text(self._hello(ws))
            # The page sends nothing; receiving notices when it leaves.
            while (await ws.receive())["type"] != "websocket.disconnect":
                pass
        except WebSocketDisconnect:
            pass
        finally:
            clients.discard(ws)

    def _hello(self, ws: WebSocket) -> str:
        # Built and greeted at once, nothing awaited: the next frame is a delta from
        # the hello's, so the hello must not miss one.
        monitor = self.monitor
        return dumps(hello_frame(
            monitor.feed.greet(ws), {s.name: balancer_name(s) for s in monitor.services()},
            monitor.history_seconds, self.mesh.alerts.as_dict()))

    async def error(self, request: Request, exc: Exception) -> Response:
        detail = exc.detail if isinstance(exc, HTTPException) else "not found"
        return _error(getattr(exc, "status_code", 404), str(detail))


def build_app(monitor: Monitor, token: str | None, admin_token: str | None = None) -> ASGIApp:
    """The dashboard application for ``monitor``'s mesh, guarded by ``token`` (read)
    and ``admin_token`` (the admin API under ``/api/admin/`` only works with one)."""
    r = _Routes(monitor)
    app = Starlette(routes=[
        Route("/", r.page), Route("/static/{file}", r.static),
        Route("/api/services", r.services), Route("/api/services/{name}", r.service),
        Route("/api/services/{name}/history", r.history),
        Route("/api/alerts", r.alerts), Route("/metrics", r.metrics),
        Route("/api/workers", r.workers),
        Route("/api/topology", r.topology), Route("/api/inbound", r.inbound),
        WebSocketRoute("/ws", r.feed),
        *Admin(monitor.mesh, token=admin_token is not None,
               attached=monitor.attached is not None).routes(),
    ], exception_handlers={HTTPException: r.error})
    return Guard(Compress(_HealthFirst(app, monitor)), token, admin_token)


class _HealthFirst:
    """Answers ``GET /api/health`` before Starlette's routing: the endpoint monitors
    poll, kept to the bare minimum of work per request."""

    def __init__(self, app: ASGIApp, monitor: Monitor) -> None:
        self.app = app
        self.monitor = monitor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/api/health":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD"):
            body, status = b'{"error":"method not allowed"}', 405
        elif self.monitor.attached is not None:  # the workers' state, not this idle mesh's
            states = self.monitor.attached.states()
            body, status = dumps(health_payload(
                {n: h for n, (_, h) in states.items()},
                {n: snap.breakers for n, (snap, _) in states.items()},
                self.monitor.latest, self.monitor.mesh.state)).encode(), 200
        else:
            body, status = health_body(self.monitor.services(), self.monitor.latest,
                                       self.monitor.mesh.state), 200
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body",
                    "body": b"" if scope["method"] == "HEAD" else body})
