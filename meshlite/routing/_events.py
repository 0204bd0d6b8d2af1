"""Routing's event records and errors.

Events are emitted through each :class:`~meshlite.Service`'s hooks
(``service.add_hook`` / ``mesh.add_hook``) and the process-wide hooks, like policy
events. Their ``policy`` field says which part of routing emitted them:
``"outlier_detection"``, ``"health_check"`` or ``"routing"``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._errors import MeshClosedError, ResponseStatusError
from .._events import Event

__all__ = [
    "BackendEjected",
    "BackendReturned",
    "BackendsChanged",
    "EjectionSkipped",
    "HealthCheckFailed",
    "HealthCheckRecovered",
    "MeshClosedError",
    "PanicModeEntered",
    "PanicModeExited",
    "ResponseStatusError",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendEjected(Event):
    """A backend was taken out of rotation for ``seconds``: by outlier detection
    (``policy="outlier_detection"``), or by hand (``service.eject``, the dashboard's
    admin API: ``policy="routing"``, ``reason="manual"``, ``seconds`` is ``inf``
    for an ejection held until restored)."""

    address: str
    reason: str
    seconds: float
    ejections: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendReturned(Event):
    """A backend's ejection ended: it ran out (``reason="expired"``) or it was
    restored by hand (``reason="manual"``). The backend is back in rotation unless it
    fails its active health check (``healthy=False``): then it stays out until the
    check passes (``HealthCheckRecovered``)."""

    address: str
    reason: str = "expired"
    healthy: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class EjectionSkipped(Event):
    """A backend met the ejection criteria but ``max_ejection_percent`` was reached."""

    address: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PanicModeEntered(Event):
    """Every backend was out, so calls go to all of them rather than fail.

    ``reasons`` says, per backend, why it was out.
    """

    backends: int
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class PanicModeExited(Event):
    """At least one backend is back in rotation; panic mode is over."""

    available: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthCheckFailed(Event):
    """Active health checking marked a backend unhealthy."""

    address: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthCheckRecovered(Event):
    """Active health checking marked an unhealthy backend healthy again."""

    address: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendsChanged(Event):
    """A service's backend set changed (``service.set_backends``, discovery)."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
