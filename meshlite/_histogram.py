"""Histogram: latencies recorded with one ``list.append``, counted in batches.

Every mesh call and every attempt records a latency, and on CPython each operation
on the call path shows: a lock, a ``threading.local`` read, or a bisection per call
each cost more than an append. So a recorder appends to ``pending`` (atomic under
the GIL and in free-threaded builds alike) and the buckets are counted later, a
batch at a time: every :data:`FOLD_AT` recordings (a length check after the
append) and at every read.

A batch whose largest latency falls in the first bucket (the usual case for
in-process calls) costs a ``max`` and a ``sum`` in C; any other batch is sorted once
and each bucket bound bisected, which costs less than a bisection per latency.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections.abc import Sequence
from typing import TypeVar

from ._fork import fork_safe

__all__ = ["FOLD_AT", "Histogram", "take"]

T = TypeVar("T")

FOLD_AT = 512
"""Latencies a :class:`Histogram` holds unfolded: the append that reaches it folds.
A fold has a fixed cost (a lock, two list
copies): in ``benchmarks/metrics.py`` 512 recorded a mesh call 50-100 ns cheaper
than 256, 1024 no cheaper, and 64 about 300 ns dearer."""


def take(items: list[T]) -> list[T]:
    """Remove and return the items in ``items`` now, while other threads may append:
    appends add at the end, so the first n items stay put between the copy and the
    deletion, and what is appended meanwhile stays for the next take. Callers taking
    from one list are serialised (a lock)."""
    n = len(items)
    batch = items[:n]
    del items[:n]
    return batch


class Histogram:
    """Counts of latencies per bucket and their sum, recorded without a lock.

    :meth:`observe` appends and folds every :data:`FOLD_AT` latencies
    (``observability._metrics.Timings`` does the same around each call it runs).

    Args:
        bounds: Strictly increasing bucket upper bounds in seconds (a value equal to
            a bound counts in that bound's bucket, as Prometheus's ``le``); one more
            bucket, ``+Inf``, holds the rest.
    """

    __slots__ = ("_buckets", "_lock", "_sum", "bounds", "pending")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.pending: list[float] = []
        self._lock = fork_safe(threading.Lock())
        self._buckets = [0] * (len(bounds) + 1)
        self._sum = 0.0

    def observe(self, seconds: float) -> None:
        """Record one latency."""
        pending = self.pending
        pending.append(seconds)
        if len(pending) >= FOLD_AT:
            self.fold()

    def fold(self) -> None:
        """Count what is pending into the buckets."""
        with self._lock:
            self._fold()

    def _fold(self) -> None:
        # Caller holds the lock, which only folds take.
        self.count(take(self.pending))

    def count(self, batch: Sequence[float]) -> None:
        """Count ``batch`` into the buckets now (it is only read: an endpoint hands
        its reservoir itself). Callers hold the lock or own the histogram alone."""
        if not batch:
            return
        bounds, buckets = self.bounds, self._buckets
        if max(batch) <= bounds[0]:
            buckets[0] += len(batch)
        else:
            ordered = sorted(batch)
            below = 0
            for i, bound in enumerate(bounds):
                upto = bisect_right(ordered, bound, below)
                buckets[i] += upto - below
                below = upto
            buckets[-1] += len(ordered) - below
        self._sum += sum(batch)

    def add(self, buckets: tuple[int, ...] | list[int], total: float) -> None:
        """Add counts read from another histogram of the same bounds (a replaced
        endpoint's, so its series does not restart)."""
        if len(buckets) != len(self._buckets):
            raise ValueError(f"Histogram.add: {len(buckets)} buckets given, "
                             f"{len(self._buckets)} expected")
        with self._lock:
            for i, n in enumerate(buckets):
                self._buckets[i] += n
            self._sum += total

    def read(self) -> tuple[tuple[int, ...], float]:
        """Fold what is pending; the count per bucket (not cumulative, ``+Inf`` last)
        and the sum of every latency recorded."""
        with self._lock:
            self._fold()
            return tuple(self._buckets), self._sum

    def __repr__(self) -> str:
        buckets, total = self.read()
        return f"Histogram(count={sum(buckets)}, sum={total!r})"
