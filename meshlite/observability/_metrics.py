"""Metric primitives: what a scrape returns, and the two ways meshlite records.

Per-call latencies go to :class:`Timings`, which takes no lock: each thread writes
to its own shard (a plain list) and a scrape sums the shards. An uncontended
``threading.Lock`` costs more than the whole observation on CPython, and a shared
list would lose increments between threads (``cells[i] += 1`` is a read, an add and
a write). Rare events (retries, rejections, ejections...) go to :class:`Counters`,
a dict under one lock.

A scrape reads everything into :class:`MetricFamily` records, which the Prometheus
module renders as text.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Protocol

from .._validate import fail
from ..routing._events import ResponseStatusError

__all__ = [
    "DEFAULT_LATENCY_BUCKETS",
    "Collector",
    "Counters",
    "Labels",
    "MetricFamily",
    "Sample",
    "TimingsReading",
    "Timings",
    "check_buckets",
    "error_label",
    "histogram_samples",
]

DEFAULT_LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
"""Upper bounds (seconds) of the latency histogram buckets; ``+Inf`` is implied."""

Labels = tuple[tuple[str, str], ...]
"""Label pairs of one series, in exposition order."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One line of exposition: ``name + suffix{labels} value``."""

    suffix: str
    labels: Labels
    value: float


@dataclass(frozen=True, slots=True)
class MetricFamily:
    """A metric and its samples. ``type`` is ``"counter"``, ``"gauge"`` or
    ``"histogram"``; ``name`` has no ``_bucket``/``_sum``/``_count`` suffix."""

    name: str
    type: str
    help: str
    samples: tuple[Sample, ...]


class Collector(Protocol):
    """Anything a scrape can read: a mesh's metrics, a ``Metrics`` policy."""

    def collect(self) -> Iterable[MetricFamily]:
        """The current value of every metric."""
        ...


def check_buckets(owner: str, buckets: Sequence[float]) -> tuple[float, ...]:
    """``buckets`` as a tuple of strictly increasing finite bounds > 0.

    Raises:
        ConfigError: empty, unsorted, or not finite positive numbers.
    """
    try:
        bounds = tuple(float(b) for b in buckets)
    except (TypeError, ValueError):
        fail(owner, "buckets", buckets, "a sequence of numbers")
    ok = bool(bounds) and all(math.isfinite(b) and b > 0 for b in bounds)
    if not ok or any(a >= b for a, b in pairwise(bounds)):
        fail(owner, "buckets", buckets, "strictly increasing finite numbers > 0")
    return bounds


@dataclass(frozen=True, slots=True)
class TimingsReading:
    """A :class:`Timings` summed over its shards. ``buckets`` are per bucket (not
    cumulative), the last one for ``+Inf``; ``count`` is their total."""

    buckets: tuple[int, ...]
    sum: float
    started: int
    errors: dict[str, int]

    @property
    def count(self) -> int:
        """Observations recorded (calls finished)."""
        return sum(self.buckets)


class Timings:
    """A latency histogram of one label set, plus calls started and errors by type.

    Recording is lock-free: :meth:`shard` gives the calling thread its own cells,
    which only that thread writes (async tasks of one loop share their thread's
    shard; a task never yields between the read and the write of ``+=``). Cell
    layout: one count per bucket (``+Inf`` last), then the sum (index ``SUM``),
    the calls started (``STARTED``) and a dict of error counts (``ERRORS``).
    Shards of threads that ended are folded into one at the next reading.

    Args:
        labels: The label pairs of this series.
        bounds: Bucket upper bounds (from :func:`check_buckets`).
    """

    __slots__ = ("ERRORS", "STARTED", "SUM", "_lock", "_retired", "_shards",
                 "bounds", "first", "labels", "local")

    def __init__(self, labels: Labels, bounds: tuple[float, ...]) -> None:
        self.labels = labels
        self.bounds = bounds
        self.first = bounds[0]
        self.SUM = len(bounds) + 1
        self.STARTED = self.SUM + 1
        self.ERRORS = self.STARTED + 1
        self.local = threading.local()
        self._lock = threading.Lock()
        self._shards: list[tuple[threading.Thread, list[Any]]] = []
        self._retired = self._cells()

    def _cells(self) -> list[Any]:
        cells: list[Any] = [0] * self.STARTED + [0, {}]
        cells[self.SUM] = 0.0
        return cells

    def shard(self) -> list[Any]:
        """The calling thread's cells (created on its first record)."""
        try:
            cells: list[Any] = self.local.cells
        except AttributeError:
            cells = self.new_shard()
        return cells

    def new_shard(self) -> list[Any]:
        """Make and register the calling thread's cells (the slow path of
        :meth:`shard`, which the hot paths inline)."""
        cells = self.local.cells = self._cells()
        with self._lock:
            self._shards.append((threading.current_thread(), cells))
        return cells

    def observe(self, seconds: float) -> None:
        """Record one finished call of ``seconds`` (a convenience; hot paths inline it)."""
        cells = self.shard()
        cells[0 if seconds <= self.first else bisect_left(self.bounds, seconds)] += 1
        cells[self.SUM] += seconds

    def finished(self, cells: list[Any], seconds: float) -> None:
        """Record one call of ``seconds`` that succeeded, in ``cells``."""
        cells[0 if seconds <= self.first else bisect_left(self.bounds, seconds)] += 1
        cells[self.SUM] += seconds

    def error(self, cells: list[Any], seconds: float, error: BaseException) -> None:
        """Record one call that failed with ``error`` (latency and
        :func:`error_label`) in ``cells``."""
        cells[0 if seconds <= self.first else bisect_left(self.bounds, seconds)] += 1
        cells[self.SUM] += seconds
        errors: dict[str, int] = cells[self.ERRORS]
        name = error_label(error)
        errors[name] = errors.get(name, 0) + 1

    def read(self) -> TimingsReading:
        """Sum the shards (folding those of ended threads into one)."""
        with self._lock:
            live = []
            for thread, cells in self._shards:
                if thread.is_alive():
                    live.append((thread, cells))
                else:  # it will never write again: fold it
                    _add(self._retired, cells, self.ERRORS)
            self._shards = live
            total = list(self._retired)
            total[self.ERRORS] = dict(total[self.ERRORS])
            for _, cells in live:
                # list() and dict() copy in one C call each, so a writer thread
                # never changes a copy half-read.
                _add(total, list(cells), self.ERRORS)
        n = self.SUM
        return TimingsReading(buckets=tuple(total[:n]), sum=total[n],
                              started=total[self.STARTED], errors=total[self.ERRORS])


def error_label(error: BaseException) -> str:
    """The ``error`` label of a failed call: ``http_<status>`` for a failure status
    answered over HTTP (``ResponseStatusError``), else the error's class name."""
    status = getattr(error, "status_code", None)
    if isinstance(error, ResponseStatusError) and isinstance(status, int):
        return f"http_{status}"
    return type(error).__name__


def _add(into: list[Any], cells: list[Any], errors_at: int) -> None:
    for i in range(errors_at):
        into[i] += cells[i]
    errors: dict[str, int] = into[errors_at]
    for name, n in dict(cells[errors_at]).items():
        errors[name] = errors.get(name, 0) + n


def histogram_samples(labels: Labels, bounds: tuple[float, ...],
                      reading: TimingsReading) -> list[Sample]:
    """The ``_bucket`` (cumulative), ``_sum`` and ``_count`` samples of a reading."""
    out: list[Sample] = []
    running = 0
    for bound, n in zip((*bounds, math.inf), reading.buckets, strict=True):
        running += n
        out.append(Sample("_bucket", (*labels, ("le", _le(bound))), running))
    out.append(Sample("_sum", labels, reading.sum))
    out.append(Sample("_count", labels, running))
    return out


def _le(bound: float) -> str:
    if bound == math.inf:
        return "+Inf"
    return repr(float(bound))


class Counters:
    """Counters and gauges of rare events: ``{metric name: {label values: value}}``
    under one lock (a rare event can afford it).

    Args:
        declared: ``{metric name: (type, help, label names)}`` of every metric it may
            hold; :meth:`collect` reports them in this order.
    """

    def __init__(self, declared: dict[str, tuple[str, str, tuple[str, ...]]]) -> None:
        self.declared = declared
        self._values: dict[str, dict[tuple[str, ...], float]] = {n: {} for n in declared}
        self._lock = threading.Lock()

    def add(self, name: str, values: tuple[str, ...], amount: float = 1.0) -> None:
        """Add ``amount`` to counter ``name`` of label values ``values``."""
        series = self._values[name]
        with self._lock:
            series[values] = series.get(values, 0.0) + amount

    def set(self, name: str, values: tuple[str, ...], value: float) -> None:
        """Set gauge ``name`` of label values ``values``."""
        with self._lock:
            self._values[name][values] = value

    def touch(self, name: str, values: tuple[str, ...]) -> None:
        """Make the series exist at 0 (Prometheus: initialise known counters)."""
        series = self._values[name]
        with self._lock:
            series.setdefault(values, 0.0)

    def value(self, name: str, values: tuple[str, ...]) -> float:
        """The current value (0.0 if never recorded)."""
        with self._lock:
            return self._values[name].get(values, 0.0)

    def collect(self) -> list[MetricFamily]:
        """Every declared metric that has at least one series."""
        with self._lock:
            copies = {name: dict(series) for name, series in self._values.items()}
        families = []
        for name, (kind, help_text, label_names) in self.declared.items():
            series = copies[name]
            if series:
                families.append(MetricFamily(name, kind, help_text, tuple(
                    Sample("", tuple(zip(label_names, values, strict=True)), value)
                    for values, value in sorted(series.items()))))
        return families
