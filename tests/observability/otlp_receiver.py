"""A loopback OTLP/HTTP receiver for tests: what Jaeger's port 4318 (or a Collector's)
does, minus the storage. Decodes each ``POST /v1/traces`` and ``POST /v1/metrics``
(protobuf) into plain records."""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

PROTOBUF = "application/x-protobuf"
_PATHS = ("/v1/traces", "/v1/metrics")


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(v) for v in value.array_value.values)
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return None if kind is None else getattr(value, kind)


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs if isinstance(kv, KeyValue)}


@dataclass(frozen=True)
class ReceivedEvent:
    name: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as received; ids are lower-case hex ("" for no parent)."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: str  # "INTERNAL", "SERVER", "CLIENT"...
    attributes: dict[str, Any]
    events: list[ReceivedEvent]
    status: str  # "UNSET", "OK", "ERROR"
    resource: dict[str, Any]
    scope: str


@dataclass(frozen=True)
class ReceivedPoint:
    """One data point of a metric as received: a sum, a gauge or a histogram (its
    ``value`` is then the sum, ``count`` / ``bounds`` / ``bucket_counts`` the rest)."""

    metric: str
    kind: str  # "sum", "gauge" or "histogram"
    monotonic: bool
    cumulative: bool
    attributes: dict[str, Any]
    value: float
    resource: dict[str, Any]
    scope: str
    unit: str = ""
    count: int = 0
    bounds: tuple[float, ...] = ()
    bucket_counts: tuple[int, ...] = ()
    start: int = 0  # start_time_unix_nano
    time: int = 0  # time_unix_nano


@dataclass
class ReceivedExport:
    """One POST: its headers and the spans or metric points it carried."""

    path: str
    content_type: str
    spans: list[ReceivedSpan] = field(default_factory=list)
    points: list[ReceivedPoint] = field(default_factory=list)


def _decode(body: bytes) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(ReceivedSpan(
                    name=span.name,
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex(),
                    kind=span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
                    attributes=_attributes(span.attributes),
                    events=[ReceivedEvent(e.name, _attributes(e.attributes))
                            for e in span.events],
                    status=span.status.StatusCode.Name(span.status.code)
                    .removeprefix("STATUS_CODE_"),
                    resource=resource,
                    scope=scope_spans.scope.name,
                ))
    return spans


def _decode_metrics(body: bytes) -> list[ReceivedPoint]:
    request = ExportMetricsServiceRequest()
    request.ParseFromString(body)
    points = []
    for resource_metrics in request.resource_metrics:
        resource = _attributes(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                if kind not in ("sum", "gauge", "histogram"):
                    continue
                data = getattr(metric, kind)
                monotonic = kind == "sum" and data.is_monotonic
                cumulative = kind in ("sum", "histogram") and data.aggregation_temporality == 2
                for p in data.data_points:
                    if kind == "histogram":
                        points.append(ReceivedPoint(
                            metric.name, kind, False, cumulative, _attributes(p.attributes),
                            p.sum, resource, scope_metrics.scope.name, metric.unit, p.count,
                            tuple(p.explicit_bounds), tuple(p.bucket_counts),
                            p.start_time_unix_nano, p.time_unix_nano))
                        continue
                    value = p.as_int if p.WhichOneof("value") == "as_int" else p.as_double
                    points.append(ReceivedPoint(
                        metric.name, kind, monotonic, cumulative, _attributes(p.attributes),
                        value, resource, scope_metrics.scope.name, metric.unit,
                        start=p.start_time_unix_nano, time=p.time_unix_nano))
    return points


class _Server(ThreadingHTTPServer):
    """The receiver's server, which keeps every connection it accepted until its
    handler ends, so that stopping can close them (``close``)."""

    daemon_threads = False  # server_close() joins each connection's thread
    block_on_close = True

    def __init__(self, address: tuple[str, int],
                 handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            if self.stopping.is_set():  # accepted as the receiver stops: not served
                self.shutdown_request(request)
                return
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not self.stopping.is_set():  # a connection cut by close() is no error
            super().handle_error(request, client_address)

    def close(self) -> None:
        """Stop as a collector that goes down does: no more connections (refused),
        and each open one, kept alive by the exporter's pool, closed under whatever
        it was doing (an exporter reusing it finds it closed, or is reset), without
        an answer; then wait for the connections' threads."""
        self.stopping.set()
        self.shutdown()  # serve_forever() returns: nothing is accepted any more
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            # shutdown() and not close(): it wakes the thread reading it, and holds
            # even where a forked child shares the socket (OSError: the client closed
            # it meanwhile).
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        # A listening socket shut down stops listening even while a forked child holds
        # a copy (close() alone would leave the port bound, taking connections nobody
        # accepts).
        with contextlib.suppress(OSError):
            self.socket.shutdown(socket.SHUT_RDWR)
        self.server_close()  # closes the listener, joins the connections' threads


class OtlpReceiver:
    """``with OtlpReceiver() as receiver:`` serves on ``receiver.url`` (127.0.0.1, a
    free port) in a thread. ``exports`` lists every accepted POST, ``rejected``
    every request refused (wrong path or content type). ``delay`` seconds pass
    before each answer (a slow collector); ``arrived`` counts the POSTs read so far
    (answered or not yet), ``arrivals`` has their ``time.monotonic()``. The first
    POSTs are answered from ``refusals`` (status and headers, such as ``(503,
    {"Retry-After": "1"})``) while it lasts. ``port`` 0 picks a free one.
    ``on_export`` is called with each accepted POST before it is answered.

    Leaving the block stops it as a collector that goes down: new connections are
    refused, and the ones open (an exporter keeps its connection alive) are closed,
    a POST being read or waiting out ``delay`` then getting no answer and not
    counted in ``exports``; a receiver started again on the same ``port`` gets the
    next POSTs."""

    def __init__(self, delay: float = 0.0, port: int = 0,
                 refusals: list[tuple[int, dict[str, str]]] | None = None,
                 on_export: Callable[[ReceivedExport], None] | None = None) -> None:
        self.delay = delay
        self.on_export = on_export
        self.port = port
        self.refusals = list(refusals or ())
        self.arrived = 0
        self.arrivals: list[float] = []
        self.exports: list[ReceivedExport] = []
        self.rejected: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL, as ``otlp_endpoint`` expects (no ``/v1/traces``)."""
        assert self._server is not None, "enter the receiver first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return [s for e in self.exports for s in e.spans]

    @property
    def points(self) -> list[ReceivedPoint]:
        """Every metric data point received, oldest export first."""
        with self._lock:
            return [p for e in self.exports for p in e.points]

    def latest(self, metric: str, **attributes: Any) -> ReceivedPoint:
        """The last point received of ``metric`` whose attributes include ``attributes``
        (fails when there is none)."""
        found = [p for p in self.points if p.metric == metric
                 and all(p.attributes.get(k) == v for k, v in attributes.items())]
        assert found, f"no point of {metric!r} with {attributes!r}"
        return found[-1]

    def span(self, name: str) -> ReceivedSpan:
        """The one span called ``name`` (fails when there are none or several)."""
        found = [s for s in self.spans if s.name == name]
        assert len(found) == 1, f"{len(found)} spans named {name!r} in {self.spans!r}"
        return found[0]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.arrived += 1
                    receiver.arrivals.append(time.monotonic())
                    refusal = receiver.refusals.pop(0) if receiver.refusals else None
                # The delay ends early when the receiver stops, which then answers nothing.
                if receiver._stopping.wait(receiver.delay):
                    self.close_connection = True
                    return
                if refusal is not None:
                    status, headers = refusal
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                content_type = self.headers.get("Content-Type", "")
                if self.path not in _PATHS or content_type != PROTOBUF:
                    with receiver._lock:
                        receiver.rejected.append((self.path, content_type, len(body)))
                    self._answer(404 if self.path not in _PATHS else 415, b"", "text/plain")
                    return
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if self.path == "/v1/metrics":
                    export = ReceivedExport(self.path, content_type,
                                            points=_decode_metrics(body))
                    answer = ExportMetricsServiceResponse().SerializeToString()
                else:
                    export = ReceivedExport(self.path, content_type, _decode(body))
                    answer = ExportTraceServiceResponse().SerializeToString()
                with receiver._lock:
                    if receiver._stopping.is_set():
                        self.close_connection = True
                        return
                    receiver.exports.append(export)
                if receiver.on_export is not None:
                    receiver.on_export(export)
                self._answer(200, answer, PROTOBUF)

        return Handler

    @property
    def _stopping(self) -> threading.Event:
        assert self._server is not None
        return self._server.stopping

    def __enter__(self) -> Self:
        self._server = _Server(("127.0.0.1", self.port), self._handler())
        # A short poll keeps shutdown() quick (the default waits up to 0.5 s).
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,),
                                        name="otlp-receiver", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._server is not None
        assert self._thread is not None
        self._server.close()
        self._thread.join()


def took(action: Callable[[], object]) -> tuple[object, float]:
    """``action()``'s result and the seconds it took."""
    start = time.monotonic()
    result = action()
    return result, time.monotonic() - start


class CollectorProcess:
    """An :class:`OtlpReceiver` in a process of its own on ``port``, for a collector
    that goes down as a real one does: ``with CollectorProcess(port) as collector:``
    starts it, :meth:`kill` ends it with SIGKILL (the kernel closes its sockets,
    connections kept alive included), :meth:`start` runs a new one on the same port.
    ``exports`` lists each accepted POST (of every process run so far) as a dict:
    ``path``, ``spans`` (span names), ``points`` (``[metric, value, attributes]``)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.exports: list[dict[str, Any]] = []
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL, as ``otlp_endpoint`` expects."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Run the collector (it is listening when this returns)."""
        assert self._process is None, "already running"
        process = subprocess.Popen([sys.executable, str(Path(__file__)), str(self.port)],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None
        ready = process.stdout.readline()
        assert ready == "listening\n", f"the collector did not start: {ready!r}"
        self._process = process
        self._reader = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._reader.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.exports.append(json.loads(line))

    def kill(self) -> None:
        """End the collector as a crash does (SIGKILL), and wait for it."""
        process, reader = self._process, self._reader
        assert process is not None, "not running"
        assert reader is not None
        process.kill()
        process.wait()
        reader.join()  # every line it wrote has been read
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()
        self._process = self._reader = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self.kill()


def _serve(port: int) -> None:
    """``python otlp_receiver.py PORT``: what :class:`CollectorProcess` runs. Says
    "listening", then one JSON line per accepted POST (before answering it), until
    its standard input closes."""

    lock = threading.Lock()  # one line per POST, whichever threads answer them

    def said(export: ReceivedExport) -> None:
        line = json.dumps({
            "path": export.path, "spans": [s.name for s in export.spans],
            "points": [[p.metric, p.value, p.attributes] for p in export.points]})
        with lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    with OtlpReceiver(port=port, on_export=said):
        print("listening", flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
