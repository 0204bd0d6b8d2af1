"""A collector that misbehaves (a black hole, a slow one) holds up neither the calls
nor the process: flushing often keeps one thread, not one per flush."""

from __future__ import annotations

import threading

import pytest
from otlp_receiver import OtlpReceiver

import meshlite as ml
from meshlite import telemetry

pytestmark = pytest.mark.usefixtures("otel_isolated")


def flush_threads() -> int:
    return sum(t.name == "meshlite-telemetry-flush" for t in threading.enumerate())


def traced() -> ml.Pipeline:
    return ml.Pipeline(ml.Trace(name="get_user"))


def test_flushing_often_against_a_black_hole_holds_one_thread_per_handle(
        stalled: str) -> None:
    mesh = ml.Mesh([ml.Service("users", ["http://127.0.0.1:9"])])
    handle = telemetry.configure("checkout", otlp_endpoint=stalled)
    export = telemetry.export_metrics(mesh, otlp_endpoint=stalled, interval=3600)
    before = flush_threads()
    try:
        for uid in range(30):  # a handler flushing after each request, say
            traced().call(lambda uid: uid, uid)
            assert handle.force_flush(timeout_millis=10) is False
            assert export.force_flush(timeout_millis=10) is False
        # The first flush of each is stuck in the exporter (10 s per attempt); the
        # others waited for it instead of starting a thread each.
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
