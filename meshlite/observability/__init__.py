"""meshlite.observability: metrics of meshes and pipelines, in Prometheus text.

Every mesh records its metrics (``ml.Mesh(..., metrics=True)``, the default) in
its own registry, ``mesh.metrics``. Serve them with :func:`prometheus_app` (an ASGI
app; the dashboard mounts it at ``/metrics``) or :func:`start_http_server` (stdlib,
a background thread). Pipelines outside a mesh record with the :class:`Metrics`
policy. The metric names are listed in docs/metrics.md.
"""

from ._client import PrometheusCollector
from ._counters import Counters
from ._feed import EVENT_METRICS, EventFeed
from ._mesh_metrics import MeshMetrics
from ._metrics import (
    DEFAULT_LATENCY_BUCKETS,
    Collector,
    MetricFamily,
    Sample,
    Timings,
    TimingsReading,
)
from ._policy import Metrics
from ._prometheus import CONTENT_TYPE, MetricsServer, prometheus_app, render, start_http_server

__all__ = [
    "prometheus_app",
    "start_http_server",
    "render",
    "MetricsServer",
    "PrometheusCollector",
    "CONTENT_TYPE",
    "Metrics",
    "MeshMetrics",
    "DEFAULT_LATENCY_BUCKETS",
    # building blocks, for custom collectors
    "Collector",
    "MetricFamily",
    "Sample",
    "Counters",
    "Timings",
    "TimingsReading",
    "EventFeed",
    "EVENT_METRICS",
]
