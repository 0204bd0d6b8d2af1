"""An endpoint's recent latencies: the reservoir, its percentiles, and the latency
histogram a mesh's metrics count from it.

:class:`Latencies` is a base of :class:`~meshlite.routing._endpoint.Endpoint`:
each finished attempt appends its latency to the reservoir (in
``Endpoint.succeeded``) and pays one integer comparison for the rest; the histogram
is counted from the reservoir in batches (:meth:`Latencies.record_histogram`).
"""

from __future__ import annotations

import math
import sys
import threading
from collections import deque
from collections.abc import Callable

from .._histogram import FOLD_AT, Histogram
from ._standing import Standing

__all__ = ["DEFAULT_RESERVOIR_SIZE", "Latencies", "percentile"]

DEFAULT_RESERVOIR_SIZE = 512
"""How many recent latencies each endpoint keeps for its percentiles."""

_NEVER = sys.maxsize  # an int: `requests >= _count_at` stays an int comparison


class Latencies(Standing):
    """The reservoir of recent latencies and the histogram counted from it (a base
    of ``Endpoint``, which counts ``requests`` and holds the lock). The first
    answer is counted here too: ``answered`` turns True and ``on_answer`` is called.
    """

    __slots__ = (
        "_count_at",
        "_counted",
        "_every",
        "_histogram",
        "_latencies",
        "_on_answer",
        "_sorted",
        "answered",
        "carried",
    )

    requests: int
    errors: int
    _lock: threading.Lock

    def __init__(self, reservoir: int, on_answer: Callable[[], None] | None) -> None:
        super().__init__()
        self._latencies: deque[float] = deque(maxlen=reservoir)
        # The latency histogram a mesh's metrics read (see record_histogram), counted
        # from the reservoir: every `_every` attempts, the last `_every` latencies.
        self._histogram: Histogram | None = None
        self._every = min(FOLD_AT, reservoir)
        self._counted = 0  # `requests` when the histogram last counted
        # `requests` at which it counts next; first at the first answer (_milestone).
        self._count_at = 1
        self._on_answer = on_answer
        # The last sorted copy and the `requests` it was made at (see latencies).
        self._sorted: tuple[int, list[float]] = (0, [])
        self.answered = False
        # Attempts and errors of the endpoints this one replaced (same address: the
        # backend's weight or metadata changed, or a reload rebuilt the service): the
        # metrics add them, routing not (see carry).
        self.carried = (0, 0)

    def record_histogram(self, bounds: tuple[float, ...]) -> None:
        """Keep a histogram of every attempt's latency from now on (a mesh recording
        metrics asks for it), read by :meth:`histogram`. It is counted from the
        reservoir of recent latencies, which each attempt fills anyway: every
        ``min(FOLD_AT, reservoir)`` attempts (and at each read) the latencies added
        since the last count are counted in one batch, so an attempt pays an integer
        comparison for it (also when no histogram is kept). Does nothing if the
        histogram is kept already (an endpoint this one replaces carries its counts
        in with :meth:`carry`).

        Args:
            bounds: Increasing bucket upper bounds in seconds.
        """
        with self._lock:
            if self._histogram is not None:
                return
            self._histogram = Histogram(bounds)
            self._counted = self.requests
            self._count_at = self.requests + (self._every if self.answered else 1)

    def carry(self, old: Latencies) -> None:
        """Count ``old``'s attempts and errors (an endpoint of the same address that
        this one replaces: a reload rebuilt the service) in ``carried``, and its
        latency histogram in this one's when both are kept with the same bounds, so
        the metrics read from them carry on instead of dropping back to zero (which
        Prometheus reads as a reset)."""
        histogram = old.histogram()
        requests, errors = old.carried
        requests, errors = requests + old.requests, errors + old.errors
        with self._lock:
            before_requests, before_errors = self.carried
            self.carried = (before_requests + requests, before_errors + errors)
            kept = self._histogram
            if histogram is not None and kept is not None and kept.bounds == histogram[0]:
                kept.add(histogram[1], histogram[2])

    def _milestone(self) -> None:
        # Caller holds the lock. The answers at which `requests` reaches `_count_at`:
        # the first (once: `answered`, `on_answer`), then one every `_every` while a
        # histogram is kept. Other answers pay the integer comparison only.
        if not self.answered:
            self.answered = True
            if self._on_answer is not None:
                self._on_answer()
        self._count_latencies()

    def _count_latencies(self) -> None:
        # Caller holds the lock. Every attempt counted in `requests` appended its
        # latency to the reservoir, and at most `_every` <= its size came since the
        # last count, so the newest `new` entries are exactly those.
        histogram = self._histogram
        if histogram is None:
            self._count_at = _NEVER
            return
        new = self.requests - self._counted
        if new:
            latencies = self._latencies
            if new >= len(latencies):  # the usual case: counted every reservoir-full
                histogram.count(latencies)
            else:  # a copy of the whole deque costs less than an islice to its tail
                histogram.count(list(latencies)[-new:])
            self._counted = self.requests
        self._count_at = self.requests + (self._every if self.answered else 1)

    def histogram(self) -> tuple[tuple[float, ...], tuple[int, ...], float] | None:
        """The attempt latency histogram (see :meth:`record_histogram`): its bounds,
        one count per bucket (not cumulative, ``+Inf`` last) and the latencies' sum;
        None when not kept."""
        with self._lock:
            histogram = self._histogram
            if histogram is None:
                return None
            self._count_latencies()
            counts, total = histogram.read()
        return histogram.bounds, counts, total

    def latencies(self) -> list[float]:
        """The recent latencies in ascending order (at most the reservoir size); do
        not change the list. It is sorted again only after attempts were added:
        the dashboard reads every backend each second, and sorting 15,000 idle
        reservoirs of 512 latencies a second was most of a large mesh's tick."""
        with self._lock:
            at, ordered = self._sorted
            if at != self.requests or len(ordered) != len(self._latencies):
                ordered = sorted(self._latencies)
                self._sorted = (self.requests, ordered)
            return ordered


def percentile(ordered: list[float], q: float) -> float | None:
    """The ``q``-quantile (0..1) of an ascending list, by nearest rank; None if empty."""
    if not ordered:
        return None
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]
