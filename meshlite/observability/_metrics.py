"""Metric primitives: what a scrape returns, and the two ways meshlite records.

Per-call latencies go to :class:`Timings`, which takes no lock per call: a call
appends its latency to a list (``list.append`` is atomic) and the histogram is
counted in batches. An uncontended ``threading.Lock`` costs more than the whole
observation on CPython, and counting into shared cells would lose increments
between threads (``cells[i] += 1`` is a read, an add and a write). Rare events
(retries, rejections, ejections...) go to :class:`Counters`, a dict under one lock.

A scrape reads everything into :class:`MetricFamily` records, which the Prometheus
module renders as text.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Protocol

from .._histogram import FOLD_AT, Histogram, take
from .._validate import fail
from ..routing._events import ResponseStatusError

__all__ = [
    "DEFAULT_LATENCY_BUCKETS",
    "FOLD_AT",
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
    """What a :class:`Timings` holds, read at once. ``buckets`` are per bucket (not
    cumulative), the last one for ``+Inf``; ``count`` is their total."""

    buckets: tuple[int, ...]
    sum: float
    in_flight: int
    errors: dict[str, int]

    @property
    def count(self) -> int:
        """Observations recorded (calls finished)."""
        return sum(self.buckets)


class Timings(Histogram):
    """A latency histogram of one label set, plus errors by type and calls in flight.

    Recording takes no lock. A call takes a token from :attr:`gate` when it starts
    (``gate.pop()``), and when it ends appends its latency to ``pending`` (or
    ``(latency, error label)`` to ``failed``, by :meth:`error`). One list operation
    at each end, and the gate does three jobs:

    - calls in flight are the tokens taken less the calls finished;
    - it holds :data:`~meshlite._histogram.FOLD_AT` tokens, so the call that finds it
      empty calls :meth:`reopen`, which counts what is pending and refills it: the
      lists stay bounded without a length check per call;
    - a recorder may close it (:meth:`close_gate`) to send every call to its slow
      path, as a closing mesh does to refuse calls.

    Args:
        labels: The label pairs of this series.
        bounds: Bucket upper bounds (from :func:`check_buckets`).
    """

    __slots__ = ("_closed", "_errors", "_finished", "_given", "failed", "gate", "labels")

    def __init__(self, labels: Labels, bounds: tuple[float, ...]) -> None:
        super().__init__(bounds)
        self.labels = labels
        self.failed: list[tuple[float, str]] = []
        self.gate: list[None] = [None] * FOLD_AT
        self._given = FOLD_AT  # tokens ever put in the gate (or given out by reopen)
        self._finished = 0  # calls counted from pending and failed
        self._closed = False
        self._errors: dict[str, int] = {}

    def reopen(self) -> bool:
        """Called by a call that found the gate empty: unless the gate is closed,
        count what is pending, refill the gate and count this call as started.

        Returns:
            False when the gate is closed (the call was not counted).
        """
        with self._lock:
            if self._closed:
                return False
            self._fold()
            gate = self.gate
            # This call's token is given and taken at once: a pop here could find
            # the new tokens taken already by calls running meanwhile.
            add = max(0, FOLD_AT - 1 - len(gate))
            gate.extend(_TOKENS[:add])
            self._given += add + 1
            return True

    def close_gate(self) -> None:
        """Empty the gate and keep it empty: every call goes to :meth:`reopen`,
        which refuses it, until :meth:`open_gate`."""
        with self._lock:
            self._closed = True
            gate = self.gate
            while True:  # one pop at a time: each is atomic, so the count is exact
                try:
                    gate.pop()
                except IndexError:
                    break
                self._given -= 1

    def open_gate(self) -> None:
        """Let calls through the gate again."""
        with self._lock:
            self._closed = False

    def abandoned(self) -> None:
        """A call that took a token ended without a latency to record (its clock
        raised before it started); it no longer counts in flight."""
        with self._lock:
            self._finished += 1

    def error(self, seconds: float, error: BaseException) -> None:
        """Record one call that failed with ``error`` after ``seconds`` (its latency
        and :func:`error_label`)."""
        self.failed.append((seconds, error_label(error)))

    def _fold(self) -> None:
        batch = take(self.failed)
        if batch:
            counts = self._errors
            for _, label in batch:
                counts[label] = counts.get(label, 0) + 1
            self.count([seconds for seconds, _ in batch])
        done = take(self.pending)
        self.count(done)
        self._finished += len(batch) + len(done)

    def _in_flight(self) -> int:
        # Caller holds the lock and has just folded: a call finished in `_finished`
        # took its token before, so the gate is read last.
        return self._given - len(self.gate) - self._finished

    @property
    def in_flight(self) -> int:
        """Calls that took a token and have not finished yet."""
        with self._lock:
            self._fold()
            return self._in_flight()

    def read_all(self) -> TimingsReading:
        """Fold what is pending and return every count."""
        with self._lock:
            self._fold()
            return TimingsReading(buckets=tuple(self._buckets), sum=self._sum,
                                  in_flight=self._in_flight(), errors=dict(self._errors))


_TOKENS: list[None] = [None] * FOLD_AT


def error_label(error: BaseException) -> str:
    """The ``error`` label of a failed call: ``http_<status>`` for a failure status
    answered over HTTP (``ResponseStatusError``), else the error's class name."""
    status = getattr(error, "status_code", None)
    if isinstance(error, ResponseStatusError) and isinstance(status, int):
        return f"http_{status}"
    return type(error).__name__


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
