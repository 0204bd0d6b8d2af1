"""What an operator reads during an outage (docs/logging.md): each line says what
happened and what meshlite does about it, and none says more than is true. Real
backends on loopback; the records are the ones the ``meshlite`` loggers write."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _logs import meshlite_records
from _logs import of_event as of

import meshlite as ml
from meshlite.testing import FakeBackend

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    """Every record of the ``meshlite`` loggers at INFO and above, while the test runs."""
    with meshlite_records() as found:
        yield found


async def until(check: Callable[[], object], what: str, poke: Callable[[], object],
                seconds: float = 20.0) -> None:
    """Wait for ``check()`` to be true, calling ``poke`` (a request through the mesh)
    between looks: an ejection that ran out is noticed by the next call."""
    async with asyncio.timeout(seconds):
        while not check():
            result = poke()
            if asyncio.iscoroutine(result):
                await result
            await asyncio.sleep(0.02)
    assert check(), what


async def test_an_ejection_ending_on_a_backend_that_fails_its_health_check(
        records: list[logging.LogRecord]) -> None:
    """The ejection of a dead backend runs out while its health check still fails (as
    outlier detection's of a backend killed under traffic does): the line must not say
    it "returned to rotation" (it gets no traffic) but that it stays out until the
    check passes. Ejected here by hand, after the check failed, for a known order."""
    async with FakeBackend() as up, FakeBackend() as down:
        address = down.url
        await down.stop()
        service = ml.Service(
            "users", backends=[up.url, address], balancer="round_robin",
            pipeline=ml.Pipeline(),
            health_check=ml.HttpHealthCheck(path="/healthz", interval=0.05, timeout=1.0,
                                            unhealthy_threshold=1, healthy_threshold=1),
            outlier_detection=None)
        async with ml.Mesh([service]) as mesh:
            users = mesh.http("users")

            async def call() -> None:
                with contextlib.suppress(Exception):  # the dead backend's attempts fail
                    await users.get("/work")

            await until(lambda: of(records, "HealthCheckFailed"), "the check fails", call)
            mesh.service("users").eject(address, seconds=0.2)
            await until(lambda: of(records, "BackendReturned"), "the ejection ran out", call)
            (returned,) = of(records, "BackendReturned")
            message = returned.getMessage()
            assert "returned to rotation" not in message, message
            assert "stays out of rotation until it passes its health check" in message
            assert (returned.backend, returned.reason, returned.healthy) == (  # type: ignore[attr-defined]
                address, "expired", False)

            await down.start()  # the same port: the backend comes back
            await until(lambda: of(records, "HealthCheckRecovered"), "the check passes", call)
            await users.aclose()
    assert [r.getMessage() for r in of(records, "HealthCheckRecovered")] == [
        f"service 'users': backend {address} passes its health check again"]


def test_a_collector_down_then_back_is_said_once_each_on_meshlite_telemetry(
        otel_isolated: None, monkeypatch: pytest.MonkeyPatch,
        records: list[logging.LogRecord]) -> None:
    """The collector is down for several batches, then answers: meshlite says once
    that spans are not taken (and what becomes of them), and once that they are
    again; before, only the exporter's own lines spoke, and no line said the end."""
    from _system import free_port
    from otlp_receiver import OtlpReceiver

    from meshlite import telemetry

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")  # a refused batch gives up fast
    port = free_port()  # nothing listens yet: the collector is down
    collector = f"http://127.0.0.1:{port}/v1/traces"
    handle = telemetry.configure("checkout", otlp_endpoint=f"http://127.0.0.1:{port}")
    try:
        for n in range(3):  # three batches, each given up
            ml.Pipeline(ml.Trace(name=f"lost-{n}")).call(int, n)
            handle.force_flush(timeout_millis=30_000)
        failed = of(records, "SpanExportFailed")
        assert len(failed) == 1, [r.getMessage() for r in failed]
        assert failed[0].name == "meshlite.telemetry"
        assert failed[0].levelno == logging.WARNING
        assert failed[0].collector == collector  # type: ignore[attr-defined]
        assert failed[0].getMessage().startswith(f"telemetry: the collector {collector} did "
                                                 "not take a batch of 1 spans")
        assert not of(records, "SpanExportRecovered")
        with OtlpReceiver(port=port) as receiver:
            ml.Pipeline(ml.Trace(name="arrives")).call(int, 1)
            assert handle.force_flush(timeout_millis=30_000)
            assert [s.name for s in receiver.spans] == ["arrives"]
            ml.Pipeline(ml.Trace(name="arrives too")).call(int, 2)
            assert handle.force_flush(timeout_millis=30_000)
            handle.shutdown(timeout_millis=5_000)
    finally:
        handle.shutdown(timeout_millis=100)
    (back,) = of(records, "SpanExportRecovered")
    assert back.levelno == logging.INFO
    assert (back.collector, back.lost) == (collector, 3)  # type: ignore[attr-defined]
    assert f"telemetry: the collector {collector} takes spans again after " in back.getMessage()
    assert len(of(records, "SpanExportFailed")) == 1


def test_a_full_span_queue_is_said_by_meshlite_alone(
        otel_isolated: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK logs "Queue full, dropping Span." as spans are dropped (a filter of
    repeats its only bound); meshlite's ``SpansDropped`` line says it with the count,
    so the SDK's is left out. Other records of the SDK's logger still pass."""
    from _system import wait_for
    from otlp_receiver import OtlpReceiver

    from meshlite import telemetry

    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "8")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4")
    sdk = logging.getLogger("opentelemetry.sdk._shared_internal")
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with OtlpReceiver(delay=1.0) as slow:
            handle = telemetry.configure("checkout", otlp_endpoint=slow.url)
            for n in range(4):  # one batch: posted, answered 1 s later
                ml.Pipeline(ml.Trace(name=f"span-{n}")).call(int, n)
            wait_for(lambda: slow.arrived, 30, "the first batch is posted", step=0.01)
            for n in range(4, 40):  # meanwhile the queue of 8 fills, then drops
                ml.Pipeline(ml.Trace(name=f"span-{n}")).call(int, n)
                # a line in between, as a busy process writes: the SDK's duplicate
                # filter then lets its next "Queue full" through
                sdk.warning("something else %d", n)
            assert handle.dropped_spans > 0
            slow.delay = 0.0
            handle.shutdown(timeout_millis=10_000)
    finally:
        root.removeHandler(handler)
    said = [r.getMessage() for r in seen if r.name == "meshlite.telemetry"]
    assert len(said) == 1, said
    assert "the span queue is full (8 spans" in said[0]
    sdk_lines = [r.getMessage() for r in seen if r.name == sdk.name]
    assert not [m for m in sdk_lines if m.startswith("Queue full")], sdk_lines
    assert "something else 4" in sdk_lines  # the logger's other lines pass


async def test_a_rejected_config_put_back_as_it_was_is_said_to_be_valid_again(
        tmp_path: Path, records: list[logging.LogRecord]) -> None:
    """A bad save is rejected ("the previous config keeps running"); saving the file as
    it was changes nothing, so no ``ConfigReloaded`` is emitted: one line still says
    the file is valid again, or the rejection would stay the last word on it."""
    async with FakeBackend() as backend:
        good = textwrap.dedent(f"""\
            services:
              users: {{backends: ["{backend.url}"]}}
            hot_reload: {{enabled: true, step_ms: 10}}
            """)
        path = tmp_path / "mesh.yaml"
        path.write_text(good)
        async with ml.Mesh.from_config(path) as mesh:
            path.write_text("services:\n  users: {backends: [oops\n")
            await until(lambda: of(records, "ConfigReloadFailed"), "the bad save is rejected",
                        lambda: None)
            path.write_text(good)
            await until(lambda: of(records, "ConfigValidAgain"), "the good save is said",
                        lambda: None)
            assert mesh.config_version == 0
    (again,) = of(records, "ConfigValidAgain")
    assert again.name == "meshlite.config"
    assert again.levelno == logging.INFO
    assert (again.path, again.pid, again.version) == (  # type: ignore[attr-defined]
        str(path), os.getpid(), 0)
    assert again.getMessage() == (
        f"config {path} accepted by pid {os.getpid()}: valid again, and the same as the "
        "config running (version 0), which keeps running unchanged")
    assert not of(records, "ConfigReloaded")
