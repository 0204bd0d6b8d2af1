"""PrometheusCollector: meshlite's series in a ``prometheus_client`` registry.

An application with its own ``/metrics`` (``prometheus_client.make_asgi_app()``,
``generate_latest()``, OpenMetrics, gzip, process metrics, multiprocess mode)
registers a mesh once and every scrape of that registry includes the mesh's
series. meshlite keeps recording on its own path (no ``prometheus_client`` object
on the call path): the collector reads the mesh's registry at scrape time, as a
"custom collector" in ``prometheus_client``'s terms.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .._extras import requires_extra
from ._prometheus import collectors, read_families

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

__all__ = ["PrometheusCollector"]


class PrometheusCollector:
    """A ``prometheus_client`` collector reading meshlite's metrics at each scrape.

    Args:
        source: A mesh, ``mesh.metrics``, an ``ml.Metrics`` policy, or a list of
            them. A mesh sharing a multiprocess directory (``MESHLITE_MULTIPROC_DIR``,
            or ``PROMETHEUS_MULTIPROC_DIR``) reports every worker of the host.

    Raises:
        ConfigError: ``source`` has no metrics (a mesh made with ``metrics=False``).
        ModuleNotFoundError: ``prometheus_client`` is not installed (the
            ``prometheus`` extra): the error names the extra.

    Example::

        from prometheus_client import CollectorRegistry, generate_latest
        from meshlite.observability import PrometheusCollector

        registry = CollectorRegistry()
        registry.register(PrometheusCollector(mesh))
        text = generate_latest(registry)
    """

    def __init__(self, source: Any) -> None:
        with requires_extra("PrometheusCollector", "prometheus"):
            import prometheus_client  # noqa: F401  (the collector is for its registry)
        self._sources = collectors(source)

    def describe(self) -> list[Metric]:
        """Nothing: the registry then checks no names at registration (meshlite's
        families appear as services are added) and collects only when scraped."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Every meshlite family, as ``prometheus_client`` metric families."""
        from prometheus_client.metrics_core import Metric

        for family in read_families(self._sources):
            name = family.name
            if family.type == "counter" and name.endswith("_total"):
                name = name[:-6]  # prometheus_client names a counter's family without it
            metric = Metric(name, family.help, family.type)
            for s in family.samples:
                metric.add_sample(family.name + s.suffix, dict(s.labels), s.value)
            yield metric

    def __repr__(self) -> str:
        return f"PrometheusCollector({self._sources!r})"
