"""An ``on=`` / ``failure_on=`` predicate that raises (one written for HTTP errors and
handed a ``ConnectionError``, say) is a bug of the caller's: its error reaches the
caller, with a note naming the predicate and what it was given, and the policy's state
stays whole (no trial slot kept for ever, no hedge left running, no cancellation
turned into the predicate's error)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import meshlite as ml
from meshlite.testing import FakeClock


class HTTPError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def server_error(error: Any) -> bool:
    return bool(error.status >= 500)  # AttributeError for an error without a status


def _open_breaker(clock: FakeClock) -> ml.CircuitBreaker:
    breaker = ml.CircuitBreaker(window=2, min_calls=2, open_seconds=10, half_open_calls=1,
                                failure_on=server_error, clock=clock)

    def http() -> None:
        raise HTTPError(503)

    for _ in range(2):
        with pytest.raises(HTTPError):
            breaker(http)()
    assert breaker.state == "open"
    clock.advance(10)
    return breaker


def refused() -> None:
    raise ConnectionError("refused")


def test_a_raising_failure_on_gives_the_trial_slot_back_sync() -> None:
    # The trial call's slot was never given back: the circuit stayed half-open and
    # refused every call until reset().
    breaker = _open_breaker(FakeClock())
    with pytest.raises(AttributeError) as info:
        breaker(refused)()
    assert "raised by the failure_on= predicate of CircuitBreaker, given ConnectionError: " \
        "refused" in info.value.__notes__
    assert breaker.metrics().trial_calls == 0
    assert breaker(lambda: "ok")() == "ok"  # the next call is the trial
    assert breaker.state == "closed"


async def test_a_raising_failure_on_gives_the_trial_slot_back_async() -> None:
    breaker = _open_breaker(FakeClock())

    async def arefused() -> None:
        raise ConnectionError("refused")

    async def ok() -> str:
        return "ok"

    with pytest.raises(AttributeError):
        await breaker(arefused)()
    assert await breaker(ok)() == "ok"
    assert breaker.state == "closed"


async def test_a_hedge_whose_on_raises_for_a_hedge_ends_the_call() -> None:
    # The predicate raised in the hedge's done-callback: the call waited for ever.
    @ml.Hedge(0.01, on=server_error)
    async def fetch() -> None:
        if ml.current_context().hedge == 0:
            raise HTTPError(503)  # matches: a hedge starts at once
        raise ConnectionError("refused")  # the predicate raises on this one

    with pytest.raises(AttributeError) as info:
        await asyncio.wait_for(fetch(), 5)
    assert any("given ConnectionError" in note for note in info.value.__notes__)


async def test_a_hedge_whose_on_raises_for_the_primary_starts_no_hedge_after_it() -> None:
    # The error left the handler with the timer armed: a hedge ran after the call.
    attempts: list[int] = []

    @ml.Hedge(0.05, on=server_error)
    async def fetch() -> None:
        attempts.append(ml.current_context().hedge)
        raise ConnectionError("refused")

    with pytest.raises(AttributeError):
        await fetch()
    await asyncio.sleep(0.2)
    assert attempts == [0]
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_an_outlier_failure_on_that_raises_leaves_a_deadline_a_timeout() -> None:
    # A call cut by its own pipeline's deadline counts as the backend's failure; a
    # failure_on raising on it turned the cancellation into its AttributeError.
    async def slow(backend: ml.Backend) -> str:
        await asyncio.sleep(5)
        return "late"

    service = ml.Service("users", ["a"], pipeline=ml.Pipeline(ml.Timeout(0.05)),
                         outlier_detection=ml.OutlierDetection(failure_on=server_error))
    async with ml.Mesh([service]) as mesh:
        with pytest.raises(ml.TimeoutExceeded):
            await mesh.call("users", slow)
        assert [e.in_flight for e in mesh.service("users").endpoints] == [0]
