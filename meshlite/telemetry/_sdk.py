"""Building the SDK side: the only module that imports the OpenTelemetry SDK and the
OTLP exporter (the ``meshlite-mesh[otlp]`` extra). Imported by ``configure()`` only."""

from __future__ import annotations

import sys

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from ._quiet import quiet
from ._settings import TelemetrySettings

__all__ = ["build_provider"]


def build_provider(settings: TelemetrySettings) -> TracerProvider:
    """An SDK provider for ``settings``: ``service.name`` resource (merged with
    ``OTEL_RESOURCE_ATTRIBUTES``), parent-based ratio sampling, a batch processor
    exporting OTLP/HTTP protobuf, and a console exporter when asked.

    Raises:
        ImportError: the OTLP exporter package is missing (only when one is needed).
    """
    provider = TracerProvider(
        sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
        # Resource.create also reads OTEL_RESOURCE_ATTRIBUTES; the explicit name wins.
        resource=Resource.create({SERVICE_NAME: settings.service_name}),
        # meshlite registers one atexit hook for whichever provider is current; one per
        # provider would keep every replaced provider alive until exit.
        shutdown_on_exit=False,
    )
    if settings.traces_endpoint is not None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # Headers, timeout, compression and certificates still come from the
        # OTEL_EXPORTER_OTLP_* variables, which the exporter reads itself.
        from ._session import exporter_session

        exporter = OTLPSpanExporter(endpoint=settings.traces_endpoint,
                                    session=exporter_session("TRACES"))
        quiet(OTLPSpanExporter.__module__)  # one line per failure a minute, not per batch
        provider.add_span_processor(BatchSpanProcessor(exporter))
    if settings.console:
        # Printed as each span ends: the console is for watching, not for throughput.
        # sys.stdout is read now: the exporter's default is bound when the SDK imports.
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stdout)))
    return provider
