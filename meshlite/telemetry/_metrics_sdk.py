"""The SDK side of ``export_metrics()``: the periodic reader that pushes the registry,
the OTLP exporter watched for outages, the provider. It imports the OpenTelemetry
SDK and the OTLP exporter (the ``meshlite-mesh[otlp]`` extra), so it is imported only
when :func:`~meshlite.telemetry.export_metrics` runs, as ``_sdk`` for traces."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from .._printable import url_shown
from .._version import __version__
from ._metrics_export import _read
from ._otel_metrics import Starts, otel_metrics
from ._outage import ExportFailed, ExportOutage, ExportRecovered, Line
from ._quiet import quiet
from ._session import exporter_session

if TYPE_CHECKING:
    from ..observability._metrics import Collector

__all__ = ["WatchedMetricExporter", "build_provider"]

_INSTANCE = "service.instance.id"


def _reader(exporter: MetricExporter, interval: float, sources: list[Collector],
            resource: Resource) -> tuple[MetricReader, Callable[[Meter], None]]:
    """A periodic reader that pushes the registry (read once per push) beside what
    the SDK collected, so histograms keep their buckets and a family that appears
    after the export started is pushed too; and the function that registers, on the
    provider's meter, the one SDK instrument it needs (``meshlite.export.series``:
    the series of the last push), since the SDK hands nothing to a reader whose
    provider has no data."""
    scope = InstrumentationScope("meshlite", __version__)
    starts, series = Starts(), [0]

    class RegistryReader(PeriodicExportingMetricReader):
        def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000,
                             **kwargs: Any) -> None:
            ours = otel_metrics(_read(sources), starts, time.time_ns())
            series[0] = sum(len(m.data.data_points) for m in ours)
            theirs = [m for rm in metrics_data.resource_metrics for sm in rm.scope_metrics
                      for m in sm.metrics]
            super()._receive_metrics(MetricsData(resource_metrics=[ResourceMetrics(
                resource=resource, schema_url="", scope_metrics=[
                    ScopeMetrics(scope=scope, metrics=[*ours, *theirs], schema_url="")])]),
                timeout_millis, **kwargs)

    def observe(options: CallbackOptions) -> list[Observation]:
        return [Observation(series[0])]

    def register(meter: Meter) -> None:
        meter.create_observable_gauge("meshlite.export.series", callbacks=[observe],
                                      unit="{series}",
                                      description="Series the previous push carried")

    return RegistryReader(exporter, export_interval_millis=interval * 1000), register


class WatchedMetricExporter(MetricExporter):
    """The OTLP exporter, saying on the ``meshlite.telemetry`` logger when the
    collector stops taking pushes and when it takes them again: once each per outage
    and process, whatever the number of pushes that fail meanwhile (the exporter's
    own lines say why, once a minute). The outage is watched by
    ``_outage.ExportOutage``, as the span exporter's is.

    A push given up loses less than a batch of spans: counters and histograms are
    cumulative, so the first push the collector takes carries their totals; the
    gauges' readings of the pushes given up are lost."""

    signal = "Metric"

    def __init__(self, exporter: MetricExporter, collector: str, interval: float) -> None:
        # The reader takes its temporality and aggregation from its exporter.
        super().__init__(exporter._preferred_temporality, exporter._preferred_aggregation)
        self.exporter = exporter
        self.interval = interval
        self.outage = ExportOutage(collector, self)
        self._closed = False

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000,
               **kwargs: Any) -> MetricExportResult:
        """Export through the OTLP exporter; log a change between failing and not."""
        result = self.exporter.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        if not self._closed:  # a push refused by the closed exporter is no outage
            self.outage.exported(result is MetricExportResult.SUCCESS, sum(
                len(m.data.data_points) for rm in metrics_data.resource_metrics
                for sm in rm.scope_metrics for m in sm.metrics))
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        """The OTLP exporter's ``force_flush``."""
        return self.exporter.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        """Shut the OTLP exporter down."""
        self._closed = True
        self.exporter.shutdown(timeout_millis, **kwargs)

    def failed(self, event: ExportFailed) -> Line:
        """``MetricExportFailed``: the push is given up, the next ones come as usual."""
        return Line(
            "telemetry: the collector %s did not take a push of %d metric points (the "
            "exporter's lines say why), which is given up; pushes go on every %g s: "
            "counters and histograms are cumulative, so the first push it takes carries "
            "their totals, and only the gauges' readings meanwhile are lost",
            (event.collector, event.items, self.interval), {"points": event.items})

    def recovered(self, event: ExportRecovered) -> Line:
        """``MetricExportRecovered``: how many pushes were given up."""
        return Line(
            "telemetry: the collector %s takes metrics again after %.1f s; %d pushes were "
            "given up meanwhile (this one carries the counters' and histograms' totals; "
            "the gauges' readings of those pushes are lost)",
            (event.collector, event.down_seconds, event.exports),
            {"down_seconds": event.down_seconds, "pushes": event.exports})


def build_provider(endpoint: str, interval: float, service_name: str | None,
                   sources: list[Collector]) -> MeterProvider:
    """A provider whose one reader pushes ``sources`` to ``endpoint`` every
    ``interval`` seconds, not installed as the global one."""
    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES itself.
    resource = Resource.create({} if service_name is None else {SERVICE_NAME: service_name})
    if _INSTANCE not in resource.attributes:  # (recent SDKs add one, older ones not)
        # Each process one writer of its series: a receiver tells workers and replicas
        # apart by it, where two pushes of one resource would overwrite each other.
        resource = resource.merge(Resource({_INSTANCE: str(uuid.uuid4())}))
    # Headers, timeout, compression and certificates still come from the
    # OTEL_EXPORTER_OTLP_* variables, which the exporter reads itself.
    quiet(OTLPMetricExporter.__module__)  # one line per failure a minute, not per push
    exporter = WatchedMetricExporter(
        OTLPMetricExporter(endpoint=endpoint, session=exporter_session("METRICS")),
        url_shown(endpoint), interval)
    reader, register = _reader(exporter, interval, sources, resource)
    # The handle has itself shut down at exit and forgets that on shutdown(): the SDK's
    # would keep every stopped provider alive until exit. The provider owns the
    # reader's thread (flush, shutdown).
    provider = MeterProvider(metric_readers=[reader], resource=resource,
                             shutdown_on_exit=False)
    register(provider.get_meter("meshlite"))
    return provider
