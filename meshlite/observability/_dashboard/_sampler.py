"""The sampler of the per-second aggregates (``_history.ServiceSecond``).

Once a second the sampler reads the calls the mesh's metrics count per service
(calls and failed calls, refused ones included: a breaker that is open fails every
call without an attempt), the retries counted from events, and what routing
already counts on each endpoint (attempts, attempt errors, the reservoir of recent
latencies), so the call path pays nothing for the dashboard. The latencies of one
second are the newest ``requests - previous requests`` entries of each endpoint's
reservoir.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable

from ...routing._endpoint import Endpoint, percentile
from ...routing._service import Service
from ...routing._snapshot import ServiceHealth, ServiceSnapshot, health_of, snapshot_of
from .._hostview import Buckets, delta, spread
from ._history import ServiceSecond, call_status

__all__ = ["MAX_SAMPLES_PER_SECOND", "CallCounts", "Sampler", "Totals"]

MAX_SAMPLES_PER_SECOND = 1024
"""Latencies kept per service and second for alert windows (evenly thinned)."""

Totals = tuple[int, int, int, int | None, int | None]
"""A service's calls, failed calls, retries, attempts and attempt errors so far
(cumulative); attempts are None where the sampler counts them from the endpoints
itself (one process)."""

HostLatency = Callable[[str], Buckets | None]
"""Reads a service's attempt histogram summed over the host's workers, or None for
one process (the sampler then reads the endpoints' own latencies)."""

CallCounts = Callable[[str], Totals | None]
"""Reads a service's :data:`Totals`, or None when the mesh records no metrics (the
sampler then counts attempts as calls)."""


class Sampler:
    """Measures each service once a second from its calls (``calls``) and its
    endpoints' counters.

    Args:
        calls: Reads a service's cumulative calls, failed calls and retries.
        latency: Reads a service's host-wide attempt histogram (several workers):
            the latencies of a second are then the host's, at bucket resolution.
        state: Reads a service's snapshot and health (default: its own, from
            ``snapshot_of`` and ``health_of``; a dashboard attached to workers
            reads theirs).
    """

    def __init__(self, calls: CallCounts | None = None,
                 latency: HostLatency | None = None,
                 state: Callable[[Service], tuple[ServiceSnapshot, ServiceHealth]] | None = None,
                 ) -> None:
        self._state = state
        # service name -> endpoint -> (requests, errors) at the previous tick
        self._seen: dict[str, dict[Endpoint, tuple[int, int]]] = {}
        # service name -> (calls, failed, retries, attempts, attempt errors) last tick
        self._calls_seen: dict[str, tuple[int, int, int, int, int]] = {}
        self._read_calls = calls
        self._read_latency = latency
        self._buckets_seen: dict[str, Buckets] = {}
        self._primed = False

    def sample(self, services: Iterable[Service], second: int) -> list[ServiceSecond]:
        """Measure every service for ``second``: the traffic since the last call.

        Endpoints that existed at the first call start from their counts then;
        endpoints that appear later (new backends) start from zero.
        """
        out = [self._one(service, second) for service in services]
        self._primed = True
        if len(self._seen) > len(out):  # a service left the mesh: forget its counts
            names = {s.name for s in out}
            for seen in (self._seen, self._calls_seen, self._buckets_seen):
                for name in seen.keys() - names:
                    del seen[name]
        return out

    def counted(self) -> dict[str, tuple[int, int]]:
        """Each service's cumulative calls and failed calls as of the last sample
        (from the mesh's call metrics; empty without them)."""
        return {name: (seen[0], seen[1]) for name, seen in self._calls_seen.items()}

    def _one(self, service: Service, second: int) -> ServiceSecond:
        before = self._seen.get(service.name, {})
        now: dict[Endpoint, tuple[int, int]] = {}
        requests = errors = 0
        fresh: list[float] = []
        for e in service.endpoints:
            base = before.get(e)
            if base is None:
                base = (0, 0)
                if not self._primed:
                    base = (e.requests, e.errors)
            with e._lock:  # counters and reservoir move together under this lock
                r, err = e.requests, e.errors
                n = min(r - base[0], len(e._latencies))
                if n > 0:
                    fresh.extend(itertools.islice(e._latencies, len(e._latencies) - n, None))
            now[e] = (r, err)
            requests += max(0, r - base[0])
            errors += max(0, err - base[1])
        self._seen[service.name] = now
        fresh.sort()
        host = self._host_latencies(service.name)
        if host is not None:
            fresh = host
        calls, failed, retries, requests, errors = self._calls_delta(
            service.name, requests, errors)
        snapshot, health = ((snapshot_of(service), health_of(service)) if self._state is None
                            else self._state(service))
        return ServiceSecond(
            name=service.name, second=second, requests=calls, errors=failed,
            p50=percentile(fresh, 0.5), p99=percentile(fresh, 0.99),
            samples=_thin(fresh), snapshot=snapshot, health=health,
            attempts=requests, attempt_errors=errors, retries=retries,
            status=call_status(health.status, calls, failed, snapshot.breakers.values()))

    def _host_latencies(self, name: str) -> list[float] | None:
        buckets = self._read_latency(name) if self._read_latency is not None else None
        if buckets is None:
            return None
        before = self._buckets_seen.get(name)
        if before is None and not self._primed:
            before = buckets
        self._buckets_seen[name] = buckets
        return spread(delta(buckets, before), MAX_SAMPLES_PER_SECOND)

    def _calls_delta(self, name: str, attempts: int, attempt_errors: int
                     ) -> tuple[int, int, int, int, int]:
        total = self._read_calls(name) if self._read_calls is not None else None
        if total is None:  # no call metrics: attempts are the best count there is
            return attempts, attempt_errors, 0, attempts, attempt_errors
        counted = (total[0], total[1], total[2], total[3] or 0, total[4] or 0)
        before = self._calls_seen.get(name)
        if before is None:
            before = counted if not self._primed else (0, 0, 0, 0, 0)
        self._calls_seen[name] = counted
        calls, failed, retries, host_attempts, host_errors = (
            max(0, a - b) for a, b in zip(counted, before, strict=True))
        if total[3] is None:  # one process: the endpoints' own deltas
            return calls, failed, retries, attempts, attempt_errors
        return calls, failed, retries, host_attempts, host_errors


def _thin(ordered: list[float]) -> tuple[float, ...]:
    n = len(ordered)
    if n <= MAX_SAMPLES_PER_SECOND:
        return tuple(ordered)
    step = n / MAX_SAMPLES_PER_SECOND
    return tuple(ordered[int(i * step)] for i in range(MAX_SAMPLES_PER_SECOND))
