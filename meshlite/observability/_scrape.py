"""Scrape-time reading of a mesh: families built from the state services already
keep (endpoint counters, ejection and health, breakers) and from the call timings."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..routing._service import Service
from ._metrics import Labels, MetricFamily, Sample, Timings, TimingsReading, histogram_samples

if TYPE_CHECKING:
    from ..mesh._mesh import Mesh

__all__ = ["AttemptReadings", "BREAKER_STATES", "CONFIG_SHA256_CHARS", "Totals", "finished",
           "mesh_families", "service_families"]

BREAKER_STATES = ("closed", "open", "half_open", "forced_open", "disabled")
"""Every circuit breaker state, each a series of ``meshlite_circuit_breaker_state``."""

AttemptReadings = list[tuple[Labels, tuple[float, ...], TimingsReading]]
"""Backends' attempt histograms: labels, bucket bounds and reading of each."""

Totals = dict[tuple[str, str], tuple[int, int]]
"""Attempts and failed attempts of each (service, backend address)."""

CONFIG_SHA256_CHARS = 12
"""Hex digits of the config's SHA-256 in ``meshlite_mesh_config_info``'s ``sha256``."""

_REQUEST = "meshlite_request"
_BACKEND = "meshlite_backend"


def _family(name: str, kind: str, help_text: str, samples: Iterable[Sample]
            ) -> MetricFamily:
    return MetricFamily(name, kind, help_text, tuple(samples))


def _calls(readings: list[tuple[Labels, TimingsReading, int]], bounds: tuple[float, ...]
           ) -> Iterator[MetricFamily]:
    yield _family("meshlite_requests_total", "counter",
                  "Calls finished through the mesh (logical calls, retries included once).",
                  (Sample("", lb, r.count) for lb, r, _ in readings))
    yield _family(f"{_REQUEST}_errors_total", "counter",
                  "Calls that ended in an error, by the error's class name.",
                  (Sample("", (*lb, ("error", name)), n) for lb, r, _ in readings
                   for name, n in sorted(r.errors.items())))
    yield _family("meshlite_requests_in_flight", "gauge",
                  "Calls running now (in policies, waiting, or on a backend).",
                  (Sample("", lb, running) for lb, _, running in readings))
    yield _family(f"{_REQUEST}_duration_seconds", "histogram",
                  "Time of each call through the service's pipeline, all attempts included.",
                  (s for lb, r, _ in readings for s in histogram_samples(lb, bounds, r)))


def finished(services: Iterable[Service], observed: Iterable[Service]) -> Totals:
    """Attempts and failed attempts of each current (service, backend), summed over
    every endpoint of that name and address the mesh observes: a service a reload
    rebuilt counts here until it has drained, then its counts are carried by its
    successor's endpoints (``MeshMetrics.forget``), so its counters carry on instead
    of dropping (which Prometheus reads as a reset)."""
    totals = {(s.name, e.address): (0, 0) for s in services for e in s.endpoints}
    seen: set[int] = set()
    for s in (*services, *observed):
        for e in s.endpoints:
            key = (s.name, e.address)
            if id(e) in seen or key not in totals:
                continue
            seen.add(id(e))
            requests, errors = totals[key]
            before_requests, before_errors = e.carried  # a replaced endpoint's
            totals[key] = (requests + e.requests + before_requests,
                           errors + e.errors + before_errors)
    return totals


def _endpoint_gauges(services: Iterable[Service], totals: Totals) -> Iterator[MetricFamily]:
    rows = [((("service", s.name), ("backend", e.address)), e)
            for s in services for e in s.endpoints]
    # A backend a reload (on another thread) set after the totals were read is
    # counted from the next scrape on.
    counted = [(lb, count) for lb, _ in rows
               if (count := totals.get((lb[0][1], lb[1][1]))) is not None]
    for name, help_text, index in (
            (f"{_BACKEND}_requests_total", "Attempts a backend finished.", 0),
            (f"{_BACKEND}_errors_total", "Attempts on a backend that failed.", 1)):
        yield _family(name, "counter", help_text, (
            Sample("", lb, count[index]) for lb, count in counted))
    for name, kind, help_text, read in (
        (f"{_BACKEND}_in_flight", "gauge", "Attempts running on a backend now.",
         lambda e: e.in_flight),
        (f"{_BACKEND}_ejected", "gauge", "1 while outlier detection has the backend ejected.",
         lambda e: int(e.ejected_until is not None)),
        (f"{_BACKEND}_healthy", "gauge", "0 while active health checking marks it unhealthy.",
         lambda e: int(e.healthy)),
        (f"{_BACKEND}_latency_ewma_seconds", "gauge",
         "Peak-EWMA latency of the backend (what the p2c_ewma balancer compares).",
         lambda e: e.ewma),
    ):
        yield _family(name, kind, help_text, (Sample("", lb, read(e)) for lb, e in rows))


def _breakers(service: Service) -> list[tuple[str, Any]]:
    found = [p for p in service.pipeline.walk() if p.kind == "circuit_breaker"]
    out = []
    for i, policy in enumerate(found):
        name = getattr(getattr(policy, "options", None), "name", None) or service.name
        out.append((name if len(found) == 1 else f"{name}#{i + 1}", policy))
    return out


def _service_gauges(services: Iterable[Service]) -> Iterator[MetricFamily]:
    services = list(services)
    yield _family("meshlite_service_backends", "gauge", "Backends configured.",
                  (Sample("", (("service", s.name),), len(s.endpoints)) for s in services))
    panic = [s.panic for s in services]
    yield _family("meshlite_service_available_backends", "gauge",
                  "Backends in rotation: neither ejected nor unhealthy.",
                  (Sample("", (("service", s.name),), sum(
                      1 for e in s.endpoints if e.ejected_until is None and e.healthy))
                   for s in services))
    yield _family("meshlite_service_panic", "gauge",
                  "1 while every backend is out and calls go to all of them.",
                  (Sample("", (("service", s.name),), int(p)) for s, p in zip(
                      services, panic, strict=True)))
    samples: list[Sample] = []
    for s in services:
        for name, policy in _breakers(s):
            state = str(getattr(policy, "state", ""))
            samples.extend(Sample("", (("service", s.name), ("breaker", name), ("state", st)),
                                  int(st == state)) for st in BREAKER_STATES)
    yield _family("meshlite_circuit_breaker_state", "gauge",
                  "1 for the breaker's current state, 0 for the others.", samples)


def service_families(services: tuple[Service, ...], calls: dict[str, Timings],
                     attempts: AttemptReadings, bounds: tuple[float, ...],
                     totals: Totals) -> Iterator[MetricFamily]:
    """The per-service and per-backend families: ``calls`` are the call series by
    service name, ``attempts`` the backends' attempt histograms (labels, bounds,
    reading) in exposition order, ``totals`` the backends' attempt counts
    (:func:`finished`)."""
    for s in services:
        s._due()  # return backends whose ejection ran out, so the gauges read now
    readings = [(series.labels, reading, reading.in_flight)
                for series, reading in ((calls[n], calls[n].read_all()) for n in sorted(calls))]
    yield from _calls(readings, bounds)
    yield from _endpoint_gauges(services, totals)
    yield _family(f"{_BACKEND}_request_duration_seconds", "histogram",
                  "Time of each attempt on a backend, successes and failures.",
                  (s for labels, edges, reading in attempts
                   for s in histogram_samples(labels, edges, reading)))
    yield from _service_gauges(services)


def mesh_families(mesh: Mesh) -> Iterator[MetricFamily]:
    """The mesh-wide families."""
    yield _family("meshlite_mesh_in_flight", "gauge", "Calls running in the mesh now.",
                  [Sample("", (), mesh.in_flight)])
    yield _family("meshlite_mesh_config_version", "gauge",
                  "Config reloads this process applied (0 before the first).",
                  [Sample("", (), mesh.config_version)])
    yield _family("meshlite_mesh_config_reload_failures_total", "counter",
                  "Config reloads this process rejected (the config in force stayed).",
                  [Sample("", (), mesh.reload_failures)])
    stores = _stores(mesh)
    if stores:
        yield _family("meshlite_store_available", "gauge",
                      "1 while a shared store its policies decide with answers, 0 while "
                      "it is down (decisions fall back).",
                      [Sample("", (("store", label),), 1 if store.available else 0)
                       for label, store in sorted(stores.items())])
    if mesh.config_sha256:  # the same in every worker that runs the same file
        yield _family("meshlite_mesh_config_info", "gauge",
                      "1, labelled with the start of the SHA-256 of the config file in force.",
                      [Sample("", (("sha256", mesh.config_sha256[:CONFIG_SHA256_CHARS]),), 1)])


def _stores(mesh: Mesh) -> dict[str, Any]:
    """The shared stores (those that can be down: ``available``) the mesh's services'
    policies and its inbound quotas decide with, by label."""
    found: dict[str, Any] = {}
    for service in mesh.services:
        for policy in service.pipeline.walk():  # nested pipelines' policies too
            _note(found, getattr(getattr(policy, "options", None), "store", None))
    inbound = getattr(getattr(mesh, "inbound", None), "table", None)
    for compiled in getattr(inbound, "routes", ()):
        _note(found, compiled.route.store)
    return found


def _note(found: dict[str, Any], store: Any) -> None:
    if store is not None and hasattr(store, "available"):
        found[str(getattr(store, "label", store))] = store
