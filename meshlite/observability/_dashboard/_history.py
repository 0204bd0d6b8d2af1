"""Per-second aggregates of each service (:class:`ServiceSecond`, measured by
``_sampler.Sampler``) and the ring buffer that keeps the last hour of them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ...routing._snapshot import ServiceHealth, ServiceSnapshot

__all__ = [
    "OPEN_STATES",
    "DEFAULT_HISTORY_SECONDS",
    "History",
    "FAILING_RATIO",
    "ServiceSecond",
    "call_status",
]

DEFAULT_HISTORY_SECONDS = 3600
"""Slots of each service's ring buffer: one hour of one-second aggregates."""

FAILING_RATIO = 0.5
"""Share of a second's calls failing at or above which a service is ``"failing"``."""

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
