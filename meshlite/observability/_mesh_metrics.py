"""MeshMetrics: the metrics registry of one mesh (``mesh.metrics``).

Three sources, by cost:

- read at scrape time, free on the call path: each backend's request, error and
  in-flight counters (kept by routing anyway), ejection and health state, breaker
  states, panic mode;
- recorded per call without a lock (:class:`~._metrics.Timings` shards): the mesh's
  dispatch times each logical call (``run_sync`` / ``begin``), and routing
  times each attempt through the observer it finds on the service;
- counted from events (retries, rejections, transitions, cache hits...): the
  :class:`~._feed.EventFeed` hook, subscribed once to each service and policy.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .._context import CallContext
from ..routing._backend import Endpoint
from ..routing._route import OBSERVE_ATTEMPT
from ..routing._service import Service
from ._feed import EVENT_METRICS, EventFeed, touch_service
from ._metrics import DEFAULT_LATENCY_BUCKETS, Counters, MetricFamily, Timings, check_buckets
from ._scrape import mesh_families, service_families

if TYPE_CHECKING:
    from .._mesh import Mesh

__all__ = ["MeshMetrics"]

SyncRun = Callable[[Service, Callable[[CallContext], Any], CallContext], Any]


class MeshMetrics:
    """The metrics of one mesh: a collector for :func:`render`, the Prometheus ASGI
    app and :func:`start_http_server`. Made by ``ml.Mesh(metrics=True)`` (the
    default) as ``mesh.metrics``; each mesh has its own, nothing is process-wide.

    Args:
        mesh: The mesh it observes.
        buckets: Upper bounds in seconds of the latency histogram buckets.

    Raises:
        ConfigError: ``buckets`` are not increasing positive numbers.
    """

    def __init__(self, mesh: Mesh, *, buckets: Sequence[float] = DEFAULT_LATENCY_BUCKETS
                 ) -> None:
        self.bounds = check_buckets("Mesh metrics", buckets)
        self._mesh = mesh
        self._lock = threading.RLock()
        self._calls: dict[str, Timings] = {}
        self._attempts: dict[tuple[str, str], Timings] = {}
        self._entries: dict[Service, tuple[Timings, Callable[[], float]]] = {}
        self._series_of: dict[Service, dict[Endpoint, Timings]] = {}
        self._subscribed: dict[int, tuple[Any, Callable[[], None]]] = {}
        self.counters = Counters(EVENT_METRICS)
        self.feed = EventFeed(self.counters)
        self.run_sync: SyncRun = self._sync_runner()
        for service in mesh.services:
            self.adopt(service)

    # -- services ---------------------------------------------------------------

    def adopt(self, service: Service) -> tuple[Timings, Callable[[], float]]:
        """Start observing ``service`` (the mesh calls this for each service it
        registers or makes for an override): its calls, its attempts and its events.
        Idempotent."""
        with self._lock:
            entry = self._entries.get(service)
            if entry is not None:
                return entry
            name = service.name
            series = self._calls.get(name)
            if series is None:
                series = self._calls[name] = Timings((("service", name),), self.bounds)
            series_of: dict[Endpoint, Timings] = {}
            self._series_of[service] = series_of
            setattr(service, OBSERVE_ATTEMPT, self._attempt_observer(service, series_of))
            self._subscribe(service.hooks, service.hooks.add(self.feed))
            for policy in service.pipeline.walk():
                if id(policy) not in self._subscribed:
                    self._subscribe(policy, policy.hooks.add(self.feed))
            touch_service(self.counters, name, {p.kind for p in service.pipeline.walk()})
            entry = self._entries[service] = (series, service.clock.monotonic)
            return entry

    def _subscribe(self, owner: Any, remove: Callable[[], None]) -> None:
        # Keeping the owner alive keeps its id from being reused by another object.
        self._subscribed[id(owner)] = (owner, remove)

    def _attempt_series(self, service: str, address: str) -> Timings:
        key = (service, address)
        with self._lock:
            series = self._attempts.get(key)
            if series is None:
                series = self._attempts[key] = Timings(
                    (("service", service), ("backend", address)), self.bounds)
            return series

    def _attempt_observer(self, service: Service, series_of: dict[Endpoint, Timings]
                          ) -> Callable[[Endpoint, float], None]:
        name, monotonic, bounds = service.name, service.clock.monotonic, self.bounds
        first = bounds[0]  # most in-process calls land here: skip the bisect
        at_sum, attempt_series = len(bounds) + 1, self._attempt_series

        def observe(endpoint: Endpoint, start: float) -> None:
            series = series_of.get(endpoint)
            if series is None:
                series = series_of[endpoint] = attempt_series(name, endpoint.address)
            try:
                cells = series.local.cells
            except AttributeError:
                cells = series.new_shard()
            elapsed = monotonic() - start
            cells[0 if elapsed <= first else bisect_left(bounds, elapsed)] += 1
            cells[at_sum] += elapsed

        return observe

    # -- the per-call recorders the mesh's dispatch runs ------------------------------

    def _sync_runner(self) -> SyncRun:
        entries, adopt, bounds = self._entries, self.adopt, self.bounds
        at_sum, at_started, first = len(bounds) + 1, len(bounds) + 2, bounds[0]

        def run_sync(service: Service, handler: Callable[[CallContext], Any],
                     ctx: CallContext) -> Any:
            entry = entries.get(service)
            series, monotonic = adopt(service) if entry is None else entry
            try:
                cells = series.local.cells
            except AttributeError:
                cells = series.new_shard()
            cells[at_started] += 1
            start = monotonic()
            try:
                result = handler(ctx)
            except BaseException as error:  # counted, then re-raised untouched
                series.error(cells, monotonic() - start, error)
                raise
            elapsed = monotonic() - start
            cells[0 if elapsed <= first else bisect_left(bounds, elapsed)] += 1
            cells[at_sum] += elapsed
            return result

        return run_sync

    def begin(self, service: Service) -> tuple[Timings, list[Any], Callable[[], float]]:
        """Count a call of ``service`` as started; returns its series, this thread's
        cells and the clock's ``monotonic``. The async dispatch times the call
        itself and ends with ``series.finished(cells, elapsed)`` (or ``series.error``):
        two plain calls cost less than wrapping the call in one more coroutine."""
        entry = self._entries.get(service)
        series, monotonic = self.adopt(service) if entry is None else entry
        try:
            cells: list[Any] = series.local.cells
        except AttributeError:
            cells = series.new_shard()
        cells[series.STARTED] += 1
        return series, cells, monotonic

    # -- reading -------------------------------------------------------------------

    def collect(self) -> Iterable[MetricFamily]:
        """Every metric of the mesh, read now (see docs/metrics.md for the list)."""
        services = self._mesh.services
        with self._lock:
            self._prune()
            calls = dict(self._calls)
            for s in services:
                for e in s.endpoints:
                    self._attempt_series(s.name, e.address)
            attempts = dict(self._attempts)
        yield from service_families(services, calls, attempts, self.bounds)
        yield from self.counters.collect()
        yield from mesh_families(self._mesh)

    def _prune(self) -> None:
        # Backends removed from every observed service (discovery churn) lose their
        # histogram, so series do not pile up over a long run.
        live = {(s.name, e.address) for s in self._entries for e in s.endpoints}
        for key in [k for k in self._attempts if k not in live]:
            del self._attempts[key]
        for service, series_of in self._series_of.items():
            current = set(service.endpoints)
            for endpoint in [e for e in list(series_of) if e not in current]:
                series_of.pop(endpoint, None)

    def __repr__(self) -> str:
        return f"MeshMetrics(services={sorted(self._calls)!r})"
