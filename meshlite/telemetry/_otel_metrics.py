"""A meshlite registry read as OpenTelemetry metric data: OTel names, units,
attributes and real histograms.

The registry speaks Prometheus (``meshlite_request_duration_seconds``, labels,
cumulative ``le`` buckets); an OTLP receiver expects OpenTelemetry's shape: dotted
names without unit or ``_total`` suffix, the unit in its own field, attributes
namespaced (``meshlite.service``, ``error.type``), and a histogram as one point
with per-bucket counts and explicit bounds. Attempts on an HTTP backend follow the
HTTP client semantic conventions (``http.client.request.duration``, with
``server.address`` / ``server.port``). SDK types are imported by the caller: this
module is only used by ``export_metrics()``, under the ``meshlite-mesh[otlp]`` extra.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .._semconv import DEFAULT_PORTS, server_of
from ..observability._metrics import COUNTING_SINCE

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import Metric

    from ..observability._metrics import MetricFamily, Sample

__all__ = ["HTTP_DURATION", "NAMES", "Starts", "otel_metrics", "otel_name"]

HTTP_DURATION = "http.client.request.duration"
"""The semantic-convention name attempts on an ``http(s)://`` backend are exported as."""

NAMES: dict[str, tuple[str, str]] = {
    "meshlite_requests_total": ("meshlite.calls", "{call}"),
    "meshlite_request_errors_total": ("meshlite.call.errors", "{call}"),
    "meshlite_requests_in_flight": ("meshlite.calls.active", "{call}"),
    "meshlite_request_duration_seconds": ("meshlite.call.duration", "s"),
    "meshlite_backend_requests_total": ("meshlite.backend.attempts", "{attempt}"),
    "meshlite_backend_errors_total": ("meshlite.backend.attempt.errors", "{attempt}"),
    "meshlite_backend_in_flight": ("meshlite.backend.attempts.active", "{attempt}"),
    "meshlite_backend_request_duration_seconds": ("meshlite.backend.attempt.duration", "s"),
    "meshlite_backend_ejected": ("meshlite.backend.ejected", "1"),
    "meshlite_backend_healthy": ("meshlite.backend.healthy", "1"),
    "meshlite_backend_latency_ewma_seconds": ("meshlite.backend.latency.ewma", "s"),
    "meshlite_circuit_breaker_state": ("meshlite.circuit_breaker.state", "1"),
    "meshlite_service_panic": ("meshlite.service.panic", "1"),
    "meshlite_service_backends": ("meshlite.service.backends", "{backend}"),
    "meshlite_service_available_backends": ("meshlite.service.backends.available",
                                            "{backend}"),
    "meshlite_mesh_in_flight": ("meshlite.mesh.calls.active", "{call}"),
    "meshlite_mesh_config_version": ("meshlite.mesh.config.version", "1"),
    "meshlite_mesh_config_info": ("meshlite.mesh.config.info", "1"),
    "meshlite_mesh_config_reload_failures_total": ("meshlite.mesh.config.reload_failures",
                                                   "{reload}"),
    "meshlite_store_fallbacks_total": ("meshlite.store.fallbacks", "{decision}"),
    "meshlite_store_available": ("meshlite.store.available", "1"),
    "meshlite_rate_limit_wait_seconds_total": ("meshlite.rate_limit.wait_time", "s"),
    "meshlite_server_requests_total": ("meshlite.server.requests", "{request}"),
    "meshlite_server_request_duration_seconds": ("meshlite.server.request.duration", "s"),
    "meshlite_server_caller_requests_total": ("meshlite.server.caller.requests", "{request}"),
    "meshlite_server_caller_errors_total": ("meshlite.server.caller.errors", "{request}"),
}
"""OTel name and unit of the families whose generic name would read badly; any
other ``meshlite_a_b_total`` is exported as ``meshlite.a_b`` (``_seconds``: unit
``s``; else ``1``)."""


class Starts:
    """The ``start_time_unix_nano`` of each cumulative series (counters and
    histograms) across the pushes of one export: :data:`COUNTING_SINCE` for a series
    of the first reading (it may hold calls made before the export started); the
    previous reading's time for one that appeared since, or whose count went down
    (a backend removed and added back counts from 0 again: a new cumulative
    sequence, which a receiver must not take for a drop)."""

    __slots__ = ("_last", "_previous", "_seen")

    def __init__(self) -> None:
        self._previous: int | None = None  # the previous reading's time
        self._seen: dict[tuple[str, Any], tuple[int, float]] = {}
        self._last: dict[tuple[str, Any], tuple[int, float]] = {}

    def of(self, name: str, labels: Any, count: float) -> int:
        """The start of series ``(name, labels)`` now at ``count``."""
        key = (name, labels)
        seen = self._seen.get(key)
        if seen is not None and count >= seen[1]:
            start = seen[0]
        else:
            start = COUNTING_SINCE if self._previous is None else self._previous
        self._last[key] = (start, count)
        return start

    def read(self, now: int) -> None:
        """A reading at ``now`` is complete: series it lacked are forgotten."""
        self._seen, self._last, self._previous = self._last, {}, now


_ATTRIBUTES = {"error": "error.type"}
"""Labels with a semantic-convention name; any other label ``x`` is ``meshlite.x``."""


def otel_name(family: str) -> tuple[str, str]:
    """The OpenTelemetry name and unit of the registry family ``family``."""
    found = NAMES.get(family)
    if found is not None:
        return found
    base = family.removeprefix("meshlite_").removesuffix("_total")
    unit = "1"
    if base.endswith("_seconds"):
        base, unit = base.removesuffix("_seconds"), "s"
    return f"meshlite.{base}", unit


def _attributes(labels: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {_ATTRIBUTES.get(k, f"meshlite.{k}"): v for k, v in labels}


def _server(address: str) -> dict[str, str | int] | None:
    """``server.address`` / ``server.port`` of an ``http(s)://`` address, else None."""
    server, parts = server_of(address)
    return server if server and parts is not None and parts.scheme in DEFAULT_PORTS else None


def _histogram_points(samples: Iterable[Sample]
                      ) -> dict[tuple[tuple[str, str], ...], dict[str, Any]]:
    """Per series (labels without ``le``): bounds, cumulative counts, sum, count."""
    series: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for s in samples:
        labels = tuple((k, v) for k, v in s.labels if k != "le")
        point = series.setdefault(labels, {"le": [], "sum": 0.0, "count": 0})
        if s.suffix == "_bucket":
            le = dict(s.labels)["le"]
            point["le"].append((math.inf if le == "+Inf" else float(le), int(s.value)))
        elif s.suffix == "_sum":
            point["sum"] = s.value
        elif s.suffix == "_count":
            point["count"] = int(s.value)
    return series


def _histograms(family: MetricFamily, starts: Starts, now: int) -> list[Metric]:
    from opentelemetry.sdk.metrics.export import (
        AggregationTemporality,
        Histogram,
        HistogramDataPoint,
        Metric,
    )

    name, unit = otel_name(family.name)
    http = family.name == "meshlite_backend_request_duration_seconds"
    groups: dict[str, list[HistogramDataPoint]] = {}
    for labels, point in _histogram_points(family.samples).items():
        cumulative = sorted(point["le"])
        bounds = [b for b, _ in cumulative if b != math.inf]
        counts = [n - (cumulative[i - 1][1] if i else 0) for i, (_, n) in enumerate(cumulative)]
        attributes: dict[str, str | int] = dict(_attributes(labels))
        server = _server(dict(labels).get("backend", "")) if http else None
        if server is not None:
            attributes.update(server)
        groups.setdefault(HTTP_DURATION if server else name, []).append(HistogramDataPoint(
            attributes=attributes, time_unix_nano=now,
            start_time_unix_nano=starts.of(family.name, labels, point["count"]),
            count=point["count"], sum=point["sum"], bucket_counts=counts,
            explicit_bounds=bounds,
            min=None, max=None))  # type: ignore[arg-type]  # optional in OTLP; not kept
    return [Metric(name=n, description=family.help, unit=unit, data=Histogram(
        data_points=points, aggregation_temporality=AggregationTemporality.CUMULATIVE))
        for n, points in groups.items()]


def otel_metrics(families: Iterable[MetricFamily], starts: Starts, now: int) -> list[Metric]:
    """The families as SDK metric data: counters as cumulative monotonic sums,
    gauges as gauges, histograms as histograms. ``now`` is this reading's time (Unix
    nanoseconds); ``starts`` gives each cumulative series its start, and is told the
    reading is complete."""
    from opentelemetry.sdk.metrics.export import (
        AggregationTemporality,
        Gauge,
        Metric,
        NumberDataPoint,
        Sum,
    )

    out: list[Metric] = []
    for family in families:
        if family.type == "histogram":
            out.extend(_histograms(family, starts, now))
            continue
        name, unit = otel_name(family.name)
        gauge = family.type == "gauge"
        points = [NumberDataPoint(
            attributes=_attributes(s.labels), time_unix_nano=now, value=s.value,
            start_time_unix_nano=now if gauge else starts.of(family.name, s.labels, s.value))
            for s in family.samples]
        if not points:
            continue
        data: Sum | Gauge = Gauge(data_points=points) if gauge else Sum(
            data_points=points, aggregation_temporality=AggregationTemporality.CUMULATIVE,
            is_monotonic=True)
        out.append(Metric(name=name, description=family.help, unit=unit, data=data))
    starts.read(now)
    return out
