"""The host's latency and backend states, read from the workers' files.

With several workers (``MESHLITE_MULTIPROC_DIR``) the dashboard of the host shows
latency percentiles from the attempt histograms of every worker, merged (bucket
counts add up exactly across processes, unlike percentiles), and each live
worker's view of its backends (health checks, ejections and breakers run per
process, so workers may disagree: where they do, the payload says so).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ._worker_counts import Counts, host_counts, labelled
from ._worker_files import WorkerFile

__all__ = ["BACKEND_GAUGES", "Buckets", "CallerRates", "HostView", "backend_states",
           "caller_totals", "delta",
           "host_buckets", "host_topology", "spread", "state_differences"]

Buckets = list[tuple[float, float]]
"""A histogram as ``(upper bound, cumulative count)``, bounds ascending, ``inf`` last."""

_ATTEMPTS = "meshlite_backend_request_duration_seconds"


def host_buckets(workers: Iterable[WorkerFile]) -> dict[str, Buckets]:
    """Every worker's attempt histogram buckets summed, by service (backends
    together), dead workers included (as the counters are)."""
    sums: dict[str, dict[float, float]] = {}
    for w in workers:
        for f in w.families:
            if f.name != _ATTEMPTS:
                continue
            for s in f.samples:
                if s.suffix != "_bucket":
                    continue
                labels = dict(s.labels)
                service, le = labels.get("service"), labels.get("le")
                if service is None or le is None:
                    continue
                by_le = sums.setdefault(service, {})
                bound = float(le)  # "+Inf" parses as inf
                by_le[bound] = by_le.get(bound, 0.0) + s.value
    return {service: sorted(by_le.items()) for service, by_le in sums.items()}


def spread(buckets: Buckets, limit: int) -> list[float]:
    """At most ``limit`` latencies, ascending, placed as Prometheus's
    ``histogram_quantile`` places them: evenly within each bucket (the first from 0,
    anything beyond the last finite bound at that bound). Their percentiles are the
    histogram's, at bucket resolution."""
    total = int(buckets[-1][1]) if buckets else 0
    if total <= 0:
        return []
    k = min(total, limit)
    out: list[float] = []
    i, lower, below = 0, 0.0, 0.0
    for j in range(k):
        rank = (j + 0.5) * total / k
        while buckets[i][1] < rank:
            lower, below = buckets[i][0], buckets[i][1]
            i += 1
        upper, count = buckets[i]
        out.append(lower if math.isinf(upper) else
                   lower + (upper - lower) * (rank - below) / (count - below))
    return out


def delta(now: Buckets, before: Buckets | None) -> Buckets:
    """The observations between two readings of one cumulative histogram."""
    if not before:
        return now
    old = dict(before)
    return [(bound, max(0.0, count - old.get(bound, 0.0))) for bound, count in now]


BACKEND_GAUGES = {"meshlite_backend_healthy": "healthy", "meshlite_backend_ejected": "ejected"}
"""The per-backend state gauges a worker writes, by the field they fill."""


def backend_states(worker: WorkerFile) -> dict[str, dict[str, Any]]:
    """One worker's view, by service: each backend's ``healthy`` / ``ejected`` and
    each breaker's state."""
    out: dict[str, dict[str, Any]] = {}
    for f in worker.families:
        field = BACKEND_GAUGES.get(f.name)
        for s in f.samples:
            labels = dict(s.labels)
            service = labels.get("service")
            if service is None:
                continue
            view = out.setdefault(service, {"backends": {}, "breakers": {}})
            if field is not None and "backend" in labels:
                view["backends"].setdefault(labels["backend"], {})[field] = bool(s.value)
            elif f.name == "meshlite_circuit_breaker_state" and s.value:
                view["breakers"][labels.get("breaker", service)] = labels.get("state")
    return out


def state_differences(views: dict[int, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Where live workers (``views`` by pid) disagree: one entry per service and
    backend or breaker, with each worker's value."""
    out: list[dict[str, Any]] = []
    services = sorted({s for view in views.values() for s in view})
    for service in services:
        for kind in ("backends", "breakers"):
            names = sorted({n for v in views.values()
                            for n in v.get(service, {}).get(kind, {})})
            for name in names:
                seen = {pid: v.get(service, {}).get(kind, {}).get(name)
                        for pid, v in views.items()}
                if len({repr(x) for x in seen.values()}) > 1:
                    out.append({"service": service, kind[:-1]: name,
                                "workers": {str(pid): x for pid, x in seen.items()}})
    return out


_CALLERS = {"meshlite_server_caller_requests_total": 0, "meshlite_server_caller_errors_total": 1}


def caller_totals(workers: Iterable[WorkerFile]) -> dict[str, tuple[float, float]]:
    """Requests and 5xx answers from each calling service, summed over workers."""
    out: dict[str, list[float]] = {}
    for w in workers:
        for i, caller, value in labelled(w, _CALLERS, "caller"):
            out.setdefault(caller, [0.0, 0.0])[i] += value
    return {c: (v[0], v[1]) for c, v in out.items()}


@dataclass(frozen=True, slots=True)
class HostView:
    """What the dashboard reads from the workers' files, once per tick."""

    read_at: float
    counts: dict[str, Counts]
    latency: dict[str, Buckets]
    callers: dict[str, tuple[float, float]]
    workers: tuple[WorkerFile, ...] = ()
    """The files themselves (an attached dashboard reads the workers' states)."""

    @classmethod
    def read(cls, workers: list[WorkerFile], now: float) -> HostView:
        """Sum ``workers``' files (read at monotonic time ``now``)."""
        return cls(now, host_counts(workers), host_buckets(workers), caller_totals(workers),
                   tuple(workers))


class CallerRates:
    """The host's callers' totals as the dashboard saw them each second, for rates
    per second over the last ``window`` seconds (the inbound middleware's own
    rates are one worker's)."""

    def __init__(self, window: int) -> None:
        self.window = window
        self._seen: deque[dict[str, tuple[float, float]]] = deque(maxlen=window + 1)

    def add(self, totals: dict[str, tuple[float, float]]) -> None:
        """Record this second's totals."""
        self._seen.append(dict(totals))

    def edges(self) -> list[dict[str, Any]]:
        """Each caller: ``caller``, ``requests``, ``errors`` (totals) and
        ``request_rate``, ``error_rate`` (per second, over the window)."""
        if not self._seen:
            return []
        now, oldest = self._seen[-1], self._seen[0]
        out = []
        for caller, (requests, errors) in sorted(now.items()):
            r0, e0 = oldest.get(caller, (0.0, 0.0))
            out.append({"caller": caller, "requests": int(requests), "errors": int(errors),
                        "request_rate": max(0.0, requests - r0) / self.window,
                        "error_rate": max(0.0, errors - e0) / self.window})
        return out


def host_topology(answer: dict[str, Any], mesh: Any, callers: CallerRates) -> dict[str, Any]:
    """``/api/topology`` (one worker's, from ``meshlite._inbound._topology``) made
    the host's when the mesh shares a directory with other workers: the callers'
    edges from every worker's server-side counters, the outgoing edges' totals
    from every worker's attempts (their rates already are the host's)."""
    metrics = getattr(mesh, "metrics", None)
    if metrics is None or metrics.shared is None:
        return answer
    me = mesh.name or "this service"
    edges = [{"from": c["caller"], "to": me, "requests": c["requests"], "errors": c["errors"],
              "request_rate": round(c["request_rate"], 3),
              "error_rate": round(c["error_rate"], 3)} for c in callers.edges()]
    for edge in answer["edges"]:
        if edge["from"] == me and edge["to"] != me:
            _, _, _, attempts, attempt_errors = metrics.call_counts(edge["to"])
            edges.append({**edge, "requests": attempts, "errors": attempt_errors})
    return {**answer, "edges": edges}
