"""Building the SDK side: the only module that imports the OpenTelemetry SDK and the
OTLP exporter (the ``meshlite-mesh[otlp]`` extra). Imported by ``configure()`` only."""

from __future__ import annotations

import collections
import logging
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.environment_variables import (
    OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT,
    OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT,
)
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from .._fork import fork_safe
from .._printable import url_shown
from .._throttle import Throttle
from ._outage import ExportFailed, ExportOutage, ExportRecovered, Line
from ._quiet import WINDOW_SECONDS, quiet
from ._settings import TelemetrySettings

__all__ = ["DEFAULT_SPAN_ATTRIBUTE_LENGTH", "SpanQueue", "WatchedExporter", "build_provider"]

_log = logging.getLogger("meshlite.telemetry")

DEFAULT_SPAN_ATTRIBUTE_LENGTH = 2048
"""Characters a span attribute's value keeps when neither
``OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT`` nor ``OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT``
says (the SDK's own default is no limit). A client writes the path, query and
``User-Agent`` of the SERVER span of its request, and the span queue holds 2,048
spans while the collector is down or slower than spans come: unlimited, requests of
20 KB of each held some 250 MB there. Events' attributes (an exception's stack
trace) are not cut."""


def _span_limits() -> SpanLimits | None:
    """The provider's limits: the SDK's (read from the environment) when a length
    limit is set there, else :data:`DEFAULT_SPAN_ATTRIBUTE_LENGTH`."""
    named = (OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT, OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT)
    if any(os.environ.get(name, "").strip() for name in named):
        return None
    return SpanLimits(max_span_attribute_length=DEFAULT_SPAN_ATTRIBUTE_LENGTH)


def _sdk_queue(processor: BatchSpanProcessor) -> collections.deque[Any] | None:
    """The SDK's span queue, a deque bounded by ``maxlen`` (private: ``_batch_processor.
    _queue`` since SDK 1.30, ``queue`` before), or None when it is not found."""
    inner = getattr(processor, "_batch_processor", processor)
    for name in ("_queue", "queue"):
        queue = getattr(inner, name, None)
        if isinstance(queue, collections.deque) and queue.maxlen:
            return queue
    return None


class _NotSpanDrops(logging.Filter):
    """Drops the SDK's "Queue full, dropping Span." (one a span while the queue is full,
    a duplicate filter its only bound): :class:`SpanQueue` says it once a minute, with
    the count. The SDK's other lines (its log records' queue) pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (str(record.msg).startswith("Queue full") and record.args == ("Span",))


def _quiet_sdk_drops() -> None:
    # The SDK's batch processors' module (from SDK 1.33; meshlite's otlp extra needs 1.40).
    logger = logging.getLogger("opentelemetry.sdk._shared_internal")
    if not any(isinstance(f, _NotSpanDrops) for f in logger.filters):
        logger.addFilter(_NotSpanDrops())


class SpanQueue(BatchSpanProcessor):
    """The SDK's batch span processor, counting the spans its full queue drops.

    While the collector is down, stalled or slower than spans come, the queue
    (``OTEL_BSP_MAX_QUEUE_SIZE``, 2,048 spans) fills up, and then each new span
    pushes the oldest one out. The SDK says so now and then, without a count; this
    counts them (:attr:`dropped`) and says how many on the ``meshlite.telemetry``
    logger, once a minute at most.
    """

    def __init__(self, exporter: SpanExporter) -> None:
        super().__init__(exporter)
        self.dropped = 0
        """Spans dropped so far because the queue was full (the oldest queued)."""
        self._queue = _sdk_queue(self)
        self._lock = fork_safe(threading.Lock())
        self._throttle = Throttle(WINDOW_SECONDS)
        _quiet_sdk_drops()

    def on_end(self, span: ReadableSpan) -> None:
        """Queue ``span`` for export (sampled spans only, as the SDK's)."""
        queue = self._queue
        if (queue is not None and len(queue) >= (queue.maxlen or 0) and span.context
                and span.context.trace_flags.sampled):
            self._count_drop(queue.maxlen or 0)
        super().on_end(span)

    def _count_drop(self, size: int) -> None:
        with self._lock:
            self.dropped += 1
            total = self.dropped
        held = self._throttle.passes("dropped")
        if held is not None:
            _log.warning(
                "telemetry: the span queue is full (%d spans; the collector is down or "
                "slower than spans come): dropped the oldest, %d since the last such "
                "message, %d in all", size, held + 1, total,
                extra={"meshlite_event": "SpansDropped", "dropped": held + 1,
                       "dropped_total": total})


class WatchedExporter(SpanExporter):
    """The OTLP exporter, saying on the ``meshlite.telemetry`` logger when the
    collector stops taking spans and when it takes them again: once each per outage
    and process, whatever the number of batches that fail meanwhile (the exporter's
    own lines say why each kind of failure happened, once a minute). The outage is
    watched by ``_outage.ExportOutage``, which the metrics exporter shares."""

    signal = "Span"

    def __init__(self, exporter: SpanExporter, collector: str) -> None:
        self.exporter = exporter
        self.collector = collector
        self.queue: SpanQueue | None = None
        """The processor exporting through it (set by it): its size and drops."""
        self.outage = ExportOutage(collector, self)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Export through the OTLP exporter; log a change between failing and not."""
        result = self.exporter.export(spans)
        queue = self.queue
        self.outage.exported(result is SpanExportResult.SUCCESS, len(spans),
                             queue.dropped if queue is not None else 0)
        return result

    def failed(self, event: ExportFailed) -> Line:
        """``SpanExportFailed``: the batch is given up, the next ones are queued."""
        queue = self.queue
        size = queue._queue.maxlen if queue is not None and queue._queue else 0
        return Line(
            "telemetry: the collector %s did not take a batch of %d spans (the "
            "exporter's lines say why), which is given up; spans are queued (%d at "
            "most, then the oldest are dropped) and sent once it takes them again",
            (event.collector, event.items, size), {"lost": event.items})

    def recovered(self, event: ExportRecovered) -> Line:
        """``SpanExportRecovered``: the spans of the batches given up and dropped."""
        lost = event.items + event.dropped
        return Line(
            "telemetry: the collector %s takes spans again after %.1f s; %d spans "
            "were lost meanwhile (batches given up, and dropped from the full queue)",
            (event.collector, event.down_seconds, lost),
            {"down_seconds": event.down_seconds, "lost": lost})

    def shutdown(self) -> None:
        """Shut the OTLP exporter down."""
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """The OTLP exporter's ``force_flush``."""
        return self.exporter.force_flush(timeout_millis)


def build_provider(settings: TelemetrySettings) -> tuple[TracerProvider, SpanQueue | None]:
    """An SDK provider for ``settings``: ``service.name`` resource (merged with
    ``OTEL_RESOURCE_ATTRIBUTES``), parent-based ratio sampling, span attribute values
    cut at :data:`DEFAULT_SPAN_ATTRIBUTE_LENGTH` by default, a batch processor
    exporting OTLP/HTTP protobuf (returned too: it counts the spans it drops), and a
    console exporter when asked.

    Raises:
        ImportError: the OTLP exporter package is missing (only when one is needed).
    """
    provider = TracerProvider(
        sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
        # Resource.create also reads OTEL_RESOURCE_ATTRIBUTES; the explicit name wins.
        resource=Resource.create({SERVICE_NAME: settings.service_name}),
        span_limits=_span_limits(),
        # meshlite registers one atexit hook for whichever provider is current; one per
        # provider would keep every replaced provider alive until exit.
        shutdown_on_exit=False,
    )
    queue = None
    if settings.traces_endpoint is not None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # Headers, timeout, compression and certificates still come from the
        # OTEL_EXPORTER_OTLP_* variables, which the exporter reads itself.
        from ._session import exporter_session

        exporter = WatchedExporter(
            OTLPSpanExporter(endpoint=settings.traces_endpoint,
                             session=exporter_session("TRACES")),
            url_shown(settings.traces_endpoint))
        quiet(OTLPSpanExporter.__module__)  # one line per failure a minute, not per batch
        queue = exporter.queue = SpanQueue(exporter)
        provider.add_span_processor(queue)
    if settings.console:
        # Printed as each span ends: the console is for watching, not for throughput.
        # sys.stdout is read now: the exporter's default is bound when the SDK imports.
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stdout)))
    return provider, queue
