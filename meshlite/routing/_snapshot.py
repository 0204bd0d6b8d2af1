"""Read-only views of a service's state, for ``mesh.health()`` and ``mesh.snapshot()``.

Both are built from state the service already holds: no I/O, no probing. Each
record has ``as_dict()`` for JSON (the dashboard's REST API serves them).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ._endpoint import Endpoint, percentile
from ._service import Service

__all__ = [
    "BackendHealth",
    "BackendSnapshot",
    "ServiceHealth",
    "ServiceSnapshot",
    "balancer_name",
    "breaker_states",
    "health_of",
    "snapshot_of",
]


class _AsDict:
    __slots__ = ()

    def as_dict(self) -> dict[str, Any]:
        """This record as plain dicts, lists and numbers (JSON-ready)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload, no-any-return]


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendHealth(_AsDict):
    """One backend's routing state: ``"up"``, ``"ejected"`` or ``"unhealthy"``."""

    address: str
    status: str
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceHealth(_AsDict):
    """A service's health: ``status`` is ``"healthy"`` (every backend up),
    ``"degraded"`` (some out), ``"panic"`` (all out, routing to all) or ``"down"``
    (no backend to route to)."""

    name: str
    status: str
    available: int
    total: int
    backends: tuple[BackendHealth, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendSnapshot(_AsDict):
    """One backend's numbers. Latencies are seconds over its recent attempts
    (``None`` before any); ``ewma`` is the peak-EWMA latency the default balancer
    uses; ``ejected_for`` is the seconds of ejection left (0.0 for a manual ejection
    held until restored: ``reason`` says so)."""

    address: str
    weight: float
    zone: str | None
    status: str
    reason: str
    requests: int
    errors: int
    in_flight: int
    latency_p50: float | None
    latency_p90: float | None
    latency_p99: float | None
    ewma: float
    ejections: int
    ejected_for: float
    healthy: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceSnapshot(_AsDict):
    """A service's numbers: totals over its backends, the balancer, panic mode, and
    the state of each circuit breaker in its pipeline (by breaker name or kind)."""

    name: str
    balancer: str
    status: str
    panic: bool
    requests: int
    errors: int
    in_flight: int
    breakers: dict[str, str]
    backends: tuple[BackendSnapshot, ...]


def _status(service: Service, e: Endpoint) -> str:
    if e.ejected_until is not None:
        return "ejected"
    return "up" if e.healthy else "unhealthy"


def _service_status(service: Service) -> tuple[str, int]:
    available = service._due()
    if not service.endpoints or not available:
        return "down", 0
    if service._panic:
        return "panic", 0
    if len(available) == len(service.endpoints):
        return "healthy", len(available)
    return "degraded", len(available)


def health_of(service: Service) -> ServiceHealth:
    """The health of ``service`` from its cached state."""
    status, available = _service_status(service)
    return ServiceHealth(
        name=service.name, status=status, available=available, total=len(service.endpoints),
        backends=tuple(BackendHealth(address=e.address, status=_status(service, e),
                                     reason=service.out_reason(e))
                       for e in service.endpoints))


def breaker_states(service: Service) -> dict[str, str]:
    """The state of each circuit breaker in ``service``'s pipeline, by breaker name
    (or ``circuit_breaker#N`` for an unnamed one)."""
    found: dict[str, str] = {}
    for policy in service.pipeline.walk():
        if policy.kind == "circuit_breaker":
            name = getattr(policy, "name", None) or f"circuit_breaker#{len(found) + 1}"
            found[str(name)] = str(getattr(policy, "state", "unknown"))
    return found


def _backend_snapshot(service: Service, e: Endpoint) -> BackendSnapshot:
    ordered = e.latencies()
    until = e.ejected_until
    # 0.0 also for an ejection held until restored (inf is not JSON; reason says so).
    left = 0.0 if until is None or until == math.inf else max(
        0.0, until - service.clock.monotonic())
    return BackendSnapshot(
        address=e.address, weight=e.weight, zone=e.backend.zone, status=_status(service, e),
        reason=service.out_reason(e), requests=e.requests, errors=e.errors,
        in_flight=e.in_flight, latency_p50=percentile(ordered, 0.5),
        latency_p90=percentile(ordered, 0.9), latency_p99=percentile(ordered, 0.99),
        ewma=e.ewma, ejections=e.ejections, ejected_for=left, healthy=e.healthy)


def balancer_name(service: Service) -> str:
    """The name of ``service``'s balancer (``p2c_ewma``; a balancer of the user's own
    without a ``name``: its class name)."""
    return str(getattr(service.balancer, "name", type(service.balancer).__name__))


def totals_of(service: Service) -> tuple[int, int]:
    """``service``'s attempts and errors, summed over its backends: the ``requests``
    and ``errors`` of :func:`snapshot_of`, without the rest of the snapshot (each
    backend's percentiles, states and breakers: 70-80 times the work)."""
    endpoints = service.endpoints
    return sum(e.requests for e in endpoints), sum(e.errors for e in endpoints)


def snapshot_of(service: Service) -> ServiceSnapshot:
    """The numbers of ``service`` and each of its backends."""
    status, _ = _service_status(service)
    backends = tuple(_backend_snapshot(service, e) for e in service.endpoints)
    return ServiceSnapshot(
        name=service.name, balancer=balancer_name(service), status=status, panic=service._panic,
        requests=sum(b.requests for b in backends), errors=sum(b.errors for b in backends),
        in_flight=sum(b.in_flight for b in backends), breakers=breaker_states(service),
        backends=backends)
