"""Generator functions are refused when decorated: a policy around one would protect
nothing, since its body runs while the caller iterates, after the call returned."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

import meshlite as ml


def numbers() -> Iterator[int]:
    yield 1
    raise ConnectionError("the backend went away mid-stream")


async def anumbers() -> AsyncIterator[int]:
    yield 1
    raise ConnectionError("the backend went away mid-stream")


DECORATORS: dict[str, Callable[[], Callable[[Any], Any]]] = {
    "pipeline": lambda: ml.Pipeline(ml.Retry(attempts=3)),
    "empty pipeline": lambda: ml.Pipeline(),
    "resilient": lambda: ml.resilient(timeout=1.0, retries=2, breaker=True),
    "resilient bare": lambda: ml.resilient,
    "retry": lambda: ml.Retry(attempts=3),
    "timeout": lambda: ml.Timeout(0.01),
    "breaker": lambda: ml.CircuitBreaker(),
    "rate_limit": lambda: ml.RateLimit(rate=10.0),
    "bulkhead": lambda: ml.Bulkhead(max_concurrent=1),
    "cache": lambda: ml.Cache(ttl=1.0),
    "fallback": lambda: ml.Fallback(value=None),
    "trace": lambda: ml.Trace(),
    "fault": lambda: ml.FaultInjection(rate=0.0),
    "metrics pipeline": lambda: ml.Pipeline(ml.Metrics(), ml.Retry()),
}


@pytest.mark.parametrize("make", DECORATORS.values(), ids=DECORATORS.keys())
@pytest.mark.parametrize("fn", [numbers, anumbers], ids=["generator", "async generator"])
def test_generator_functions_are_refused_at_decoration(
        make: Callable[[], Callable[[Any], Any]], fn: Callable[..., Any]) -> None:
    decorate = make()
    with pytest.raises(ml.ConfigError) as info:
        decorate(fn)
    message = str(info.value)
    assert fn.__qualname__ in message
    assert "generator function" in message
    assert "list(gen(...))" in message or "async for" in message  # what to wrap instead


def test_a_function_returning_the_collected_items_is_protected() -> None:
    calls: list[int] = []

    @ml.Retry(attempts=3, backoff=ml.backoff.constant(0.0), budget=None)
    def collect() -> list[int]:
        calls.append(1)
        return list(numbers())

    with pytest.raises(ConnectionError):
        collect()
    assert len(calls) == 3  # the error raised while iterating was retried
