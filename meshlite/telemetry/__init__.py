"""meshlite.telemetry: send traces to Jaeger or any OTLP/HTTP receiver.

``ml.telemetry.configure("checkout", otlp_endpoint="http://localhost:4318")`` sets
up the OpenTelemetry SDK (the ``meshlite-mesh[otlp]`` extra) behind the global tracer
provider; ``ml.Trace`` and the mesh then record one span per call and one per
attempt. Importing this module imports only the OpenTelemetry API: the SDK is
loaded by :func:`configure`.

Precedence, per setting: explicit argument > ``OTEL_*`` environment variable >
default; ``OTEL_SDK_DISABLED=true`` turns everything off.

``ml.telemetry.export_metrics(mesh, otlp_endpoint=...)`` pushes a mesh's metrics
over OTLP/HTTP too (see docs/metrics.md).
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports
from ._configure import Telemetry, configure, current
from ._configure import _reset_for_tests as _reset_for_tests  # for test fixtures
from ._metrics_export import DEFAULT_EXPORT_INTERVAL, METRICS_PATH, MetricsExport, export_metrics
from ._settings import DEFAULT_SAMPLE_RATIO, TRACES_PATH, TelemetrySettings
from ._spans import attempt_span, record_http_request, record_http_status

if TYPE_CHECKING:
    from ..observability._prometheus import (
        MetricsServer,
        prometheus_app,
        render,
        start_http_server,
    )

# Prometheus exposition lives in meshlite.observability, which imports routing, which
# imports this package: these names are resolved on first use to break the cycle.
_PROMETHEUS = dict.fromkeys(("prometheus_app", "start_http_server", "render", "MetricsServer"),
                           "..observability._prometheus")
if not TYPE_CHECKING:  # type checkers see the imports above, and no other name
    __getattr__, __dir__ = lazy_exports(__name__, _PROMETHEUS, globals())

__all__ = [
    "configure",
    "current",
    "Telemetry",
    "TelemetrySettings",
    "DEFAULT_SAMPLE_RATIO",
    "TRACES_PATH",
    "export_metrics",
    "MetricsExport",
    "DEFAULT_EXPORT_INTERVAL",
    "METRICS_PATH",
    # Prometheus exposition, without the dashboard
    "prometheus_app",
    "start_http_server",
    "render",
    "MetricsServer",
    # for routing and transports
    "attempt_span",
    "record_http_request",
    "record_http_status",
]
