"""A collector that misbehaves (a black hole, a slow one) holds up neither the calls
nor the process: flushing often keeps one thread, not one per flush, and the process
exits within the documented bound however many exports wait on it."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest
from otlp_receiver import OtlpReceiver

import meshlite as ml
from meshlite import telemetry
from meshlite.telemetry._bounded import SHUTDOWN_TIMEOUT_MILLIS

pytestmark = pytest.mark.usefixtures("otel_isolated")


@pytest.fixture
def black_hole(stalled: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A collector that takes connections and never answers, with the exporters'
    timeout cut to 1 s so that what the test leaves stuck on it (the export threads
    abandoned by a shutdown) is over before the next test, which may count threads."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    before = set(threading.enumerate())
    yield stalled
    for thread in set(threading.enumerate()) - before:
        thread.join(15)


def flush_threads() -> int:
    return sum(t.name == "meshlite-telemetry-flush" for t in threading.enumerate())


def traced() -> ml.Pipeline:
    return ml.Pipeline(ml.Trace(name="get_user"))


def test_flushing_often_against_a_black_hole_holds_one_thread_per_handle(
        black_hole: str) -> None:
    mesh = ml.Mesh([ml.Service("users", ["http://127.0.0.1:9"])])
    handle = telemetry.configure("checkout", otlp_endpoint=black_hole)
    export = telemetry.export_metrics(mesh, otlp_endpoint=black_hole, interval=3600)
    before = flush_threads()
    try:
        for uid in range(30):  # a handler flushing after each request, say
            traced().call(lambda uid: uid, uid)
            assert handle.force_flush(timeout_millis=10) is False
            assert export.force_flush(timeout_millis=10) is False
        # A flush of each is stuck in the exporter; the others waited for it
        # instead of starting a thread each.
        assert flush_threads() - before <= 2
    finally:
        handle.shutdown(timeout_millis=100)
        export.shutdown(timeout_millis=100)


def test_a_flush_waiting_for_a_slow_one_then_sends_what_came_after() -> None:
    with OtlpReceiver(delay=0.5) as slow:
        handle = telemetry.configure("checkout", otlp_endpoint=slow.url)
        traced().call(lambda uid: uid, 1)
        assert handle.force_flush(timeout_millis=10) is False  # posting span 1
        traced().call(lambda uid: uid, 2)
        # Waits for the slow post of span 1, then posts span 2 itself.
        assert handle.force_flush(timeout_millis=30_000) is True
        assert len(slow.spans) == 2


def test_a_full_queue_drops_the_oldest_spans_and_says_how_many(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "64")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "16")
    with OtlpReceiver(delay=2.0) as slow, caplog.at_level(logging.WARNING, "meshlite"):
        handle = telemetry.configure("checkout", otlp_endpoint=slow.url)
        for uid in range(16):  # one batch: posted at once, answered 2 s later
            ml.Pipeline(ml.Trace(name=f"span-{uid}")).call(int, uid)
        deadline = time.monotonic() + 30
        while slow.arrived == 0:
            assert time.monotonic() < deadline, "the first batch was never posted"
            time.sleep(0.01)
        for uid in range(16, 200):  # meanwhile: 64 queued, then each pushes one out
            ml.Pipeline(ml.Trace(name=f"span-{uid}")).call(int, uid)
        assert handle.dropped_spans == 120
        slow.delay = 0.0
        assert handle.force_flush(timeout_millis=30_000)
        assert sorted(int(s.name[5:]) for s in slow.spans) == [*range(16), *range(136, 200)]
    said = [r for r in caplog.records if getattr(r, "meshlite_event", "") == "SpansDropped"]
    assert len(said) == 1, [r.getMessage() for r in said]  # once a minute, not per span
    assert said[0].name == "meshlite.telemetry"
    assert "the span queue is full (64 spans" in said[0].getMessage()


EXITING = textwrap.dedent("""\
    import sys
    import meshlite as ml
    from meshlite import telemetry

    traces, black_hole = sys.argv[1:]
    mesh = ml.Mesh([ml.Service("users", ["http://127.0.0.1:9"])])
    telemetry.configure("checkout", otlp_endpoint=traces)
    for _ in range(2):
        telemetry.export_metrics(mesh, otlp_endpoint=black_hole, interval=3600)
    ml.Pipeline(ml.Trace(name="get_user")).call(lambda: 1)
    print("exiting", flush=True)
    """)


@pytest.mark.timeout(60)
def test_the_process_exits_within_the_bound_with_every_export_stuck(stalled: str) -> None:
    with OtlpReceiver() as receiver:
        with subprocess.Popen([sys.executable, "-c", EXITING, receiver.url, stalled],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True) as process:
            assert process.stdout is not None
            assert process.stdout.readline() == "exiting\n"
            start = time.monotonic()
            assert process.wait(timeout=50) == 0
            took = time.monotonic() - start
        # The flush at exit of the traces and of both metrics exports run together:
        # the spans still reach the collector that answers, and the two pushes stuck
        # on the black hole hold the exit up once, not once each (was 10 s).
        assert [s.name for s in receiver.spans] == ["get_user"]
    assert took < SHUTDOWN_TIMEOUT_MILLIS / 1000 + 3  # a correctness bound, with slack
