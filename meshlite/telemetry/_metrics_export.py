"""``export_metrics()``: push a meshlite registry over OTLP/HTTP, as a second reader
of the same ``collect()`` the Prometheus exposition walks.

Each metric family becomes one observable OpenTelemetry instrument whose callback
reads the registry at collection time, so recording on the call path is unchanged:
counters become ``ObservableCounter`` (monotonic cumulative sums), gauges
``ObservableGauge``. OpenTelemetry has no observable histogram, so a histogram is
exported as two counters, ``<name>_count`` and ``<name>_sum``; its buckets are not.
The SDK and the OTLP exporter (the ``meshlite-mesh[otlp]`` extra) are imported only when
:func:`export_metrics` runs.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .._errors import ConfigError
from .._validate import fail, positive
from ._settings import ENDPOINT, SDK_DISABLED, _env, _url, missing_sdk

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Meter, Observation
    from opentelemetry.sdk.metrics import MeterProvider

    from ..observability._metrics import Collector, MetricFamily

__all__ = ["DEFAULT_EXPORT_INTERVAL", "METRICS_PATH", "MetricsExport", "export_metrics"]

OWNER = "telemetry.export_metrics"

DEFAULT_EXPORT_INTERVAL = 10.0
"""Seconds between two pushes when ``interval`` is not given."""

METRICS_PATH = "/v1/metrics"
"""Path of the OTLP/HTTP metrics endpoint under a base URL."""

METRICS_ENDPOINT = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"

_Key = tuple[str, str]  # (family name, sample suffix): one exported instrument


class _Snapshot:
    """The families of the last ``collect()``, shared by every instrument's callback.

    A collection calls each callback once, in an order the SDK does not promise; the
    registry is read again when a callback asks for a series it already took from
    the current snapshot, so one cycle costs one ``collect()`` whatever the order.
    """

    def __init__(self, sources: list[Collector]) -> None:
        self._sources = sources
        self._lock = threading.Lock()
        self._values: dict[_Key, list[tuple[dict[str, str], float]]] = {}
        self._taken: set[_Key] = set()

    def read(self) -> list[MetricFamily]:
        from ..observability._prometheus import _merge

        families = [f for c in self._sources for f in c.collect()]
        return _merge(families) if len(self._sources) > 1 else families

    def take(self, key: _Key) -> list[tuple[dict[str, str], float]]:
        with self._lock:
            if key in self._taken or not self._values:
                self._refresh()
            self._taken.add(key)
            return self._values.get(key, [])

    def _refresh(self) -> None:
        values: dict[_Key, list[tuple[dict[str, str], float]]] = {}
        for family in self.read():
            for s in family.samples:
                values.setdefault((family.name, s.suffix), []).append((dict(s.labels), s.value))
        self._values = values
        self._taken = set()


def _instruments(families: Iterable[MetricFamily]) -> list[tuple[str, str, _Key, str]]:
    """(exported name, instrument kind, snapshot key, description) of each family."""
    found: list[tuple[str, str, _Key, str]] = []
    for f in families:
        if f.type == "histogram":
            found.append((f"{f.name}_count", "counter", (f.name, "_count"),
                          f"{f.help} (observation count)"))
            found.append((f"{f.name}_sum", "counter", (f.name, "_sum"),
                          f"{f.help} (sum of observations)"))
        else:
            found.append((f.name, "gauge" if f.type == "gauge" else "counter",
                          (f.name, ""), f.help))
    return found


def _callback(snapshot: _Snapshot, key: _Key
              ) -> Callable[[CallbackOptions], Iterable[Observation]]:
    from opentelemetry.metrics import Observation

    def observe(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(value, labels) for labels, value in snapshot.take(key)]

    return observe


def _register(meter: Meter, snapshot: _Snapshot) -> int:
    instruments = _instruments(snapshot.read())
    for name, kind, key, description in instruments:
        make = (meter.create_observable_gauge if kind == "gauge"
                else meter.create_observable_counter)
        make(name, callbacks=[_callback(snapshot, key)], description=description)
    return len(instruments)


def _checked_url(field: str, value: Any) -> str:
    try:
        return _url(field, value)
    except ConfigError:  # _url names configure(); say which function was called
        fail(OWNER, field, value, "an http(s) URL without query string or fragment, "
             "such as 'http://localhost:4318'")


def _endpoint(otlp_endpoint: Any, environ: Mapping[str, str]) -> str:
    if otlp_endpoint is not None:
        url = _checked_url("otlp_endpoint", otlp_endpoint)
        # As for traces: forgive the full URL given where the base URL is expected.
        if url.rstrip("/").endswith(METRICS_PATH):
            return url
        return url.rstrip("/") + METRICS_PATH
    metrics = _env(environ, METRICS_ENDPOINT)
    if metrics is not None:  # the spec: used as is
        return _checked_url(f"{METRICS_ENDPOINT} (environment)", metrics)
    base = _env(environ, ENDPOINT)
    if base is not None:
        return _checked_url(f"{ENDPOINT} (environment)", base).rstrip("/") + METRICS_PATH
    return fail(OWNER, "otlp_endpoint", None, f"an http(s) URL (or set {METRICS_ENDPOINT} "
                f"or {ENDPOINT})")


class MetricsExport:
    """A running :func:`export_metrics` (its return value).

    Attributes:
        endpoint: The full URL metrics are posted to (``.../v1/metrics``).
        interval: Seconds between two pushes.
        instruments: How many OpenTelemetry instruments the registry became.
        meter_provider: The SDK ``MeterProvider``, or ``None`` when
            ``OTEL_SDK_DISABLED=true`` made the export a no-op.
    """

    def __init__(self, endpoint: str, interval: float, provider: MeterProvider | None,
                 instruments: int) -> None:
        self.endpoint = endpoint
        self.interval = interval
        self.meter_provider = provider
        self.instruments = instruments
        self._closed = provider is None
        if provider is not None:
            atexit.register(self.shutdown)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Read the registry and push it now, waiting up to ``timeout_millis``.

        Returns:
            ``True`` when the export finished in time (or there is nothing to do).
        """
        if self._closed or self.meter_provider is None:
            return True
        return bool(self.meter_provider.force_flush(timeout_millis))

    def shutdown(self) -> None:
        """Push a last time, then stop the export thread. Calling it twice is harmless."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.shutdown)
        if self.meter_provider is not None:
            self.meter_provider.shutdown()

    def __enter__(self) -> MetricsExport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        state = "stopped" if self._closed else "running"
        return f"MetricsExport({self.endpoint!r}, interval={self.interval}, {state})"


def _provider(endpoint: str, interval: float, service_name: str | None) -> MeterProvider:
    try:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    except ImportError as error:
        raise missing_sdk(OWNER, error) from error
    # Headers, timeout, compression and certificates still come from the
    # OTEL_EXPORTER_OTLP_* variables, which the exporter reads itself.
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint),
                                           export_interval_millis=interval * 1000)
    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES itself.
    attributes = {} if service_name is None else {SERVICE_NAME: service_name}
    # The handle registers its own atexit hook and drops it on shutdown(): the SDK's
    # would keep every stopped provider alive until exit.
    return MeterProvider(metric_readers=[reader], resource=Resource.create(attributes),
                         shutdown_on_exit=False)


def export_metrics(
    source: Any,
    otlp_endpoint: str | None = None,
    interval: float = DEFAULT_EXPORT_INTERVAL,
    *,
    service_name: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> MetricsExport:
    """Push the metrics of ``source`` to an OTLP/HTTP receiver every ``interval`` seconds.

    The registry is read at each push (nothing is added to the call path). Metric
    names are the Prometheus ones (``meshlite_requests_total``...), labels become
    attributes; a histogram is pushed as ``<name>_count`` and ``<name>_sum``
    counters (no buckets). ``OTEL_SDK_DISABLED=true`` makes it a no-op.

    Args:
        source: A mesh, ``mesh.metrics``, an ``ml.Metrics`` policy, or a list of them.
        otlp_endpoint: Base URL of the receiver (``"http://localhost:4318"``); a URL
            already ending in ``/v1/metrics`` is used as is. Else
            ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` (used as is), else
            ``OTEL_EXPORTER_OTLP_ENDPOINT`` + ``/v1/metrics``.
        interval: Seconds between two pushes, > 0.
        service_name: The ``service.name`` resource attribute (else
            ``OTEL_SERVICE_NAME``, else OpenTelemetry's ``unknown_service``).
        environ: The environment to read (default ``os.environ``); for tests.

    Returns:
        The running :class:`MetricsExport` (``force_flush()``, ``shutdown()``).

    Raises:
        ConfigError: a bad source, endpoint, interval or service name (named), no
            endpoint anywhere, or the SDK is not installed.
    """
    # Imported here: observability imports routing, which imports this package.
    from ..observability._prometheus import collectors

    sources = collectors(source)
    environ = os.environ if environ is None else environ
    endpoint = _endpoint(otlp_endpoint, environ)
    seconds = positive(OWNER, "interval", interval)
    if service_name is not None and (not isinstance(service_name, str)
                                     or not service_name.strip()):
        fail(OWNER, "service_name", service_name, "a non-empty string")
    if (_env(environ, SDK_DISABLED) or "").lower() == "true":
        return MetricsExport(endpoint, seconds, None, 0)
    provider = _provider(endpoint, seconds, None if service_name is None
                         else service_name.strip())
    count = _register(provider.get_meter("meshlite"), _Snapshot(sources))
    return MetricsExport(endpoint, seconds, provider, count)
