"""A result ``ml.Retry``'s ``on_result`` refused is returned when Retry gives up, and a
``Cache`` outside it does not keep it: ``Pipeline(Cache, Retry(on_result=...))`` (the
documented order) served a "busy" answer for the whole TTL, without retrying."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import meshlite as ml
from meshlite.state import MemoryStore
from meshlite.testing import FakeClock


class Answers:
    """Answers "busy" while ``busy`` says so, then "ok"; counts its calls."""

    def __init__(self) -> None:
        self.busy = True
        self.calls = 0

    def __call__(self, key: int) -> str:
        self.calls += 1
        return "busy" if self.busy else "ok"


def pipeline(store: Any) -> ml.Pipeline:
    clock = FakeClock()
    return ml.Pipeline(
        ml.Cache(ttl=60.0, store=store, clock=clock),
        ml.Retry(attempts=2, backoff=ml.backoff.constant(0.0), clock=clock,
                 on_result=lambda result: result == "busy"))


@pytest.mark.parametrize("store", [None, "memory"])
def test_a_refused_result_is_returned_not_kept(store: str | None) -> None:
    answers = Answers()
    cached = pipeline(MemoryStore() if store else None)(answers)
    assert cached(1) == "busy"  # Retry gave up: its last refused result
    assert answers.calls == 2
    answers.busy = False
    assert cached(1) == "ok"  # called again, not served "busy" from the cache
    assert answers.calls == 3
    assert cached(1) == "ok"  # a result Retry took is kept
    assert answers.calls == 3


@pytest.mark.parametrize("store", [None, "memory"])
def test_the_same_for_an_async_function(store: str | None) -> None:
    answers = Answers()

    async def fetch(key: int) -> str:
        return answers(key)

    cached = pipeline(MemoryStore() if store else None)(fetch)

    async def main() -> None:
        assert await cached(1) == "busy"
        answers.busy = False
        assert await cached(1) == "ok"
        assert await cached(1) == "ok"

    asyncio.run(main())
    assert answers.calls == 3
