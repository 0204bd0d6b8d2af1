"""The state a dashboard attached to running workers shows: theirs, read from their
files.

``meshlite dashboard mesh.yaml`` run with the workers' ``MESHLITE_MULTIPROC_DIR``
reads their files and writes none. Its own mesh makes no call: nothing ejects a
backend there and no breaker opens, so every backend row, breaker state and
health status it holds would say all is well while the workers are in an outage.
An attached dashboard therefore builds each service's snapshot and health from
the live workers' gauges (the same records ``mesh.snapshot()`` and
``mesh.health()`` give, so every answer keeps its shape):

- a backend's status is the worst any live worker gives it (``up`` <
  ``unhealthy`` < ``ejected``), its ``reason`` says in how many workers;
  attempts and errors are summed over every worker (dead ones included, as the
  counters are), calls in flight over the live ones;
- a breaker's state is the worst any live worker gives it (``closed`` <
  ``half_open`` < ``open`` < ``forced_open``);
- a service's routing status is the worst of the live workers' (``down`` when no
  live worker reports it: nothing serves it).

Only the services of the config are shown; their backends are the workers'.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ...routing._service import Service
from ...routing._snapshot import (
    BackendHealth,
    BackendSnapshot,
    ServiceHealth,
    ServiceSnapshot,
    balancer_name,
)
from .._hostview import BACKEND_GAUGES
from .._worker_files import WorkerFile

__all__ = ["AttachedView", "attached", "host_states"]

_BACKEND_ORDER = {"up": 0, "unhealthy": 1, "ejected": 2}
_BREAKER_ORDER = {"disabled": 0, "closed": 0, "half_open": 1, "open": 2, "forced_open": 3}
_SERVICE_ORDER = {"healthy": 0, "degraded": 1, "panic": 2, "down": 3}
_GAUGES = {**BACKEND_GAUGES, "meshlite_backend_in_flight": "in_flight",
           "meshlite_backend_latency_ewma_seconds": "ewma"}
_COUNTERS = {"meshlite_backend_requests_total": 0, "meshlite_backend_errors_total": 1,
             "meshlite_backend_ejections_total": 2}

State = tuple[ServiceSnapshot, ServiceHealth]


def attached(mesh: Any) -> bool:
    """Whether ``mesh`` only reads the workers' shared directory (``meshlite
    dashboard`` attached to them)."""
    metrics = getattr(mesh, "metrics", None)
    shared = None if metrics is None else metrics.shared
    return shared is not None and not shared.writing


@dataclass
class _Seen:
    """One service as the workers' files give it."""

    live: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)
    panic: dict[int, bool] = field(default_factory=dict)
    breakers: dict[str, str] = field(default_factory=dict)
    counts: dict[str, list[float]] = field(default_factory=dict)


def _read(workers: Iterable[WorkerFile]) -> dict[str, _Seen]:
    seen: dict[str, _Seen] = {}
    for w in workers:
        for f in w.families:
            for s in f.samples:
                labels = dict(s.labels)
                service = labels.get("service")
                if service is None:
                    continue
                one = seen.setdefault(service, _Seen())
                address = labels.get("backend")
                if f.name in _COUNTERS and address is not None:
                    one.counts.setdefault(address, [0.0, 0.0, 0.0])[_COUNTERS[f.name]] += s.value
                if not w.alive:
                    continue
                if f.name in _GAUGES and address is not None:
                    one.live.setdefault(w.pid, {}).setdefault(address, {})[
                        _GAUGES[f.name]] = s.value
                elif f.name == "meshlite_service_panic":
                    one.panic[w.pid] = bool(s.value)
                    one.live.setdefault(w.pid, {})
                elif f.name == "meshlite_circuit_breaker_state" and s.value:
                    name, state = labels.get("breaker", service), labels.get("state", "")
                    before = one.breakers.get(name, "closed")
                    if _BREAKER_ORDER.get(state, 0) >= _BREAKER_ORDER.get(before, 0):
                        one.breakers[name] = state
    return seen


def _status(gauges: dict[str, float]) -> str:
    if gauges.get("ejected"):
        return "ejected"
    return "up" if gauges.get("healthy", 1.0) else "unhealthy"


def _worker_status(backends: dict[str, dict[str, float]], panic: bool) -> tuple[str, int]:
    available = sum(1 for g in backends.values() if _status(g) == "up")
    if panic:
        return "panic", 0
    if not backends or not available:
        return "down", 0
    return ("healthy" if available == len(backends) else "degraded"), available


def _row(address: str, one: _Seen, backend: Any) -> BackendSnapshot:
    """One backend's row: the live workers' views of it merged (see the module)."""
    views = [view[address] for view in one.live.values() if address in view]
    status = max((_status(g) for g in views), key=_BACKEND_ORDER.__getitem__)
    out = sum(1 for g in views if _status(g) == status)
    requests, errors, ejections = one.counts.get(address, [0.0, 0.0, 0.0])
    return BackendSnapshot(
        address=address, weight=backend.weight if backend else 1.0,
        zone=backend.zone if backend else None, status=status,
        reason="" if status == "up" else f"{status} in {out} of {len(one.live)} live workers",
        requests=int(requests), errors=int(errors),
        in_flight=int(sum(g.get("in_flight", 0.0) for g in views)),
        latency_p50=None, latency_p90=None, latency_p99=None,
        ewma=max((g.get("ewma", 0.0) for g in views), default=0.0),
        ejections=int(ejections), ejected_for=0.0,
        healthy=all(g.get("healthy", 1.0) for g in views))


def _state(service: Service, one: _Seen) -> State:
    addresses = dict.fromkeys(a for view in one.live.values() for a in view)
    local = {b.address: b for b in service.backends}
    rows = [_row(address, one, local.get(address)) for address in addresses]
    found = [_worker_status(view, one.panic.get(pid, False)) for pid, view in one.live.items()]
    status, _ = max(found, key=lambda f: _SERVICE_ORDER[f[0]], default=("down", 0))
    available = min((a for _, a in found), default=0)
    snapshot = ServiceSnapshot(
        name=service.name, balancer=balancer_name(service), status=status,
        panic=any(one.panic.values()),
        requests=sum(b.requests for b in rows), errors=sum(b.errors for b in rows),
        in_flight=sum(b.in_flight for b in rows), breakers=dict(one.breakers),
        backends=tuple(rows))
    health = ServiceHealth(
        name=service.name, status=status, available=available, total=len(rows),
        backends=tuple(BackendHealth(address=b.address, status=b.status, reason=b.reason)
                       for b in rows))
    return snapshot, health


def host_states(workers: Iterable[WorkerFile], services: Iterable[Service]
                ) -> dict[str, State]:
    """Each of ``services``' snapshot and health as the ``workers``' files give
    them (see the module)."""
    seen = _read(workers)
    return {s.name: _state(s, seen.get(s.name) or _Seen()) for s in services}


class AttachedView:
    """The workers' state for an attached dashboard, read again when the mesh's
    metrics read the workers' files again (at most four times a second).

    Args:
        mesh: The attached process's mesh (its metrics read the shared directory).
    """

    def __init__(self, mesh: Any) -> None:
        self.mesh = mesh
        self._view: object = None
        self._states: dict[str, State] = {}

    def state(self, service: Service) -> State:
        """``service``'s snapshot and health, the workers'."""
        view = self.mesh.metrics.host_view()
        if view is not self._view or service.name not in self._states:
            self._states = host_states(view.workers, self.mesh.services)
            self._view = view
        return self._states.get(service.name) or _state(service, _Seen())

    def states(self) -> dict[str, State]:
        """Every service's :meth:`state`, in the mesh's order."""
        return {s.name: self.state(s) for s in self.mesh.services}
