"""MeshMetrics: the metrics registry of one mesh (``mesh.metrics``).

Three sources, by cost:

- read at scrape time, free on the call path: each backend's request, error and
  in-flight counters (kept by routing anyway), ejection and health state, breaker
  states and panic mode;
- recorded per call without a lock: the mesh's dispatch takes a token from the
  service's :class:`~._metrics.Timings` gate when a call starts and appends the
  call's latency when it ends, inline (the calls in flight are the tokens taken
  less the calls finished, and the histogram is counted in batches);
  each endpoint counts its attempts' latencies in a histogram, under the lock it
  takes for its other counters anyway, with the latency it measured anyway (see
  ``Endpoint.record_histogram``), so attempts cost no clock read and no call;
- counted from events (retries, rejections, transitions, cache hits...): the
  :class:`~._feed.EventFeed` hook, subscribed once to each service and policy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..routing._service import Service
from ._feed import EVENT_METRICS, EventFeed, touch_service
from ._metrics import (
    DEFAULT_LATENCY_BUCKETS,
    Counters,
    MetricFamily,
    Timings,
    TimingsReading,
    check_buckets,
)
from ._scrape import AttemptReadings, mesh_families, service_families

if TYPE_CHECKING:
    from .._mesh import Mesh

__all__ = ["Lane", "MeshMetrics"]

Lane = tuple[list[None], list[float], Timings, Callable[[], float]]
"""What the mesh's dispatch reads per call of one service: the gate of its call
series (a call takes a token when it starts), the list its latencies are appended
to, the series (:class:`~meshlite.observability._metrics.Timings`), and the
service clock's ``monotonic``."""


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
        self.lanes: dict[Service, Lane] = {}
        """Each observed service's :data:`Lane` (the mesh's dispatch reads it per call)."""
        self._refusing = False  # the mesh refuses calls: new series start with gates closed
        self._subscribed: dict[int, tuple[Any, Callable[[], None]]] = {}
        self.counters = Counters(EVENT_METRICS)
        self.feed = EventFeed(self.counters)
        for service in mesh.services:
            self.adopt(service)

    # -- services ---------------------------------------------------------------

    def adopt(self, service: Service) -> Lane:
        """Start observing ``service`` (the mesh calls this for each service it
        registers or makes for an override): its calls, its attempts and its events.
        Idempotent; returns the service's lane."""
        with self._lock:
            lane = self.lanes.get(service)
            if lane is not None:
                return lane
            name = service.name
            series = self._calls.get(name)
            if series is None:
                series = self._calls[name] = Timings((("service", name),), self.bounds)
                if self._refusing:
                    series.close_gate()
            service._record_histograms(self.bounds)  # attempts: timed by the endpoints
            self._subscribe(service.hooks, service.hooks.add(self.feed))
            for policy in service.pipeline.walk():
                if id(policy) not in self._subscribed:
                    self._subscribe(policy, policy.hooks.add(self.feed))
            touch_service(self.counters, name, {p.kind for p in service.pipeline.walk()})
            lane = (series.gate, series.pending, series, service.clock.monotonic)
            self.lanes[service] = lane
            return lane

    def refuse(self, refusing: bool) -> None:
        """Close the gates of every call series (the mesh is closing: its dispatch
        refuses calls that find a gate closed), or open them again."""
        with self._lock:
            self._refusing = refusing
            for series in self._calls.values():
                if refusing:
                    series.close_gate()
                else:
                    series.open_gate()

    def _subscribe(self, owner: Any, remove: Callable[[], None]) -> None:
        # Keeping the owner alive keeps its id from being reused by another object.
        self._subscribed[id(owner)] = (owner, remove)

    @property
    def in_flight(self) -> int:
        """Calls in flight through every observed service (the mesh's drain counts
        them with its own)."""
        with self._lock:
            series = list(self._calls.values())
        return sum(s.in_flight for s in series)

    # -- reading -------------------------------------------------------------------

    def collect(self) -> Iterable[MetricFamily]:
        """Every metric of the mesh, read now (see docs/metrics.md for the list)."""
        services = self._mesh.services
        with self._lock:
            calls = dict(self._calls)
            lanes = list(self.lanes)
        attempts = _attempt_readings(lanes)
        yield from service_families(services, calls, attempts, self.bounds)
        yield from self.counters.collect()
        yield from mesh_families(self._mesh)

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
