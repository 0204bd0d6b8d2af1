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


def test_a_generator_function_given_to_pipeline_call_is_refused_as_when_decorated() -> None:
    # It was run: with a Cache in the pipeline, the generator object itself was kept,
    # and a second call got it back already iterated (an empty list).
    def count(n: int) -> Iterator[int]:
        yield from range(n)

    pipeline = ml.Pipeline(ml.Cache(ttl=60.0))
    for _ in range(2):
        with pytest.raises(ml.ConfigError, match="count is a generator function"):
            pipeline.call(count, 3)
    # A plain function returning a generator is not a generator function: allowed,
    # as decorating it is.
    assert list(pipeline.call(lambda: (x for x in range(2)))) == [0, 1]


async def test_an_async_generator_function_given_to_acall_is_named_so() -> None:
    with pytest.raises(ml.ConfigError, match="anumbers is an async generator function"):
        await ml.Pipeline(ml.Retry()).acall(anumbers)  # type: ignore[arg-type]


def test_a_generator_function_given_to_mesh_call_sync_is_refused() -> None:
    def rows(backend: object, n: int) -> Iterator[int]:
        yield from range(n)

    with ml.Mesh([ml.Service("users", ["http://127.0.0.1:9"])]) as mesh, pytest.raises(
            ml.ConfigError, match="rows is a generator function"):
        mesh.call_sync("users", rows, 3)
