"""Metric primitives: what a scrape returns, and the two ways meshlite records.

Per-call latencies go to :class:`Timings`, which takes no lock per call: a call
appends its latency to a list (``list.append`` is atomic) and the histogram is
counted in batches. Every recorder (the mesh, ``ml.Metrics``) runs calls through
a handler made by ``_recording.recorded`` (or ``arecorded``); endpoints observe
attempts into a :class:`~meshlite._histogram.Histogram`. An uncontended
``threading.Lock`` costs more than the whole observation on CPython, and counting
into shared cells would lose increments between threads (``cells[i] += 1`` is a
read, an add and a write). Rare events (retries, rejections, ejections...) go to
:class:`~._counters.Counters`, a dict under one lock.

A scrape reads everything into :class:`MetricFamily` records, which the Prometheus
module renders as text.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Protocol

from .._context import CallContext
from .._histogram import FOLD_AT, Histogram, take
from .._inflight import calls_list, count
from .._policy import AsyncHandler, Handler
from .._validate import fail
from ..routing._events import ResponseStatusError
from ._recording import arecorded, recorded

__all__ = [
    "COUNTING_SINCE",
    "DEFAULT_LATENCY_BUCKETS",
    "FOLD_AT",
    "Collector",
    "Labels",
    "MAX_ERROR_LABELS",
    "MetricFamily",
    "OTHER_ERROR",
    "Sample",
    "TimingsReading",
    "Timings",
    "check_buckets",
    "check_label",
    "error_label",
    "histogram_samples",
    "relabel",
]

COUNTING_SINCE = time.time_ns()
"""When this process could begin counting (this module's import, Unix nanoseconds;
every registry is built on it): where the cumulative series an OTLP export first
reads start."""

DEFAULT_LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
"""Upper bounds (seconds) of the latency histogram buckets; ``+Inf`` is implied."""

MAX_ERROR_LABELS = 64
"""Distinct ``error`` labels one series keeps; errors of any further kind count under
:data:`OTHER_ERROR`, so code that makes exception classes at run time (or a backend
answering every status code there is) cannot add series without end."""

OTHER_ERROR = "(other)"
"""The ``error`` label past :data:`MAX_ERROR_LABELS` (no class name has parentheses)."""

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
    """A latency histogram of one label set, plus errors by type and calls in flight:
    where a call is recorded (by the handlers ``_recording.recorded`` and
    ``arecorded`` make, which the mesh's dispatch and ``ml.Metrics`` both run calls
    through).

    Recording takes no lock: a call appends to :attr:`calls` when it starts and pops
    when it ends (``meshlite._inflight``), and appends its latency to ``pending`` (or
    ``(latency, error label)`` to ``failed``); the histogram counts them in batches
    of :data:`~meshlite._histogram.FOLD_AT`, and at every read.

    Args:
        labels: The label pairs of this series.
        bounds: Bucket upper bounds (from :func:`check_buckets`).
        monotonic: The clock calls are timed with.
    """

    __slots__ = ("_errors", "calls", "failed", "labels", "monotonic")

    def __init__(self, labels: Labels, bounds: tuple[float, ...],
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        super().__init__(bounds)
        self.labels = labels
        self.monotonic = monotonic
        self.calls = calls_list()
        self.failed: list[tuple[float, str]] = []
        self._errors: dict[str, int] = {}

    def run(self, handler: Handler, ctx: CallContext) -> Any:
        """Run ``handler(ctx)`` and record it (``_recording.recorded``)."""
        return recorded(handler, self)(ctx)

    async def arun(self, handler: AsyncHandler, ctx: CallContext) -> Any:
        """Async twin of :meth:`run`."""
        return await arecorded(handler, self)(ctx)

    def error(self, seconds: float, error: BaseException) -> None:
        """Record one call that failed with ``error`` after ``seconds`` (its latency
        and :func:`error_label`)."""
        failed = self.failed
        failed.append((seconds, error_label(error)))
        if len(failed) >= FOLD_AT:
            self.fold()

    def _fold(self) -> None:
        batch = take(self.failed)
        if batch:
            counts = self._errors
            for _, label in batch:
                n = counts.get(label)
                if n is None:  # a new kind: its own label while there is room
                    if len(counts) >= MAX_ERROR_LABELS:
                        label = OTHER_ERROR
                    n = counts.get(label, 0)
                counts[label] = n + 1
            self.count([seconds for seconds, _ in batch])
        self.count(take(self.pending))

    @property
    def in_flight(self) -> int:
        """Calls started and not finished yet."""
        return count(self.calls)

    def read_all(self) -> TimingsReading:
        """Fold what is pending and return every count."""
        with self._lock:
            self._fold()
            return TimingsReading(buckets=tuple(self._buckets), sum=self._sum,
                                  in_flight=count(self.calls), errors=dict(self._errors))


_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_TAKEN = frozenset({"backend", "operation", "error", "le", "pid", "policy", "reason",
                    "breaker", "state", "fault", "worker"})


def check_label(owner: str, argument: str, name: Any) -> str:
    """``name`` if it can stand for the ``service`` label: a Prometheus label name
    (not ``__``-reserved) that no meshlite series uses for something else.

    Raises:
        ConfigError: anything else (the message names ``owner.argument``).
    """
    if (not isinstance(name, str) or not _LABEL_NAME.match(name) or name.startswith("__")
            or name in _TAKEN):
        fail(owner, argument, name, "a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not "
             "starting with __) that meshlite does not use for another label ("
             + ", ".join(sorted(_TAKEN)) + ")")
    return name


def relabel(families: Iterable[MetricFamily], old: str, new: str) -> Iterator[MetricFamily]:
    """``families`` with label ``old`` renamed ``new`` in every sample."""
    for f in families:
        yield MetricFamily(f.name, f.type, f.help, tuple(
            Sample(s.suffix, tuple((new if k == old else k, v) for k, v in s.labels), s.value)
            for s in f.samples))


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
