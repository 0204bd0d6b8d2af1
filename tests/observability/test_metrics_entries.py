"""The Metrics policy records the same whichever way a call comes in (``call``,
``acall``, decorated functions) and wherever it sits: outermost, nested in another
pipeline, or inside one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from _clocks import BrokenClock
from samples import value as sample

import meshlite as ml
from meshlite.observability import Metrics
from meshlite.testing import FakeClock

TOTAL = "meshlite_operation_requests_total"
ERRORS = "meshlite_operation_request_errors_total"
IN_FLIGHT = "meshlite_operation_requests_in_flight"
DURATION = "meshlite_operation_request_duration_seconds"


def layouts(metrics: Metrics) -> dict[str, ml.Pipeline]:
    return {
        "outermost": ml.Pipeline(metrics, ml.Retry(attempts=1), service="svc"),
        "nested": ml.Pipeline(ml.Pipeline(metrics, service="svc"), service="svc"),
        "inside": ml.Pipeline(ml.Retry(attempts=1), metrics, service="svc"),
    }


@pytest.mark.parametrize("layout", ["outermost", "nested", "inside"])
@pytest.mark.parametrize("entry", ["call", "decorated"])
def test_sync_calls_are_recorded_alike(layout: str, entry: str) -> None:
    clock = FakeClock()
    metrics = Metrics(clock=clock)
    pipeline = layouts(metrics)[layout]
    seen: list[float | None] = []

    def lookup(key: int) -> int:
        seen.append(sample(metrics, IN_FLIGHT, service="svc", operation=op))
        clock.advance(0.02)
        if key < 0:
            raise KeyError(key)
        return key

    op = lookup.__qualname__
    run: Callable[[int], Any] = (
        (lambda k: pipeline.call(lookup, k)) if entry == "call" else pipeline(lookup))
    assert run(1) == 1
    assert run(2) == 2
    with pytest.raises(KeyError):
        run(-1)
    assert seen == [1, 1, 1]
    assert sample(metrics, TOTAL, service="svc", operation=op) == 3
    assert sample(metrics, ERRORS, service="svc", operation=op, error="KeyError") == 1
    assert sample(metrics, IN_FLIGHT, service="svc", operation=op) == 0
    assert sample(metrics, DURATION, "_sum", service="svc", operation=op) == pytest.approx(0.06)
    assert sample(metrics, DURATION, "_bucket", service="svc", operation=op, le="0.01") == 0
    assert sample(metrics, DURATION, "_bucket", service="svc", operation=op, le="0.025") == 3


@pytest.mark.parametrize("layout", ["outermost", "nested", "inside"])
@pytest.mark.parametrize("entry", ["acall", "decorated"])
async def test_async_calls_are_recorded_alike(layout: str, entry: str) -> None:
    clock = FakeClock()
    metrics = Metrics(clock=clock)
    pipeline = layouts(metrics)[layout]
    release = asyncio.Event()

    async def fetch(key: int) -> int:
        clock.advance(0.2)
        await release.wait()
        return key

    op = fetch.__qualname__
    run: Callable[[int], Any] = (
        (lambda k: pipeline.acall(fetch, k)) if entry == "acall" else pipeline(fetch))
    assert asyncio.iscoroutinefunction(run) or entry == "acall"
    task = asyncio.ensure_future(run(7))
    await asyncio.sleep(0)
    assert sample(metrics, IN_FLIGHT, service="svc", operation=op) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    assert await run(8) == 8
    assert sample(metrics, TOTAL, service="svc", operation=op) == 2
    assert sample(metrics, ERRORS, service="svc", operation=op, error="CancelledError") == 1
    assert sample(metrics, IN_FLIGHT, service="svc", operation=op) == 0
    assert sample(metrics, DURATION, "_sum", service="svc", operation=op) == pytest.approx(0.4)


def test_an_outermost_metrics_policy_is_a_handler_like_any_policy() -> None:
    metrics = Metrics()
    pipeline = ml.Pipeline(metrics, ml.Retry(attempts=2))
    # The pipeline never replaces its own entries on the instance.
    assert not {"call", "acall"} & set(vars(pipeline))
    calls: list[ml.CallContext | None] = []

    def probe() -> None:
        calls.append(ml.current_context())

    pipeline.call(probe)
    assert calls[0] is not None
    assert calls[0].operation == probe.__qualname__
    # One call recorded, not one per attempt.
    assert sample(metrics, TOTAL, service="", operation=probe.__qualname__) == 1
    decorated = pipeline(probe)
    assert decorated.pipeline is pipeline  # type: ignore[attr-defined]
    assert decorated.__wrapped__ is probe  # type: ignore[attr-defined]


def test_a_metrics_pipeline_with_a_policy_that_cannot_run_sync_says_so() -> None:
    pipeline = ml.Pipeline(Metrics(), ml.Hedge(delay=0.01))
    with pytest.raises(ml.ConfigError):
        pipeline.call(lambda: 1)

    def sync_fn() -> int:
        return 1

    with pytest.raises(ml.ConfigError):
        pipeline(sync_fn)


@pytest.mark.parametrize("layout", ["outermost", "inside"])
async def test_a_clock_that_raises_when_a_call_starts_leaves_nothing_in_flight(
        layout: str) -> None:
    clock = BrokenClock()
    metrics = Metrics(clock=clock)
    pipeline = layouts(metrics)[layout]

    def work() -> int:
        return 1

    async def awork() -> int:
        return 2

    for run in (lambda: pipeline.call(work), pipeline(work)):
        clock.armed = True
        with pytest.raises(RuntimeError, match="clock broke"):
            run()
    for arun in (lambda: pipeline.acall(awork), pipeline(awork)):
        clock.armed = True
        with pytest.raises(RuntimeError, match="clock broke"):
            await arun()
    assert ml.current_context() is None
    for op in (work.__qualname__, awork.__qualname__):
        assert sample(metrics, IN_FLIGHT, service="svc", operation=op) == 0
        assert sample(metrics, TOTAL, service="svc", operation=op) == 0
    assert pipeline.call(work) == 1
