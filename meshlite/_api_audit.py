"""Auditing changes made by code: a breaker forced open, reset or disabled, a
backend ejected or restored by hand, through the Python API of a mesh's services.

While ``mesh.audit`` is set, the mesh subscribes one :class:`ApiAudit` hook per
service; each manual change it sees becomes an audit record with the actor
``"api"``, like the admin API's records (``mesh.reload()`` is audited by the
reload path). Changes the admin API makes are recorded by the admin API itself,
with its own actor: it runs them inside :func:`~meshlite._audit.audited_by_caller`.
A control that changes nothing (resetting a closed breaker) emits no event and
leaves no record.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._audit import ACTOR_API, caller_audits, secret_mask
from ._events import CircuitStateChanged, Event
from .routing._events import BackendEjected, BackendReturned

if TYPE_CHECKING:
    from .routing._service import Service

__all__ = ["ApiAudit", "manual_change"]

_BREAKER_ACTIONS = {"forced_open": "force_open", "disabled": "disable"}


def manual_change(service: str, event: Event) -> tuple[str, str, dict[str, Any]] | None:
    """The (action, target, details) of ``event`` when it records a change made by
    hand to ``service``; None for anything else."""
    if isinstance(event, CircuitStateChanged):
        action = _BREAKER_ACTIONS.get(event.state)
        if action is None and event.state == "closed" and event.reason == "reset":
            action = "reset"
        if action is None:
            return None
        return (f"breaker.{action}", f"{service}/breakers/{event.name}",
                {"previous": event.previous, "state": event.state})
    if isinstance(event, BackendEjected) and event.reason == "manual":
        seconds = None if math.isinf(event.seconds) else event.seconds
        return ("backend.eject", f"{service}/backends/{event.address}",
                {"seconds": seconds})
    if isinstance(event, BackendReturned) and event.reason == "manual":
        return "backend.restore", f"{service}/backends/{event.address}", {}
    return None


class ApiAudit:
    """The hooks that audit one mesh's manual changes (see the module docstring).

    Args:
        mesh: The mesh whose ``audit`` log receives the records.
    """

    def __init__(self, mesh: Any) -> None:
        self.mesh = mesh
        self._removers: dict[int, Callable[[], None]] = {}  # by id of the service

    def watch(self, service: Service) -> None:
        """Audit the manual changes of ``service`` from now on."""
        self._removers[id(service)] = service.add_hook(
            functools.partial(self._event, service.name))

    def forget(self, service: Service) -> None:
        """Stop auditing ``service`` (retired from the mesh)."""
        remove = self._removers.pop(id(service), None)
        if remove is not None:
            remove()

    def close(self) -> None:
        """Stop auditing (every service)."""
        removers, self._removers = self._removers, {}
        for remove in removers.values():
            remove()

    def _event(self, service: str, event: Event) -> None:
        log = self.mesh.audit
        if log is None or caller_audits():
            return
        change = manual_change(service, event)
        if change is not None:
            action, target, details = change
            log.record(actor=ACTOR_API, action=action, target=target, result="ok",
                       details=details, mask=secret_mask(self.mesh))
