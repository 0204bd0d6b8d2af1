"""What docs/policies/hedge.md promises under load, against real loopback servers: a
failing service does not get a multiple of its load from hedges (a budget caps them
as it caps retries), while a service with a slow minority of answers gets its hedges."""

from __future__ import annotations

import asyncio
import itertools

import pytest

import meshlite as ml
from meshlite.testing import FakeBackend

CALLS, IN_FLIGHT = 600, 32


async def _outage(pipeline: ml.Pipeline) -> int:
    """Requests the backends got for CALLS calls while every request fails."""
    async with FakeBackend(error_rate=1.0) as a, FakeBackend(error_rate=1.0) as b:
        service = ml.Service("s", [a.url, b.url], pipeline=pipeline, outlier_detection=None)
        async with ml.Mesh([service]) as mesh:
            client = mesh.http("s")
            gate = asyncio.Semaphore(IN_FLIGHT)

            async def one() -> int:
                async with gate:
                    return (await client.get("/")).status_code

            assert await asyncio.gather(*(one() for _ in range(CALLS))) == [503] * CALLS
        return a.request_count + b.request_count


async def test_hedges_of_a_failing_service_stay_within_the_default_budget() -> None:
    # Each failure starts the next hedge at once: without a budget every call made
    # 1 + max_hedges requests (1,200 and 2,400 here), an outage doubling its own load.
    for max_hedges in (1, 3):
        hedge = ml.Hedge(0.05, max_hedges=max_hedges)
        events: list[ml.Event] = []
        hedge.add_hook(events.append)
        sent = await _outage(ml.Pipeline(hedge))
        refused = [e for e in events if isinstance(e, ml.RetryBudgetExhausted)]
        reserve = 10.0 * 10.0  # the default budget's min_per_second * ttl
        assert CALLS < sent <= CALLS + reserve + 0.2 * CALLS, (max_hedges, sent)
        assert refused  # and the refusals were told
        assert {e.policy for e in refused} == {"hedge"}


async def test_one_budget_caps_retries_and_hedges_together() -> None:
    budget = ml.RetryBudget(ratio=0.1, min_per_second=1.0, ttl=60.0)
    pipeline = ml.Pipeline(
        ml.Retry(attempts=3, backoff=ml.backoff.constant(0.001), budget=budget),
        ml.Hedge(0.05, budget=budget),
    )
    sent = await _outage(pipeline)
    # Each retry and each hedge takes a token. Retry deposits once per call, Hedge
    # (inside it) once per attempt it sees: a call and each of its retries.
    extra = sent - CALLS  # retries and hedges
    assert extra <= 60.0 + 0.1 * (2 * CALLS + extra), sent
    assert sent < 2 * CALLS  # without the shared budget: over 3 * CALLS


async def test_a_slow_minority_is_hedged_without_the_budget_refusing() -> None:
    # Every tenth request takes 1 s; a hedge after 0.2 s answers at once. About one
    # call in ten is hedged, well within the budget's share, so none is refused.
    count = itertools.count()

    def latency() -> float:
        return 1.0 if next(count) % 10 == 9 else 0.0

    hedge = ml.Hedge(0.2)
    events: list[ml.Event] = []
    hedge.add_hook(events.append)
    async with FakeBackend(latency=latency) as a, FakeBackend(latency=latency) as b:
        service = ml.Service("s", [a.url, b.url], pipeline=ml.Pipeline(hedge))
        async with ml.Mesh([service]) as mesh:
            client = mesh.http("s")
            gate = asyncio.Semaphore(16)

            async def one() -> int:
                async with gate:
                    return (await client.get("/")).status_code

            assert await asyncio.gather(*(one() for _ in range(300))) == [200] * 300
    started = [e for e in events if type(e).__name__ == "HedgeStarted"]
    assert not [e for e in events if isinstance(e, ml.RetryBudgetExhausted)]
    assert 300 // 20 <= len(started) <= 300 // 2


async def test_a_refused_hedge_is_named_in_the_note_and_the_call_ends_with_its_error() -> None:
    calls: list[int] = []
    hedge = ml.Hedge(0.0, max_hedges=2, budget=ml.RetryBudget(ratio=0.0, min_per_second=0.0))

    @hedge
    async def fails() -> None:
        calls.append(ml.current_context().hedge)
        raise ConnectionError("down")

    with pytest.raises(ConnectionError) as raised:
        await fails()
    assert raised.value.__notes__[-1].endswith("the retry budget refused hedge 1")
    assert calls == [0]  # no hedge ran
    assert hedge.budget is not None
    assert hedge.budget.balance == 0.0
