"""Timings: the one recording implementation. ``run``/``arun`` count a call in flight
while it runs and record its latency (and error) when it ends, without a lock;
the histogram is counted in batches and at every read."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from _clocks import BrokenClock

from meshlite._context import CallContext
from meshlite._histogram import FOLD_AT
from meshlite.observability._metrics import Timings
from meshlite.testing import FakeClock

BOUNDS = (0.01, 0.1, 1.0)


def ctx() -> CallContext:
    return CallContext(lambda: None, (), {}, "op", "s", None)


def test_a_call_is_in_flight_while_it_runs_then_timed() -> None:
    clock = FakeClock()
    t = Timings((("service", "s"),), BOUNDS, clock.monotonic)
    seen: list[int] = []

    def ok(_: CallContext) -> str:
        seen.append(t.in_flight)
        clock.advance(0.05)
        return "done"

    def boom(_: CallContext) -> Any:
        seen.append(t.in_flight)
        clock.advance(0.5)
        raise ConnectionError("down")

    assert t.run(ok, ctx()) == "done"
    with pytest.raises(ConnectionError):
        t.run(boom, ctx())
    reading = t.read_all()
    assert seen == [1, 1]
    assert (reading.in_flight, reading.count, reading.errors) == (0, 2, {"ConnectionError": 1})
    assert reading.buckets == (0, 1, 1, 0)
    assert reading.sum == pytest.approx(0.55)


async def test_arun_records_cancellation_as_an_error() -> None:
    t = Timings((), BOUNDS)
    started = asyncio.Event()

    async def hang(_: CallContext) -> None:
        started.set()
        await asyncio.sleep(10)

    task = asyncio.ensure_future(t.arun(hang, ctx()))
    await started.wait()
    assert t.in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    reading = t.read_all()
    assert (reading.in_flight, reading.count, reading.errors) == (0, 1, {"CancelledError": 1})


def test_latencies_are_counted_in_batches_and_at_each_read() -> None:
    t = Timings((), BOUNDS)
    for _ in range(FOLD_AT - 1):
        t.run(lambda c: None, ctx())
    assert len(t.pending) == FOLD_AT - 1
    t.run(lambda c: None, ctx())
    assert t.pending == []  # the call that filled the batch counted it
    t.run(lambda c: None, ctx())
    assert t.read_all().count == FOLD_AT + 1
    assert t.pending == []


def test_a_clock_that_raises_leaves_nothing_in_flight() -> None:
    clock = BrokenClock()
    t = Timings((), BOUNDS, clock.monotonic)
    clock.armed = True
    with pytest.raises(RuntimeError, match="clock broke"):
        t.run(lambda c: None, ctx())
    assert t.in_flight == 0
    assert t.read_all().count == 0


def test_threads_lose_no_count() -> None:
    t = Timings((), BOUNDS)

    def caller() -> None:
        for _ in range(3 * FOLD_AT):
            t.run(lambda c: None, ctx())

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    reading = t.read_all()
    assert (reading.in_flight, reading.count) == (0, 4 * 3 * FOLD_AT)


def test_error_labels_of_one_series_are_bounded() -> None:
    # Exception classes made at run time (one per remote error code, say) must not
    # add a series each: past MAX_ERROR_LABELS kinds they count as OTHER_ERROR.
    from meshlite.observability._metrics import MAX_ERROR_LABELS, OTHER_ERROR

    t = Timings((("service", "s"),), BOUNDS, FakeClock().monotonic)
    kinds = [type(f"Remote{i}Error", (Exception,), {}) for i in range(MAX_ERROR_LABELS * 3)]
    for kind in kinds + kinds[:1]:
        t.error(0.001, kind())
    errors = t.read_all().errors
    assert len(errors) == MAX_ERROR_LABELS + 1
    assert errors["Remote0Error"] == 2  # a kind already kept goes on counting
    assert errors[OTHER_ERROR] == MAX_ERROR_LABELS * 2
    assert sum(errors.values()) == len(kinds) + 1  # nothing lost


def test_a_mesh_exposes_a_bounded_number_of_error_series() -> None:
    import meshlite as ml
    from meshlite.observability import render
    from meshlite.observability._metrics import MAX_ERROR_LABELS

    mesh = ml.Mesh([ml.Service("users", ["a"], pipeline=ml.Pipeline(),
                               outlier_detection=None)])

    def failing(i: int) -> Any:
        def call(backend: ml.Backend) -> Any:
            raise type(f"Remote{i}Error", (Exception,), {})("remote failure")
        return call

    for i in range(MAX_ERROR_LABELS * 2):
        with pytest.raises(Exception, match="remote failure"):
            mesh.call_sync("users", failing(i))
    lines = [line for line in render(mesh).splitlines()
             if line.startswith("meshlite_request_errors_total{")]
    assert len(lines) == MAX_ERROR_LABELS + 1
    assert 'meshlite_request_errors_total{service="users",error="(other)"} 64' in lines
