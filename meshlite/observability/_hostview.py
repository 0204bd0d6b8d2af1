"""The host's latency and backend states, read from the workers' files.

With several workers (``MESHLITE_MULTIPROC_DIR``) the dashboard of the host shows
latency percentiles from the attempt histograms of every worker, merged (bucket
counts add up exactly across processes, unlike percentiles), and each live
worker's view of its backends (health checks, ejections and breakers run per
process, so workers may disagree: where they do, the payload says so).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from ._multiproc import WorkerFile

__all__ = ["Buckets", "backend_states", "delta", "host_buckets", "spread", "state_differences"]

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


_BACKEND_GAUGES = {"meshlite_backend_healthy": "healthy", "meshlite_backend_ejected": "ejected"}


def backend_states(worker: WorkerFile) -> dict[str, dict[str, Any]]:
    """One worker's view, by service: each backend's ``healthy`` / ``ejected`` and
    each breaker's state."""
    out: dict[str, dict[str, Any]] = {}
    for f in worker.families:
        field = _BACKEND_GAUGES.get(f.name)
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
