"""Hedges used as a team uses them: each hedge starts from the call as the Hedge saw
it, not from what the primary attempt's inner policies (a per-attempt ``Timeout``, a
``Trace``) made of the context meanwhile, checked on the real HTTP wire too."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import meshlite as ml
from meshlite.policies._hedge import HedgeStarted
from meshlite.testing import FakeBackend, FakeClock


async def _until(predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10.0  # a bound, not an expectation
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


def _hedges_counted(mesh: ml.Mesh) -> float:
    """``meshlite_hedges_total`` of ``mesh``, every reason added up."""
    assert mesh.metrics is not None
    return sum(sample.value for family in mesh.metrics.collect()
               if family.name == "meshlite_hedges_total" for sample in family.samples)


def _hedge_index() -> int:
    ctx = ml.current_context()
    assert ctx is not None
    return ctx.hedge


async def test_a_hedge_gets_its_own_per_attempt_timeout_not_what_the_primary_left() -> None:
    # Timeout inside Hedge: each attempt's own budget. The primary's Timeout sets the
    # deadline on the call's context while it runs; a hedge forked from it then had
    # the primary's deadline as an "outer" one, so it got 4 s of its 5 s, and its
    # error blamed an outer deadline the call does not have.
    clock = FakeClock()
    seen: dict[int, float | None] = {}

    @ml.Pipeline(ml.Hedge(1.0, clock=clock, budget=None), ml.Timeout(5.0, clock=clock))
    async def call() -> None:
        seen[_hedge_index()] = ml.remaining()
        await asyncio.Event().wait()  # never answers: each attempt times out

    with pytest.raises(ml.TimeoutExceeded) as info:
        await call()
    assert seen == {0: 5.0, 1: 5.0}
    note = "\n".join(getattr(info.value, "__notes__", ()))
    assert "outer deadline" not in str(info.value) + note, note
    assert "timed out after 5.0 s" in str(info.value)


async def test_a_hedge_under_an_outer_timeout_still_gets_only_what_is_left_of_it() -> None:
    clock = FakeClock()
    seen: dict[int, float | None] = {}

    @ml.Pipeline(ml.Timeout(3.0, clock=clock), ml.Hedge(1.0, clock=clock, budget=None),
                 ml.Timeout(5.0, clock=clock))
    async def call() -> None:
        seen[_hedge_index()] = ml.remaining()
        await asyncio.Event().wait()

    with pytest.raises(ml.TimeoutExceeded, match=r"timed out after 3\.0 s"):
        await call()
    assert seen == {0: 3.0, 1: 2.0}  # the outer 3 s, started a second before the hedge


async def test_the_hedge_request_carries_its_own_attempt_budget_on_the_wire() -> None:
    # The deadline a hedge forwards (x-meshlite-deadline) is its own attempt's, not
    # what was left of the primary's. The clock moves only when told, so the budgets
    # are exact: 10 s each, the hedge sent one (fake) second after the primary.
    clock = FakeClock(autojump_threshold=math.inf)
    async with FakeBackend(hang=True) as one, FakeBackend(hang=True) as two:
        pipeline = ml.Pipeline(ml.Hedge(1.0, clock=clock, budget=None),
                               ml.Timeout(10.0, clock=clock))
        service = ml.Service("users", [one.url, two.url], pipeline=pipeline,
                             outlier_detection=None)
        async with ml.Mesh([service]) as mesh:
            answer = asyncio.ensure_future(mesh.http("users").get("/users/1"))
            await _until(lambda: bool(one.requests or two.requests))  # the primary's
            slow, fast = (one, two) if one.requests else (two, one)
            fast.set(hang=False)
            clock.advance(1.0)  # the hedge is due; it goes to the other backend
            response = await answer
    assert response.json()["backend"] == fast.url
    assert [r.headers["x-meshlite-deadline"] for r in slow.requests] == ["10000"]
    assert [r.headers["x-meshlite-deadline"] for r in fast.requests] == ["10000"]


async def test_a_hedges_retries_are_recorded_on_its_own_span_not_the_primarys() -> None:
    # Retry and a per-attempt Trace inside the Hedge: the primary's Trace span was the
    # context's span when the hedge forked, so the hedge's Retry wrote its retry
    # events and attempt count on the primary's span.
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    clock = FakeClock()
    failed = asyncio.Event()

    @ml.Pipeline(
        ml.Hedge(1.0, clock=clock, budget=None),
        ml.Retry(attempts=2, backoff=ml.backoff.constant(0.0), budget=None, clock=clock),
        ml.Trace(name="try", tracer_provider=provider),
    )
    async def call() -> str:
        if _hedge_index() == 0:
            await asyncio.Event().wait()  # the primary hangs, inside its "try" span
        if not failed.is_set():  # the hedge's first try fails, its retry answers
            failed.set()
            raise ConnectionError("hedge's first try")
        return "hedge"

    assert await call() == "hedge"
    tries = spans.get_finished_spans()
    assert len(tries) == 3  # the primary's try (cancelled), the hedge's two
    retried = [s.name for s in tries if any(e.name == "meshlite.retry" for e in s.events)]
    assert retried == []  # no "try" span is the Retry's call: it has none to write on


async def test_no_hedge_starts_once_the_calls_deadline_has_passed() -> None:
    # The caller's time ran out while its loop was held (a blocking call before the
    # mesh call): routing refuses the primary at once, sending nothing. That failure
    # started a hedge, which could only fail the same way, yet counted as a hedge
    # (HedgeStarted, meshlite_hedges_total) and took a retry budget token.
    hedge = ml.Hedge(0.05, max_hedges=2)
    events: list[ml.Event] = []
    hedge.add_hook(events.append)
    async with FakeBackend() as one, FakeBackend() as two:
        service = ml.Service("users", [one.url, two.url], pipeline=ml.Pipeline(hedge),
                             outlier_detection=None)
        async with ml.Mesh([service]) as mesh:
            client = mesh.http("users")
            assert (await client.get("/")).status_code == 200  # warm: nothing lazy left
            sent = one.request_count + two.request_count
            # (On a busy machine the warm-up itself may outlast the hedge delay.)
            events.clear()
            warm_hedges = _hedges_counted(mesh)

            @ml.Timeout(0.01)
            async def handler() -> None:
                time.sleep(0.02)  # holds the loop past the deadline  # noqa: ASYNC251
                await client.get("/users/1")

            with pytest.raises(ml.TimeoutExceeded) as info:
                await handler()
            assert one.request_count + two.request_count == sent  # nothing sent
            hedges = _hedges_counted(mesh) - warm_hedges
    assert [e for e in events if isinstance(e, HedgeStarted)] == []
    assert hedges == 0
    note = info.value.__cause__.__notes__[-1] if info.value.__cause__ else ""
    assert note.endswith("the call's deadline had passed when hedge 1 was due"), note
