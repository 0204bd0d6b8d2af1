"""MeshMetrics: the metrics registry of one mesh (``mesh.metrics``).

Three sources, by cost:

- read at scrape time, free on the call path: each backend's request, error and
  in-flight counters (kept by routing anyway), ejection and health state, breaker
  states and panic mode;
- recorded per call without a lock: the mesh's dispatch runs each call through
  its service's :class:`~._metrics.Timings` (``run`` / ``arun``, the one recording
  implementation, shared with ``ml.Metrics``); each endpoint observes its attempts'
  latencies, measured anyway for the EWMA, into a histogram under the lock it takes
  for its other counters anyway (``Endpoint.record_histogram``);
- counted from events (retries, rejections, transitions, cache hits...): the
  :class:`~._feed.EventFeed` hook, subscribed once to each service and policy.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from .._fork import fork_safe
from .._policy import AsyncHandler, Handler
from .._validate import fail
from ..routing._service import Service
from ._counters import Counters
from ._feed import EVENT_METRICS, EventFeed, touch_backends, touch_service
from ._hostview import Buckets, HostView
from ._metrics import (
    DEFAULT_LATENCY_BUCKETS,
    Collector,
    MetricFamily,
    Timings,
    TimingsReading,
    check_buckets,
    check_label,
    relabel,
)
from ._multiproc import SharedMetrics
from ._recording import arecorded, recorded
from ._scrape import AttemptReadings, finished, mesh_families, service_families
from ._worker_counts import Counts
from ._worker_files import multiproc_dir

if TYPE_CHECKING:
    from ..mesh._mesh import Mesh

__all__ = ["MeshMetrics"]

_HOST_CACHE_SECONDS = 0.25  # host counts read for one dashboard tick serve all services


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
        self._service_label = "service"
        self._host_cache: HostView | None = None
        self._extra: list[Collector] = []  # register(): other series, same registry
        self._mesh = mesh
        self._lock = fork_safe(threading.RLock())
        self._calls: dict[str, Timings] = {}
        self.series: dict[Service, Timings] = {}
        """Each observed service's call series (an override's service shares the
        series of the service it stands for)."""
        self.recorders: dict[Service, tuple[Handler, Handler]] = {}
        """Per service, its sync chain and that chain recorded in its series (the
        mesh's dispatch reads it per call; see :meth:`recorder`)."""
        self.arecorders: dict[Service, tuple[AsyncHandler, AsyncHandler]] = {}
        """The same for the async chains."""
        self._forgotten: weakref.WeakSet[Service] = weakref.WeakSet()
        self.counters = Counters(EVENT_METRICS)
        self.feed = EventFeed(self.counters)
        directory = multiproc_dir()
        self.shared: SharedMetrics | None = (
            None if directory is None else SharedMetrics(directory, self))
        """The shared directory of the host's workers (``MESHLITE_MULTIPROC_DIR``, or
        ``PROMETHEUS_MULTIPROC_DIR``), or None: see :mod:`._multiproc`."""
        for service in mesh.services:
            self.adopt(service)

    # -- services ---------------------------------------------------------------

    def adopt(self, service: Service) -> Timings:
        """Start observing ``service`` (the mesh calls this for each service it
        registers or makes for an override): its calls, its attempts and its events.
        Idempotent; returns the service's call series."""
        with self._lock:
            series = self.series.get(service)
            if series is not None:
                return series
            name = service.name
            series = self._calls.get(name)
            if series is None:
                series = self._calls[name] = Timings((("service", name),), self.bounds,
                                                     service.clock.monotonic)
            service._record_histograms(self.bounds)  # attempts: timed by the endpoints
            # The feed is held by what it observes, once each (a policy may be shared
            # by several services): it goes when they go.
            for hooks in (service.hooks, *(p.hooks for p in service.pipeline.walk())):
                if not hooks.has(self.feed):
                    hooks.add(self.feed)
            self.feed.undrop(name)
            touch_service(self.counters, name, {p.kind for p in service.pipeline.walk()})
            touch_backends(self.counters, service)
            self.series[service] = series
            self._forgotten.discard(service)
            return series

    def forget(self, service: Service) -> None:
        """Stop observing ``service``, which left the mesh (a reload replaced or
        removed it) and drained. Its backends' attempt counts and histograms carry
        on in the endpoints of the same address of the service now registered under
        its name (:meth:`Endpoint.carry`), so no counter goes back; the series of a
        name the mesh no longer has leave the exposition. Calls that still run on it
        are not recorded. Nothing happens for a service not observed."""
        with self._lock:
            if self.series.pop(service, None) is None:
                return
            self.recorders.pop(service, None)
            self.arecorders.pop(service, None)
            self._forgotten.add(service)
            service.hooks.remove(self.feed)  # its routing events (policies: shared?)
            name = service.name
            # The service now under its name: registered, or made by a reload that
            # has not registered it yet (it was adopted, and shares the name's series).
            current = self._mesh.registered().get(name) or next(
                (s for s in self.series if s.name == name), None)
            if current is None:
                self._calls.pop(name, None)
                self.counters.drop(name)
                self.feed.drop(name)
                return
            successors = {e.address: e for e in current.endpoints}
            for endpoint in service.endpoints:
                successor = successors.get(endpoint.address)
                if successor is not None and successor is not endpoint:
                    successor.carry(endpoint)

    def recorder(self, service: Service, handler: Handler) -> Handler:
        """``handler``, ``service``'s sync chain, recording each call in the service's
        series (adopting the service if it is not observed yet); kept in
        :attr:`recorders` for the next calls, until the service's chain changes. A
        service the metrics forgot (:meth:`forget`) runs unrecorded."""
        if service in self._forgotten:
            return handler
        record = recorded(handler, self.adopt(service))
        self.recorders[service] = (handler, record)
        return record

    def arecorder(self, service: Service, handler: AsyncHandler) -> AsyncHandler:
        """Async twin of :meth:`recorder` (kept in :attr:`arecorders`)."""
        if service in self._forgotten:
            return handler
        record = arecorded(handler, self.adopt(service))
        self.arecorders[service] = (handler, record)
        return record

    # -- reading -------------------------------------------------------------------

    def call_counts(self, service: str) -> tuple[int, int, int, int | None, int | None]:
        """Service ``service``'s calls finished, failed calls, retries, attempts and
        attempt errors so far (the dashboard's per-second counts are their
        differences). With a shared directory, every worker's, summed; otherwise
        attempts are None (the dashboard reads them from the endpoints)."""
        if self.shared is not None:
            c = self._host_counts().get(service) or Counts()
            return c.calls, c.failed, c.retries, c.attempts, c.attempt_errors
        with self._lock:
            series = self._calls.get(service)
        retries = int(self.counters.value("meshlite_retries_total", (service,)))
        if series is None:
            return 0, 0, retries, None, None
        reading = series.read_all()
        return reading.count, sum(reading.errors.values()), retries, None, None

    def host_latency(self, service: str) -> Buckets | None:
        """With a shared directory, service ``service``'s attempt histogram summed
        over every worker (cumulative buckets); None for one process (the dashboard
        reads the endpoints' latencies itself)."""
        if self.shared is None:
            return None
        return self.host_view().latency.get(service) or []

    def host_callers(self) -> dict[str, tuple[float, float]] | None:
        """With a shared directory, the requests and 5xx answers from each calling
        service (``x-meshlite-caller``) summed over every worker; None for one
        process."""
        if self.shared is None:
            return None
        return self.host_view().callers

    def _host_counts(self) -> dict[str, Counts]:
        return self.host_view().counts

    def host_view(self) -> HostView:
        """What the workers' files of the shared directory hold, read at most every
        quarter of a second (the dashboard asks once per service each second).

        Raises:
            AssertionError: no shared directory (:attr:`shared` is None).
        """
        now = time.monotonic()
        cached = self._host_cache
        if cached is None or now - cached.read_at > _HOST_CACHE_SECONDS:
            assert self.shared is not None
            cached = self._host_cache = HostView.read(self.shared.workers(), now)
        return cached

    @property
    def service_label(self) -> str:
        """The name of the label that carries the service (``"service"``; rename it
        where it collides, as with the Prometheus Operator's own ``service`` label).

        Raises:
            ConfigError: (on assignment) not a label name, or one meshlite uses.
        """
        return self._service_label

    @service_label.setter
    def service_label(self, name: str) -> None:
        self._service_label = check_label("Mesh metrics", "service_label", name)

    def collect(self) -> Iterable[MetricFamily]:
        """Every metric of the mesh, read now (see docs/metrics.md for the list), with
        the service label named :attr:`service_label`."""
        return self._labelled(
            self.collect_local() if self.shared is None else self.shared.collect())

    def collect_own(self) -> Iterable[MetricFamily]:
        """This process's metrics, labelled as :meth:`collect` labels them: with a
        shared directory, this worker's part of the host's totals (since its fork),
        not the merged view. What a push from each worker carries (OTLP), where a
        receiver sums the workers itself."""
        return self._labelled(
            self.collect_local() if self.shared is None else self.shared.own())

    def _labelled(self, families: Iterable[MetricFamily]) -> Iterable[MetricFamily]:
        if self._service_label != "service":
            return relabel(families, "service", self._service_label)
        return families

    def collect_local(self) -> Iterator[MetricFamily]:
        """Every metric this process recorded, with the ``service`` label."""
        with self._lock:  # read with forget() excluded: a count is in one place
            services = self._mesh.services  # (read before, it could name one forgotten)
            calls = dict(self._calls)
            observed = list(self.series)
            attempts = _attempt_readings(observed)
            totals = finished(services, observed)
        yield from service_families(services, calls, attempts, self.bounds, totals)
        yield from self.counters.collect()
        yield from mesh_families(self._mesh)
        for extra in list(self._extra):
            yield from extra.collect()

    def register(self, collector: Collector) -> Callable[[], None]:
        """Add ``collector``'s families to this mesh's metrics (for series another
        part of the application records, such as inbound requests per route): every
        exposition of the mesh includes them, and with a shared directory they are
        written to this worker's file and merged over workers like the mesh's own
        (label them with ``service`` to have the service label renamed with them).

        Returns:
            A function that removes it again.
        """
        if not callable(getattr(collector, "collect", None)):
            fail("MeshMetrics.register", "collector", collector,
                 "an object with a collect() method returning MetricFamily records")
        self._extra.append(collector)

        def remove() -> None:
            if collector in self._extra:
                self._extra.remove(collector)

        return remove

    def __repr__(self) -> str:
        return f"MeshMetrics(services={sorted(self._calls)!r})"


def _attempt_readings(services: Iterable[Service]) -> AttemptReadings:
    """Each observed backend's attempt histogram, by (service, address); an override
    service sharing a name and an address with the real one adds to its series."""
    found: dict[tuple[str, str], tuple[tuple[float, ...], list[int], float]] = {}
    for service in services:
        for e in service.endpoints:
            histogram = e.histogram()
            if histogram is None:
                continue
            bounds, counts, total = histogram
            key = (service.name, e.address)
            seen = found.get(key)
            if seen is None:
                found[key] = (bounds, list(counts), total)
            elif seen[0] == bounds:
                found[key] = (bounds, [a + b for a, b in zip(seen[1], counts, strict=True)],
                              seen[2] + total)
    return [((("service", name), ("backend", address)), bounds,
             TimingsReading(buckets=tuple(counts), sum=total, in_flight=0, errors={}))
            for (name, address), (bounds, counts, total) in sorted(found.items())]
