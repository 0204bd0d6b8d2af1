"""``export_metrics()``: push a meshlite registry over OTLP/HTTP, as a second reader
of the same ``collect()`` the Prometheus exposition walks.

The SDK's periodic reader is given a collection of its own: each push reads the
registry once and converts it (``_otel_metrics``) to OpenTelemetry's shape, with
OTel names and units, counters as cumulative monotonic sums, gauges as gauges and
histograms as histograms with their buckets. Recording on the call path is
unchanged. The SDK and the OTLP exporter (the ``meshlite-mesh[otlp]`` extra) are
imported only when :func:`export_metrics` runs, by ``_metrics_sdk``, which also
says when the collector stops taking pushes and when it takes them again.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._errors import ConfigError
from .._printable import url_shown
from .._validate import fail, wait_seconds
from ._bounded import (
    SHUTDOWN_TIMEOUT_MILLIS,
    OneAtATime,
    bounded,
    forget_at_exit,
    shut_down_at_exit,
)
from ._settings import ENDPOINT, SDK_DISABLED, _env, _url, missing_sdk

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider

    from ..observability._metrics import Collector, MetricFamily

__all__ = ["DEFAULT_EXPORT_INTERVAL", "METRICS_PATH", "MetricsExport", "export_metrics"]

OWNER = "telemetry.export_metrics"

DEFAULT_EXPORT_INTERVAL = 10.0
"""Seconds between two pushes when ``interval`` is not given."""

METRICS_PATH = "/v1/metrics"
"""Path of the OTLP/HTTP metrics endpoint under a base URL."""

METRICS_ENDPOINT = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"


def _read(sources: list[Collector]) -> list[MetricFamily]:
    """One reading of every source (series of several sources merged): a mesh's
    series of this process only (``collect_own``), where a shared directory of
    several workers would give each worker's push the host's totals, and a receiver
    summing the workers (each its ``service.instance.id``) would count every call
    once per worker."""
    from ..observability._prometheus import _merge

    families = [f for c in sources
                for f in getattr(c, "collect_own", c.collect)()]
    return _merge(families) if len(sources) > 1 else families


def _checked_url(field: str, value: Any) -> str:
    try:
        return _url(field, value)
    except ConfigError:  # _url names configure(); say which function was called
        fail(OWNER, field, url_shown(value) if isinstance(value, str) else value,
             "an http(s) URL without query string or fragment, such as "
             "'http://localhost:4318'")


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
        instruments: How many metric families the registry had when the export
            started (later ones are pushed too).
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
        self._flush = OneAtATime()
        if provider is not None:
            shut_down_at_exit(self, self.shutdown, self.force_flush)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Read the registry and push it now, waiting up to ``timeout_millis`` (an
        export still running then goes on in the background, and a later call waits
        for it rather than starting another).

        Returns:
            ``True`` when the export finished in time (or there is nothing to do).
        """
        provider = self.meter_provider
        if self._closed or provider is None:
            return True
        return self._flush(lambda: bool(provider.force_flush(timeout_millis)),
                           timeout_millis) is True

    def shutdown(self, timeout_millis: int = SHUTDOWN_TIMEOUT_MILLIS) -> None:
        """Push a last time, then stop the export thread, waiting up to
        ``timeout_millis`` for the push (a collector that is down or stalled holds
        up the caller no longer). Calling it twice is harmless."""
        if self._closed:
            return
        self._closed = True
        forget_at_exit(self)
        if self.meter_provider is not None:
            bounded(self.meter_provider.shutdown, timeout_millis)

    def __enter__(self) -> MetricsExport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        state = "stopped" if self._closed else "running"
        return f"MetricsExport({url_shown(self.endpoint)!r}, interval={self.interval}, {state})"


def _provider(endpoint: str, interval: float, service_name: str | None,
              sources: list[Collector]) -> MeterProvider:
    try:
        from ._metrics_sdk import build_provider
    except ImportError as error:
        raise missing_sdk(OWNER, error) from error
    return build_provider(endpoint, interval, service_name, sources)


def export_metrics(
    source: Any,
    otlp_endpoint: str | None = None,
    interval: float = DEFAULT_EXPORT_INTERVAL,
    *,
    service_name: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> MetricsExport:
    """Push the metrics of ``source`` to an OTLP/HTTP receiver every ``interval`` seconds.

    The registry is read at each push (nothing is added to the call path). Metrics
    have OpenTelemetry names and units (``meshlite.calls``, ``meshlite.call.duration``
    in ``s``; attempts on an HTTP backend as ``http.client.request.duration`` with
    ``server.address`` / ``server.port``; see docs/metrics.md), labels become
    attributes (``meshlite.service``, ``error.type``...), histograms keep their
    buckets. ``OTEL_SDK_DISABLED=true`` makes it a no-op.

    Args:
        source: A mesh, ``mesh.metrics``, an ``ml.Metrics`` policy, or a list of them.
        otlp_endpoint: Base URL of the receiver (``"http://localhost:4318"``); a URL
            already ending in ``/v1/metrics`` is used as is. Else
            ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` (used as is), else
            ``OTEL_EXPORTER_OTLP_ENDPOINT`` + ``/v1/metrics``.
        interval: Seconds between two pushes, > 0 (at most ``threading.TIMEOUT_MAX``,
            about 292 years: the SDK's thread waits it in one wait).
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
    seconds = wait_seconds(OWNER, "interval", interval)  # the SDK's thread waits it
    if service_name is not None and (not isinstance(service_name, str)
                                     or not service_name.strip()):
        fail(OWNER, "service_name", service_name, "a non-empty string")
    if (_env(environ, SDK_DISABLED) or "").lower() == "true":
        return MetricsExport(endpoint, seconds, None, 0)
    provider = _provider(endpoint, seconds, None if service_name is None
                         else service_name.strip(), sources)
    return MetricsExport(endpoint, seconds, provider, len(_read(sources)))
