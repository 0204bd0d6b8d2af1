"""OTLP export from a forked child (a pre-fork server's worker, a Celery prefork
pool): the child exports on a connection of its own. It exported on its parent's
kept-alive connection to the collector (the exporter's ``requests`` pool was
copied), two processes' requests interleaving on one socket."""

from __future__ import annotations

import http.server
import os
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from _forked import in_child, serving

import meshlite as ml
from meshlite import telemetry

pytestmark = [pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork: POSIX only"),
              pytest.mark.usefixtures("otel_isolated")]
pytest.importorskip("opentelemetry.exporter.otlp.proto.http")


class _Collector(http.server.BaseHTTPRequestHandler):
    """Accepts every OTLP export on kept-alive connections, noting each one's port."""

    protocol_version = "HTTP/1.1"
    ports: ClassVar[list[int]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        _Collector.ports.append(self.client_address[1])
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[str]:
    _Collector.ports = []
    with serving(_Collector) as url:
        yield url


def test_a_forked_child_exports_on_its_own_connection(collector: str) -> None:
    handle = telemetry.configure("checkout", otlp_endpoint=collector)
    mesh = ml.Mesh([ml.Service("users", [collector])])  # any backend: a span is a span

    def one_span() -> bool:
        mesh.call_sync("users", lambda backend: 1)
        return handle.force_flush(5_000)

    assert one_span()
    parents = list(_Collector.ports)
    assert len(parents) == 1
    assert in_child(lambda: int(one_span())) == 1
    assert len(_Collector.ports) == 2
    assert _Collector.ports[1] != parents[0]  # not the parent's connection
    assert one_span()
    assert _Collector.ports[2] == parents[0]  # the parent's goes on
