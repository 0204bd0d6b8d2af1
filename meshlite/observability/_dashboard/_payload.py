"""The JSON shapes the dashboard serves (REST answers and WebSocket messages).

Built by hand from the snapshot and health records rather than with
``dataclasses.asdict``, which is recursive and slow: ``/api/health`` answers in
well under a millisecond. Nothing here reads call arguments, headers or tokens:
only counters, states and addresses.
"""

from __future__ import annotations

import dataclasses
import json
import os
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from ..._memo import remember
from ...routing._service import Service
from ...routing._snapshot import (
    ServiceHealth,
    ServiceSnapshot,
    _service_status,
    _status,
    breaker_states,
)
from .._hostview import backend_states, state_differences
from .._worker_counts import Counts, host_counts, worker_counts
from .._worker_files import WorkerFile
from ._history import OPEN_STATES, ServiceSecond, call_status

__all__ = [
    "STATUS_ORDER",
    "calls_entry",
    "workers_payload",
    "workers_totals",
    "health_body",
    "health_dict",
    "health_payload",
    "micro",
    "rate_dict",
    "service_dict",
    "tick_payload",
]

STATUS_ORDER = {"healthy": 0, "degraded": 1, "failing": 2, "panic": 3, "down": 4}
"""Service statuses from best to worst; the mesh's status is its worst service's
(``"failing"``: calls fail while backends are up, as with a breaker open)."""


def micro(value: float | None) -> float | None:
    """``value`` (seconds) to the microsecond: plenty for a dashboard, and it keeps
    messages short. The feed's latencies and the history's are rounded alike, so a
    chart drawn from either is the same."""
    return None if value is None else round(value, 6)


def health_dict(health: ServiceHealth) -> dict[str, Any]:
    """One service's health, as ``ServiceHealth.as_dict()`` gives it."""
    return {"name": health.name, "status": health.status, "available": health.available,
            "total": health.total,
            "backends": [{"address": b.address, "status": b.status, "reason": b.reason}
                         for b in health.backends]}


def calls_entry(routing: str, breakers: Mapping[str, str], second: ServiceSecond | None
                ) -> dict[str, str] | None:
    """A service's entry in ``/api/health``'s ``calls``: ``{"status": "failing",
    "reason": ...}`` when its calls fail while its routing is up (a breaker open or
    forced open now, or at least half of the last second's calls failed:
    ``call_status``); else None (a few failed calls leave it out)."""
    calls, failed = (0, 0) if second is None else (second.requests, second.errors)
    status = call_status(routing, calls, failed, breakers.values())
    if status != "failing":
        return None
    opened = [f"circuit breaker {n} is {s}" for n, s in breakers.items() if s in OPEN_STATES]
    reason = "; ".join(opened) or f"{failed} of {calls} calls failed in the last second"
    return {"status": status, "reason": reason}


def _overall(worst: int, calls: Mapping[str, Mapping[str, str]], state: str) -> str:
    """``/api/health``'s ``status``: the worst routing or call-aware status of any
    service; ``down`` while the mesh is closing or closed (it refuses every call)."""
    if state in ("closing", "closed"):
        return "down"
    worst = max((worst, *(STATUS_ORDER[c["status"]] for c in calls.values())))
    return _STATUS_NAMES[worst]


def health_payload(health: Mapping[str, ServiceHealth],
                   breakers: Mapping[str, Mapping[str, str]] | None = None,
                   latest: Mapping[str, ServiceSecond] | None = None,
                   state: str = "open") -> dict[str, Any]:
    """``/api/health`` (see :func:`health_body`) from health records, each service's
    breaker states (``breakers``), its last second (``latest``) and the mesh's
    lifecycle ``state``."""
    worst = max((STATUS_ORDER.get(h.status, 4) for h in health.values()), default=0)
    calls = {}
    for name, h in health.items():
        entry = calls_entry(h.status, (breakers or {}).get(name, {}), (latest or {}).get(name))
        if entry is not None:
            calls[name] = entry
    return {"status": _overall(worst, calls, state), "mesh": state, "calls": calls,
            "services": {n: health_dict(h) for n, h in health.items()}}


_STATUS_NAMES = {v: k for k, v in STATUS_ORDER.items()}

_UP_ROWS = 4096
"""Backend addresses whose row in rotation the dashboard keeps made."""


class _UpRows(dict[str, dict[str, str]]):
    # The row of a backend in rotation never changes: made once per address.
    def __missing__(self, address: str) -> dict[str, str]:
        # backends come and go with discovery: stay bounded
        return remember(self, address, {"address": address, "status": "up", "reason": ""},
                        _UP_ROWS)


_UP = _UpRows()
_encode = json.JSONEncoder(separators=(",", ":")).encode


class _Breakers(weakref.WeakKeyDictionary[Any, tuple[Any, ...]]):
    # The breakers of each pipeline, found once: health_body reads their states on
    # every poll. Held weakly: a pipeline a reload replaced, or a closed mesh's,
    # goes with its policies.
    def of(self, service: Service) -> tuple[Any, ...]:
        pipeline = service.pipeline
        found = self.get(pipeline)
        if found is None:
            found = self[pipeline] = tuple(
                p for p in pipeline.walk() if p.kind == "circuit_breaker")
        return found


_BREAKERS = _Breakers()


def health_body(services: Iterable[Service], latest: Mapping[str, ServiceSecond] | None = None,
                state: str = "open") -> bytes:
    """``/api/health`` as JSON bytes, read straight from the services' state:
    ``services``, each service's routing view (``ServiceHealth``, as
    ``mesh.health()``); ``calls``, the services whose calls fail while routing is
    up (:func:`calls_entry`, from the breakers' states now and ``latest``, each
    service's last second); ``mesh``, the mesh's lifecycle ``state``; ``status``,
    the worst of it all (``down`` while the mesh closes).

    The same answer as :func:`health_payload` without building the
    ``ServiceHealth`` records: this endpoint is what monitors and load balancers
    poll, so it skips every allocation it can (p99 under 1 ms over loopback).
    """
    worst = 0
    services_out: dict[str, Any] = {}
    calls: dict[str, dict[str, str]] = {}
    for svc in services:
        status, available = _service_status(svc)
        worst = max(worst, STATUS_ORDER.get(status, 4))
        second = latest.get(svc.name) if latest else None
        if (second is not None and second.errors) or any(
                getattr(b, "state", "") in OPEN_STATES for b in _BREAKERS.of(svc)):
            entry = calls_entry(status, breaker_states(svc), second)  # (rare: build it)
            if entry is not None:
                calls[svc.name] = entry
        endpoints = svc.endpoints
        services_out[svc.name] = {
            "name": svc.name, "status": status, "available": available,
            "total": len(endpoints),
            "backends": [_UP[e.address] if e.ejected_until is None and e.healthy
                         else {"address": e.address, "status": _status(svc, e),
                               "reason": svc.out_reason(e)} for e in endpoints]}
    return _encode({"status": _overall(worst, calls, state), "mesh": state, "calls": calls,
                    "services": services_out}).encode()


def rate_dict(second: ServiceSecond | None) -> dict[str, Any] | None:
    """The last complete second of a service: calls (``requests``), failed calls
    (``errors``) and their error rate, attempts, attempt errors and retries, the
    call-aware status, and attempt latency percentiles (seconds); ``None`` before
    the first sample."""
    if second is None:
        return None
    rate = second.errors / second.requests if second.requests else None
    return {"second": second.second, "requests": second.requests, "errors": second.errors,
            "error_rate": micro(rate), "attempts": second.attempts,
            "attempt_errors": second.attempt_errors, "retries": second.retries,
            "status": second.status or second.health.status,
            "p50": micro(second.p50), "p99": micro(second.p99)}


def service_dict(snapshot: ServiceSnapshot, health: ServiceHealth,
                 second: ServiceSecond | None, mesh: Any = None) -> dict[str, Any]:
    """A service for ``/api/services``: its snapshot (as ``ServiceSnapshot.as_dict()``),
    its health, and its last second (``"last_second"``). With several workers
    sharing a directory (``mesh`` given), its ``requests`` and ``errors`` are every
    worker's attempts and attempt errors, summed, as the charts' are."""
    data = snapshot.as_dict()
    metrics = getattr(mesh, "metrics", None)
    if metrics is not None and metrics.shared is not None:
        _, _, _, attempts, attempt_errors = metrics.call_counts(snapshot.name)
        data["requests"], data["errors"] = attempts, attempt_errors
    data["health"] = health_dict(health)
    data["last_second"] = rate_dict(second)
    # Routing and breakers as they are now (as the rest of this answer: ``panic``, the
    # backends, ``health``), calls as the last second saw them: a service that went
    # into panic or recovered since that second is not shown as it was then.
    calls, failed = (0, 0) if second is None else (second.requests, second.errors)
    data["status"] = call_status(health.status, calls, failed, snapshot.breakers.values())
    return data


def _backend_row(b: Any) -> list[Any]:
    return [b.address, b.status, b.in_flight, round(b.ejected_for, 1), b.requests, b.errors,
            micro(b.latency_p99)]


def tick_payload(seconds: Iterable[ServiceSecond], alerts: dict[str, Any] | None,
                 firing: int) -> dict[str, Any]:
    """The WebSocket update sent every second.

    ``services`` maps each name to its last second and state (``requests`` and
    ``errors`` are calls and failed calls; ``attempts``, ``attempt_errors`` and
    ``retries`` what the backends saw); each backend is a
    row ``[address, status, in_flight, ejected_for, requests, errors, p99]``.
    ``alerts`` (the ``/api/alerts`` answer) is present only when an alert fired
    or resolved in that second.
    """
    services: dict[str, Any] = {}
    second = -1
    for s in seconds:
        second = max(second, s.second)
        snap = s.snapshot
        services[s.name] = {
            "status": s.status or s.health.status, "available": s.health.available,
            "total": s.health.total, "requests": s.requests, "errors": s.errors,
            "attempts": s.attempts, "attempt_errors": s.attempt_errors,
            "retries": s.retries,
            "p50": micro(s.p50), "p99": micro(s.p99), "in_flight": snap.in_flight,
            "panic": snap.panic, "breakers": snap.breakers,
            "backends": [_backend_row(b) for b in snap.backends]}
    out: dict[str, Any] = {"type": "tick", "second": second, "services": services,
                           "firing": firing}
    if alerts is not None:
        out["alerts"] = alerts
    return out


def workers_payload(mesh: Any, with_views: bool = True) -> dict[str, Any]:
    """``/api/workers``: each worker process's calls, failed calls, retries, attempts
    and attempt errors per service since it started, and their sum over the host
    (``services``). One process without a shared directory reports itself alone;
    with one (``MESHLITE_MULTIPROC_DIR``) every worker that wrote a file, dead ones
    included (``alive``: false) so the totals neither drop nor double-count when a
    worker restarts. Each live worker also gives its view of the backends
    (``backends``: health, ejection and breaker states, which each process keeps on
    its own); ``differences`` lists where live workers disagree; ``serving`` marks
    the worker this process is, whose own view the page's backend rows, breakers and
    ``status`` show (none, for a dashboard attached to the workers from a process of
    its own). ``with_views=False``
    skips this process's view when it is the only worker (no directory): there is
    nothing it could disagree with, and reading every backend's state is most of
    the answer's cost at scale."""
    metrics = getattr(mesh, "metrics", None)
    shared = None if metrics is None else metrics.shared
    rows: list[tuple[int, bool, dict[str, Counts]]] = []
    found: list[WorkerFile] = []
    if shared is not None:
        found = shared.workers()
        rows = [(w.pid, w.alive, worker_counts(w)) for w in found]
        totals = host_counts(found)
    elif metrics is not None:
        mine = {}
        for svc in mesh.services:
            calls, failed, retries, _, _ = metrics.call_counts(svc.name)
            endpoints = mesh.service(svc.name).endpoints
            mine[svc.name] = Counts(calls, failed, retries, sum(e.requests for e in endpoints),
                                    sum(e.errors for e in endpoints))
        rows, totals = [(os.getpid(), True, mine)], mine
        if with_views:
            found = [WorkerFile(os.getpid(), True, tuple(metrics.collect_local()))]
    else:
        totals = {}
    views = {w.pid: backend_states(w) for w in found if w.alive}
    me = os.getpid()
    return {"directory": None if shared is None else shared.directory,
            "workers": [{"pid": pid, "alive": up, "serving": pid == me,
                         "services": {n: dataclasses.asdict(c) for n, c in sorted(by.items())},
                         **({"backends": views[pid]} if pid in views else {})}
                        for pid, up, by in rows],
            "services": {n: dataclasses.asdict(c) for n, c in sorted(totals.items())},
            "differences": state_differences(views)}


def workers_totals(full: dict[str, Any]) -> dict[str, Any]:
    """``/api/workers?view=totals``, from the full answer (:func:`workers_payload`):
    each worker's ``pid``, ``alive``, ``serving`` and ``totals`` (its counts summed over
    services),
    the ``directory`` and the ``differences``; what the page shows, without each
    worker's counts per service and view of every backend (1.9 MB at 300 services
    of 50 backends)."""
    workers = []
    for w in full["workers"]:
        totals = dict.fromkeys(Counts.__dataclass_fields__, 0)
        for counts in w["services"].values():
            for key in totals:
                totals[key] += counts[key]
        workers.append({"pid": w["pid"], "alive": w["alive"], "serving": w["serving"],
                        "totals": totals})
    return {"directory": full["directory"], "workers": workers,
            "differences": full["differences"]}
