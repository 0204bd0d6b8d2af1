"""Per-second aggregates: the sampler that measures them and the ring buffer that
keeps the last hour of them per service.

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
from dataclasses import dataclass
from typing import Any

from ...routing._endpoint import Endpoint, percentile
from ...routing._service import Service
from ...routing._snapshot import ServiceHealth, ServiceSnapshot, health_of, snapshot_of
from .._hostview import Buckets, delta, spread

__all__ = [
    "OPEN_STATES",
    "DEFAULT_HISTORY_SECONDS",
    "MAX_SAMPLES_PER_SECOND",
    "History",
    "Sampler",
    "FAILING_RATIO",
    "CallCounts",
    "ServiceSecond",
    "Totals",
    "call_status",
]

DEFAULT_HISTORY_SECONDS = 3600
"""Slots of each service's ring buffer: one hour of one-second aggregates."""

MAX_SAMPLES_PER_SECOND = 1024
"""Latencies kept per service and second for alert windows (evenly thinned)."""


FAILING_RATIO = 0.5
"""Share of a second's calls failing at or above which a service is ``"failing"``."""

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


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceSecond:
    """One service over one second: what the sampler measured, with the snapshot
    and health taken at the same moment.

    ``requests`` and ``errors`` are calls and failed calls (a call refused by a
    breaker, a rate limit or a bulkhead, or whose retries ran out, is a failed
    call); ``attempts`` and ``attempt_errors`` are what backends saw, ``retries``
    the attempts after a call's first. ``status`` is the routing status made worse
    by failing calls (see :func:`call_status`). ``samples`` are that second's
    attempt latencies, sorted (at most :data:`MAX_SAMPLES_PER_SECOND`, evenly
    thinned).
    """

    name: str
    second: int
    requests: int
    errors: int
    p50: float | None
    p99: float | None
    samples: tuple[float, ...]
    snapshot: ServiceSnapshot
    health: ServiceHealth
    attempts: int = 0
    attempt_errors: int = 0
    retries: int = 0
    status: str = ""


OPEN_STATES = frozenset({"open", "forced_open"})
"""The circuit breaker states in which a service's calls are refused."""


def call_status(routing: str, calls: int, failed: int, breakers: Iterable[str]) -> str:
    """A service's status from its routing status and its calls: a service whose
    calls fail is not healthy. ``"failing"`` when a breaker is open or at least
    :data:`FAILING_RATIO` of the calls failed, ``"degraded"`` when some failed;
    a worse routing status (``panic``, ``down``) stays."""
    if routing in ("panic", "down"):
        return routing
    if any(b in OPEN_STATES for b in breakers) or (
            calls and failed / calls >= FAILING_RATIO):
        return "failing"
    if failed and routing == "healthy":
        return "degraded"
    return routing


class History:
    """A fixed ring of ``capacity`` one-second slots for one service.

    Slot ``second % capacity`` holds the aggregates of that second, tagged with the
    second so reads skip slots left over from an earlier lap (seconds with no
    sample read as ``None``).
    """

    __slots__ = ("_errors", "_p50", "_p99", "_requests", "_tag", "capacity", "last")

    def __init__(self, capacity: int = DEFAULT_HISTORY_SECONDS) -> None:
        self.capacity = capacity
        self._tag: list[int] = []
        self._requests: list[int] = []
        self._errors: list[int] = []
        self._p50: list[float | None] = []
        self._p99: list[float | None] = []
        self.last = -1
        """The newest second recorded (-1 before any)."""
        self._empty()

    def _empty(self) -> None:
        capacity = self.capacity
        self._tag = [-1] * capacity
        self._requests = [0] * capacity
        self._errors = [0] * capacity
        self._p50 = [None] * capacity
        self._p99 = [None] * capacity
        self.last = -1

    def record(self, second: int, requests: int, errors: int, p50: float | None,
               p99: float | None) -> None:
        """Store one second; a second already recorded accumulates its counts."""
        i = second % self.capacity
        if self._tag[i] == second:
            self._requests[i] += requests
            self._errors[i] += errors
            if p99 is not None:
                self._p50[i], self._p99[i] = p50, p99
        else:
            self._tag[i] = second
            self._requests[i], self._errors[i] = requests, errors
            self._p50[i], self._p99[i] = p50, p99
        self.last = max(self.last, second)

    def shift(self, seconds: int) -> None:
        """Move every recorded second by ``seconds``: the wall clock was stepped, and
        what was recorded ``x`` seconds ago stays ``x`` seconds before the new now."""
        kept = [(t + seconds, self._requests[i], self._errors[i], self._p50[i], self._p99[i])
                for i, t in enumerate(self._tag) if t >= 0 and t + seconds >= 0]
        self._empty()
        for second, requests, errors, p50, p99 in kept:
            self.record(second, requests, errors, p50, p99)

    def dump(self) -> dict[str, Any]:
        """The recorded seconds as plain data (for :meth:`load`)."""
        kept = [i for i, t in enumerate(self._tag) if t >= 0]
        return {"capacity": self.capacity, "last": self.last, "slots": [
            [self._tag[i], self._requests[i], self._errors[i], self._p50[i], self._p99[i]]
            for i in kept]}

    @classmethod
    def load(cls, data: dict[str, Any], capacity: int) -> History:
        """A history of ``capacity`` slots holding what :meth:`dump` gave."""
        history = cls(capacity)
        for second, requests, errors, p50, p99 in data["slots"]:
            history.record(int(second), int(requests), int(errors), p50, p99)
        return history

    def columns(self, seconds: int, end: int | None = None) -> dict[str, Any]:
        """The last ``seconds`` seconds up to ``end`` (default: the newest), as
        columns of equal length; ``start`` is the first column's second."""
        seconds = max(1, min(seconds, self.capacity))
        end = self.last if end is None else end
        start = end - seconds + 1
        requests: list[int | None] = []
        errors: list[int | None] = []
        p50: list[float | None] = []
        p99: list[float | None] = []
        cap, tag = self.capacity, self._tag
        for s in range(start, end + 1):
            i = s % cap
            if s >= 0 and tag[i] == s:
                requests.append(self._requests[i])
                errors.append(self._errors[i])
                p50.append(self._p50[i])
                p99.append(self._p99[i])
            else:
                requests.append(None)
                errors.append(None)
                p50.append(None)
                p99.append(None)
        return {"start": start, "step": 1, "requests": requests, "errors": errors,
                "p50": p50, "p99": p99}


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
