"""Metrics: a policy recording requests, errors and latency of the calls through a
pipeline, for pipelines used outside a mesh (a mesh records its own)."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator, Sequence

from .._clock import SYSTEM_CLOCK, Clock
from .._events import CircuitStateChanged, Event
from .._fork import fork_safe
from .._policy import AsyncHandler, Handler, Policy
from .._printable import printable
from .._throttle import Throttle, held_back
from .._validate import at_least, optional_clock
from ._counters import Counters
from ._feed import EVENT_METRICS, EventFeed, touch_service
from ._metrics import (
    DEFAULT_LATENCY_BUCKETS,
    MetricFamily,
    Sample,
    Timings,
    check_buckets,
    histogram_samples,
)
from ._recording import SeriesTable, arecorded, recorded

__all__ = ["DEFAULT_MAX_OPERATIONS", "OTHER_OPERATION", "Metrics"]

_PREFIX = "meshlite_operation"
_log = logging.getLogger("meshlite.metrics")

DEFAULT_MAX_OPERATIONS = 256
"""Operations :class:`Metrics` keeps a series of per service by default."""

OTHER_OPERATION = "(other)"
"""The ``operation`` label of the calls of a service's operations beyond its first
``max_operations`` (no function's qualified name has parentheses, so none is taken for
it): an operation name a caller controls (the method of an HTTP request a gateway
passes on, say) cannot add series without end."""

FOLD_LOG_SECONDS = 60.0
"""Seconds during which a service's further folded operations are not logged again."""


class Metrics(Policy):
    """Record every call through the pipeline: requests, errors by type, latency
    histogram and calls in flight, per service and operation (``meshlite_operation_*``).
    Put it outermost to time the whole call. Serve it with ``prometheus_app(metrics)``
    or ``start_http_server(metrics)``. :meth:`watch` also counts a pipeline's events
    (retries, rejections, breaker transitions...) under the mesh's metric names.

    Args:
        buckets: Upper bounds in seconds of the latency histogram buckets.
        clock: Time source (tests pass a FakeClock).
        max_operations: Operations with series of their own per service (>= 1); the
            calls of any further one count under :data:`OTHER_OPERATION` (logged at
            most once a minute per service).

    Raises:
        ConfigError: ``buckets`` are not increasing positive numbers, or
            ``max_operations`` is not an integer >= 1.

    Example::

        metrics = ml.Metrics()
        pipeline = ml.Pipeline(metrics, ml.Retry(attempts=3))
        metrics.watch(pipeline)
        server = ml.telemetry.start_http_server(metrics, port=9464)
    """

    kind = "metrics"

    def __init__(self, *, buckets: Sequence[float] = DEFAULT_LATENCY_BUCKETS,
                 clock: Clock | None = None,
                 max_operations: int = DEFAULT_MAX_OPERATIONS) -> None:
        super().__init__()
        self.bounds = check_buckets("Metrics", buckets)
        self.max_operations = at_least("Metrics", "max_operations", max_operations, 1)
        self._folds = Throttle(FOLD_LOG_SECONDS)
        clock = optional_clock("Metrics", clock)
        self._clock = SYSTEM_CLOCK if clock is None else clock
        self._table: SeriesTable = {}
        self._lock = fork_safe(threading.Lock())
        self.counters = Counters(EVENT_METRICS)
        self._feed = EventFeed(self.counters)
        self._watched: dict[int, tuple[Policy, Callable[[], None]]] = {}

    def watch(self, policy: Policy) -> Callable[[], None]:
        """Count the events of ``policy`` and of every policy inside it (once each,
        however often it is watched).

        Returns:
            A function that stops watching them.
        """
        added = []
        for p in policy.walk():
            if id(p) not in self._watched and p is not self:
                self._watched[id(p)] = (p, p.hooks.add(self._hear))
                added.append(id(p))
        service = getattr(policy, "service", None)
        touch_service(self.counters, service if isinstance(service, str) else "",
                      {p.kind for p in policy.walk()})

        def unwatch() -> None:
            for key in added:
                entry = self._watched.pop(key, None)
                if entry is not None:
                    entry[1]()

        return unwatch

    def _hear(self, event: Event, /) -> None:
        # A breaker with neither name= nor a service is named after the call's
        # operation: its transitions fold past max_operations as the calls do (one
        # breaker guarding many functions made a series set per function).
        if (isinstance(event, CircuitStateChanged) and event.name == event.operation
                and not event.service):
            kept = self._table.get(event.service) or {}
            if event.name not in kept and len(kept) >= self.max_operations:
                event = dataclasses.replace(event, name=OTHER_OPERATION)
        self._feed(event)

    def _series_for(self, service: str | None, operation: str) -> Timings:
        with self._lock:
            by_operation = self._table.get(service)
            if by_operation is None:
                by_operation = self._table[service] = {}
            series = by_operation.get(operation)
            if series is None:
                if len(by_operation) >= self.max_operations:
                    self._fold(service, operation)
                    operation = OTHER_OPERATION  # (looked up again by each such call)
                    series = by_operation.get(operation)
                if series is None:
                    labels = (("service", service or ""), ("operation", operation))
                    series = by_operation[operation] = Timings(labels, self.bounds,
                                                               self._clock.monotonic)
            return series

    def _fold(self, service: str | None, operation: str) -> None:
        held = self._folds.passes(service)
        if held is not None:
            _log.warning("Metrics: service %r has %d operations, the most kept; the calls "
                         "of %r and of any other new one count under operation %r%s",
                         service or "", self.max_operations, printable(operation, 80),
                         OTHER_OPERATION, held_back(held), extra={"service": service or ""})

    def wrap(self, call_next: Handler) -> Handler:
        """The sync handler recording each call around ``call_next`` in the series of
        its (service, operation) (``observability._metrics.recorded``)."""
        return recorded(call_next, None, self._table, self._series_for)

    def awrap(self, call_next: AsyncHandler) -> AsyncHandler:
        """The async handler recording each call around ``call_next``."""
        return arecorded(call_next, None, self._table, self._series_for)

    def collect(self) -> Iterator[MetricFamily]:
        """Every metric recorded so far (see docs/metrics.md)."""
        with self._lock:
            series = [s for by_operation in self._table.values()
                      for s in by_operation.values()]
        series.sort(key=lambda s: s.labels)
        readings = [(s.labels, s.read_all()) for s in series]
        yield MetricFamily(f"{_PREFIX}_requests_total", "counter",
                           "Calls finished through the Metrics policy.",
                           tuple(Sample("", lb, r.count) for lb, r in readings))
        yield MetricFamily(f"{_PREFIX}_request_errors_total", "counter",
                           "Calls that ended in an error, by the error's class name.",
                           tuple(Sample("", (*lb, ("error", name)), n) for lb, r in readings
                                 for name, n in sorted(r.errors.items())))
        yield MetricFamily(f"{_PREFIX}_requests_in_flight", "gauge", "Calls running now.",
                           tuple(Sample("", lb, r.in_flight) for lb, r in readings))
        yield MetricFamily(f"{_PREFIX}_request_duration_seconds", "histogram",
                           "Time of each call through the rest of the pipeline.",
                           tuple(s for lb, r in readings
                                 for s in histogram_samples(lb, self.bounds, r)))
        yield from self.counters.collect()

    def __repr__(self) -> str:
        return f"Metrics(operations={sum(len(t) for t in list(self._table.values()))})"
