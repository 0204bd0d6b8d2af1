"""A collector that goes down and comes back, said once at each end on the
``meshlite.telemetry`` logger, for spans (``SpanExportFailed`` /
``SpanExportRecovered``) and for pushed metrics (``MetricExportFailed`` /
``MetricExportRecovered``) alike: one mechanism (``telemetry._outage``). The
collector is a process of its own, killed and started again on its port, as a real
one that crashes and restarts (docs/logging.md)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from _logs import meshlite_records
from _logs import of_event as of
from _system import free_port, wait_for
from otlp_receiver import CollectorProcess

import meshlite as ml
from meshlite import telemetry
from meshlite.telemetry._outage import ExportFailed, ExportOutage, ExportRecovered, Line

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("otel_isolated")]

USERS = {"meshlite.service": "users"}


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    """Every record of the ``meshlite`` loggers at INFO and above, while the test runs."""
    with meshlite_records() as found:
        yield found


def calls_pushed(collector: CollectorProcess) -> list[float]:
    """The ``meshlite.calls`` of service users in each push the collector took."""
    return [value for export in collector.exports for metric, value, attributes
            in export["points"] if metric == "meshlite.calls" and attributes == USERS]


def test_metrics_pushed_to_a_collector_that_crashes_and_restarts(
        monkeypatch: pytest.MonkeyPatch, records: list[logging.LogRecord]) -> None:
    """Before, the metrics exporter had no such lines: only the exporter's own (once a
    minute per kind), and nothing when the collector took pushes again."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")  # a refused push gives up fast
    mesh = ml.Mesh([ml.Service("users", ["127.0.0.1:80"])])

    def call() -> None:
        mesh.call_sync("users", lambda backend: backend.address)

    with CollectorProcess(free_port()) as collector:
        endpoint = collector.url + "/v1/metrics"
        with telemetry.export_metrics(mesh, otlp_endpoint=collector.url, interval=3600,
                                      service_name="checkout") as export:
            call()
            assert export.force_flush(timeout_millis=30_000)
            wait_for(lambda: calls_pushed(collector), 30, "the first push arrived", step=0.01)
            collector.kill()  # its connection, kept alive by the exporter, closes too
            for _ in range(3):  # three pushes, each given up
                call()
                export.force_flush(timeout_millis=30_000)
            failed = of(records, "MetricExportFailed")
            assert len(failed) == 1, [r.getMessage() for r in failed]
            assert (failed[0].name, failed[0].levelno) == ("meshlite.telemetry",
                                                           logging.WARNING)
            assert failed[0].collector == endpoint  # type: ignore[attr-defined]
            assert failed[0].points > 0  # type: ignore[attr-defined]
            assert failed[0].getMessage().startswith(
                f"telemetry: the collector {endpoint} did not take a push of ")
            assert failed[0].getMessage().endswith(
                "so the first push it takes carries their totals, and only the gauges' "
                "readings meanwhile are lost")
            assert not of(records, "MetricExportRecovered")

            collector.start()  # the same port: the collector is back
            call()
            assert export.force_flush(timeout_millis=30_000)
            wait_for(lambda: len(calls_pushed(collector)) == 2, 30, "a push arrived again",
                     step=0.01)
            call()
            assert export.force_flush(timeout_millis=30_000)  # and the next: no new line
            wait_for(lambda: len(calls_pushed(collector)) == 3, 30, "the next push arrived",
                     step=0.01)
    # Cumulative: the push after the outage carried every call, none was lost (the
    # last push is the shutdown's).
    assert calls_pushed(collector) == [1, 5, 6, 6]
    (back,) = of(records, "MetricExportRecovered")
    assert (back.name, back.levelno) == ("meshlite.telemetry", logging.INFO)
    assert (back.collector, back.pushes) == (endpoint, 3)  # type: ignore[attr-defined]
    assert back.down_seconds > 0  # type: ignore[attr-defined]
    assert back.getMessage().startswith(f"telemetry: the collector {endpoint} takes "
                                        "metrics again after ")
    assert "; 3 pushes were given up meanwhile (this one carries " in back.getMessage()
    assert len(of(records, "MetricExportFailed")) == 1


def test_spans_sent_to_a_collector_that_crashes_and_restarts(
        monkeypatch: pytest.MonkeyPatch, records: list[logging.LogRecord]) -> None:
    """The span exporter's lines for a collector that was up, went down and came back
    (the other test of them starts with nothing listening)."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")  # a refused batch gives up fast

    def traced(name: str) -> None:
        ml.Pipeline(ml.Trace(name=name)).call(int, 1)

    def spans(collector: CollectorProcess) -> list[str]:
        return [name for export in collector.exports for name in export["spans"]]

    with CollectorProcess(free_port()) as collector:
        endpoint = collector.url + "/v1/traces"
        handle = telemetry.configure("checkout", otlp_endpoint=collector.url)
        traced("before")
        assert handle.force_flush(timeout_millis=30_000)
        wait_for(lambda: spans(collector), 30, "the first batch arrived", step=0.01)
        collector.kill()
        for n in range(3):  # three batches of one span, each given up
            traced(f"lost-{n}")
            handle.force_flush(timeout_millis=30_000)
        (failed,) = of(records, "SpanExportFailed")
        assert (failed.collector, failed.lost) == (endpoint, 1)  # type: ignore[attr-defined]
        collector.start()
        traced("after")
        assert handle.force_flush(timeout_millis=30_000)
        wait_for(lambda: len(spans(collector)) == 2, 30, "a batch arrived again", step=0.01)
        handle.shutdown(timeout_millis=5_000)
    assert spans(collector) == ["before", "after"]
    (back,) = of(records, "SpanExportRecovered")
    assert (back.collector, back.lost) == (endpoint, 3)  # type: ignore[attr-defined]
    assert len(of(records, "SpanExportFailed")) == 1


class Words:
    signal = "Test"

    def failed(self, event: ExportFailed) -> Line:
        return Line("down: %s", (event.items,), {"items": event.items})

    def recovered(self, event: ExportRecovered) -> Line:
        return Line("up after %s", (event.down_seconds,), {"down_seconds": event.down_seconds})


def test_an_outage_is_said_at_its_two_ends_with_what_it_lost(
        records: list[logging.LogRecord]) -> None:
    now = [100.0]
    outage = ExportOutage("http://collector:4318/v1/x", Words(), clock=lambda: now[0])
    assert outage.exported(True, 5) is None  # up: nothing to say
    began = outage.exported(False, 4, dropped=10)
    assert began == ExportFailed(collector="http://collector:4318/v1/x", items=4)
    now[0] = 107.5
    assert outage.exported(False, 6, dropped=12) is None  # still down: said once
    assert outage.down
    ended = outage.exported(True, 1, dropped=13)
    assert ended == ExportRecovered(collector="http://collector:4318/v1/x",
                                    down_seconds=7.5, exports=2, items=10, dropped=3)
    assert not outage.down
    assert outage.exported(True, 1) is None
    said: list[tuple[Any, ...]] = [
        (r.levelno, r.getMessage(), r.meshlite_event, r.collector)  # type: ignore[attr-defined]
        for r in records]
    assert said == [
        (logging.WARNING, "down: 4", "TestExportFailed", "http://collector:4318/v1/x"),
        (logging.INFO, "up after 7.5", "TestExportRecovered", "http://collector:4318/v1/x")]
    # A second outage is said again.
    assert isinstance(outage.exported(False, 1), ExportFailed)
