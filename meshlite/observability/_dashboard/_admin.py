"""The dashboard's admin API: change a running mesh by hand, each action audited.

Every route is a ``POST`` answering JSON, and needs the dashboard's admin token
(the read token gets 403): a dashboard started without an admin token refuses
them all (403), even on loopback, because anything local (another user, a browser
page) could otherwise reach them.

- ``/api/admin/services/{name}/breakers/{breaker}/{force_open|reset|disable}``
- ``/api/admin/services/{name}/backends/{address}/{eject|restore}`` (address
  URL-encoded; ``eject?seconds=N`` for a timed ejection)
- ``/api/admin/reload``: re-read the config file the mesh follows.
- ``/api/admin/silences?seconds=N[&service=S][&rule=R][&comment=C]``: mute alert
  notifications (201 and the silence); ``/api/admin/silences/{id}/expire`` ends one.

Each action appends a record to ``mesh.audit`` (when set) with the actor
``admin:<client address>``; messages and records have config secrets masked.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..._audit import admin_actor, audited_by_caller, mask_strings, secret_mask
from ..._errors import ConfigError, MeshliteError
from ..._printable import printable
from ..._validate import digits, shown
from ...policies._circuit_breaker import CircuitBreaker
from ...routing._service import Service
from ...routing._snapshot import _status
from ...state._base import StoreFallback

__all__ = ["BACKEND_ACTIONS", "BREAKER_ACTIONS", "NO_TOKEN", "Admin", "breakers_of"]

BREAKER_ACTIONS = ("force_open", "reset", "disable")
BACKEND_ACTIONS = ("eject", "restore")

NO_TOKEN = ("the admin API needs an admin token, and this dashboard was started without "
            "one: start it with one (mesh.serve_dashboard(admin_token=...), 'dashboard: "
            "{admin_token: ...}' in the config, or MESHLITE_DASHBOARD_ADMIN_TOKEN for "
            "meshlite dashboard) and send 'Authorization: Bearer <admin token>'")

ATTACHED = ("this dashboard is attached to the workers' shared directory: it reads their "
            "files, and its own mesh serves no call, so an action here would change nothing "
            "they run; take admin actions on the dashboard the leading worker serves")

_log = logging.getLogger("meshlite.dashboard")

_TARGET_SHOWN = 300  # characters of an action's target in the log and the audit

Body = dict[str, Any]
Work = Callable[[], Awaitable[tuple[int, Body]]]


class _Refused(Exception):
    """An admin request that cannot be done: its status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def breakers_of(service: Service) -> list[CircuitBreaker]:
    """The circuit breakers of ``service``'s pipeline, outermost first (position 1
    is the first)."""
    return [p for p in service.pipeline.walk() if isinstance(p, CircuitBreaker)]


def _control(breaker: CircuitBreaker, action: str) -> None:
    """Apply ``action`` to ``breaker``: 503 when its shared store did not answer,
    whatever its ``on_error`` (the action then holds in this process only)."""
    missed: list[StoreFallback] = []

    def note(event: Any) -> None:
        if isinstance(event, StoreFallback) and event.step == "manage":
            missed.append(event)

    remove = breaker.add_hook(note)
    try:
        getattr(breaker, action)()
    except MeshliteError as failure:  # on_error="raise"
        raise _Refused(503, f"{action} failed: {failure}") from None
    finally:
        remove()
    if missed:
        raise _Refused(503, f"{action} applied in this process only: the shared store "
                            f"{missed[0].store} did not answer, so other processes still "
                            "hold the previous state; retry once it is back")


def _find_breaker(service: Service, key: str) -> tuple[int, CircuitBreaker]:
    found = breakers_of(service)
    named = [(i, b) for i, b in enumerate(found, 1) if b.name == key]
    if len(named) == 1:
        return named[0]
    if named:
        raise _Refused(409, f"service {service.name!r} has {len(named)} circuit breakers "
                            f"named {key!r}; give them distinct names (name=...) or "
                            f"address one by its position, 1 to {len(found)}")
    position = digits(key)
    if position is not None and 1 <= position <= len(found):
        return position, found[position - 1]
    listing = ", ".join(f"{i}: {b.name!r}" for i, b in enumerate(found, 1)) or "none"
    raise _Refused(404, f"service {service.name!r} has no circuit breaker {key!r} "
                        f"(its breakers by position: {listing})")


def _seconds(request: Request) -> float | None:
    raw = request.query_params.get("seconds")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise _Refused(400, f"seconds must be a number > 0, got {raw!r}; leave it out to "
                            "eject until restored")
    return seconds


class Admin:
    """The admin routes of one dashboard.

    Args:
        mesh: The mesh they act on.
        token: Whether the dashboard has an admin token (the guard checks it);
            without one every admin route answers 403.
        attached: Whether the dashboard is attached to workers (``meshlite
            dashboard`` reading their shared directory): every admin route then
            answers 403.
    """

    def __init__(self, mesh: Any, *, token: bool, attached: bool = False) -> None:
        self.mesh = mesh
        self.token = token
        self.attached = attached

    def routes(self) -> list[Route]:
        """The Starlette routes, under ``/api/admin/``."""
        base = "/api/admin/services/{name}"
        return [
            Route("/api/admin/reload", self.reload, methods=["POST"]),
            Route("/api/admin/silences", self.silence, methods=["POST"]),
            Route("/api/admin/silences/{id}/expire", self.expire, methods=["POST"]),
            Route(base + "/breakers/{breaker}/{action}", self.breaker, methods=["POST"]),
            Route(base + "/backends/{address:path}/{action}", self.backend, methods=["POST"]),
        ]

    def _service(self, name: str) -> Service:
        try:
            service: Service = self.mesh.service(name)
        except ConfigError:
            known = ", ".join(sorted(s.name for s in self.mesh.services)) or "none"
            raise _Refused(404, f"no service named {name!r} (services: {known})") from None
        return service

    async def _run(self, request: Request, action: str, target: str, work: Work, *,
                   audited_by_work: bool = False) -> Response:
        """Do ``work`` and answer; audit it, unless ``work`` audits its own success."""
        if not self.token:
            return JSONResponse({"error": NO_TOKEN}, status_code=403)
        if self.attached:
            return JSONResponse({"error": ATTACHED}, status_code=403)
        actor = admin_actor(request.client.host if request.client else None)
        target = printable(target, _TARGET_SHOWN)  # names from the URL, decoded
        error: str | None = None
        try:
            with audited_by_caller():  # recorded below, with this actor, not as "api"
                status, body = await work()
        except _Refused as refused:
            status, body, error = refused.status, {"error": refused.message}, refused.message
        mask = secret_mask(self.mesh)
        result = "error" if error is not None else "ok"
        log = self.mesh.audit
        if log is not None and not (audited_by_work and error is None):
            log.record(actor=actor, action=action, target=target, result=result,
                       error=error, details={"status": status}, mask=mask)
        outcome = error or body.get("result", result)
        _log.info("%s", mask(f"admin API: {actor} {action} {target}: {outcome}"))
        return JSONResponse(mask_strings(body, mask), status_code=status)

    async def breaker(self, request: Request) -> Response:
        """``POST .../breakers/{breaker}/{force_open|reset|disable}``."""
        name, key = request.path_params["name"], request.path_params["breaker"]
        action = request.path_params["action"]

        async def work() -> tuple[int, Body]:
            if action not in BREAKER_ACTIONS:
                raise _Refused(404, f"no breaker action {action!r} (actions: "
                                    f"{', '.join(BREAKER_ACTIONS)})")
            position, breaker = _find_breaker(self._service(name), key)
            _control(breaker, action)
            return 200, {"service": name, "breaker": breaker.name, "position": position,
                         "action": action, "state": breaker.state}

        return await self._run(request, f"breaker.{action}", f"{name}/breakers/{key}", work)

    async def backend(self, request: Request) -> Response:
        """``POST .../backends/{address}/{eject|restore}``."""
        name, address = request.path_params["name"], request.path_params["address"]
        action = request.path_params["action"]

        async def work() -> tuple[int, Body]:
            if action not in BACKEND_ACTIONS:
                raise _Refused(404, f"no backend action {action!r} (actions: "
                                    f"{', '.join(BACKEND_ACTIONS)})")
            service = self._service(name)
            endpoint = next((e for e in service.endpoints if e.address == address), None)
            if endpoint is None:
                known = ", ".join(e.address for e in service.endpoints) or "none"
                raise _Refused(404, f"service {name!r} has no backend {address!r} "
                                    f"(backends: {known}); URL-encode the address")
            body: Body = {"service": name, "backend": address, "action": action}
            if action == "eject":
                seconds = _seconds(request)
                service.eject(address, seconds)
                body["seconds"] = seconds
            else:
                body["was_ejected"] = service.restore(address)
            body["status"] = _status(service, endpoint)
            body["reason"] = service.out_reason(endpoint)
            return 200, body

        return await self._run(request, f"backend.{action}", f"{name}/backends/{address}",
                               work)

    async def reload(self, request: Request) -> Response:
        """``POST /api/admin/reload``: the reload path audits it (actor
        ``admin:<address>``); a mesh following no file answers 409."""
        mesh = self.mesh
        actor = admin_actor(request.client.host if request.client else None)
        load = sys.modules.get("meshlite.config._load")
        managed = None if load is None else load.managed_of(mesh)
        target = managed.path if managed is not None else "config"

        async def work() -> tuple[int, Body]:
            if managed is None:
                raise _Refused(409, "this mesh follows no config file, so there is nothing "
                                    "to reload; build it with ml.Mesh.from_config(path) or "
                                    "call mesh.watch(path)")
            from ...config._reload import reload_now

            outcome = await reload_now(mesh, actor=actor)
            body: Body = {"result": outcome, "path": managed.path,
                          "version": mesh.config_version}
            if outcome != "rejected":
                return 200, body
            error = mesh.reload_errors[-1]
            body.update(error=str(error), errors=list(getattr(error, "errors", ())))
            return 422, body

        return await self._run(request, "config.reload", target, work, audited_by_work=True)

    async def silence(self, request: Request) -> Response:
        """``POST /api/admin/silences?seconds=N[&service=S][&rule=R][&comment=C]``."""
        query = request.query_params
        service, rule = query.get("service"), query.get("rule")

        async def work() -> tuple[int, Body]:
            if service is not None:
                self._service(service)
            try:
                silence = self.mesh.alerts.silences.add(
                    seconds=_number(query.get("seconds")), service=service, rule=rule,
                    comment=query.get("comment", ""))
            except ConfigError as bad:
                raise _Refused(400, str(bad)) from None
            return 201, silence.as_dict()

        return await self._run(request, "alerts.silence", f"{service or '*'}/{rule or '*'}",
                               work)

    async def expire(self, request: Request) -> Response:
        """``POST /api/admin/silences/{id}/expire``: end a silence now."""
        key = request.path_params["id"]

        async def work() -> tuple[int, Body]:
            number = digits(key)
            if number is None or not self.mesh.alerts.silences.remove(number):
                raise _Refused(404, f"no active silence {shown(key)} (GET /api/alerts lists "
                                    "them)")
            return 200, {"id": number, "result": "expired"}

        return await self._run(request, "alerts.expire", f"silences/{key}", work)


def _number(raw: str | None) -> float:
    try:
        return float(raw) if raw is not None else math.nan
    except ValueError:
        return math.nan
