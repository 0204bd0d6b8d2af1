"""A Cache on a RedisStore takes the arguments its keys are made of (JSON: lists and
dicts too, which are not hashable) everywhere: calls, ``invalidate()``, ``warm()``,
and calls while Redis is away (``on_error="local"``: the in-process cache keys them by
the same digest). And ``warm()`` knows the function such a Cache serves in a
pipeline, as it does in memory. A real redis-server on loopback."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

import meshlite as ml
from meshlite.state import RedisStore

pytest.importorskip("redis")


_prefixes = itertools.count()


@pytest.fixture
def store(redis_url: str) -> Iterator[RedisStore]:
    s = RedisStore(redis_url, prefix=f"args{next(_prefixes)}", timeout=2.0)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def dead_store() -> Iterator[RedisStore]:
    """A store on a loopback port nothing listens on: every command is refused."""
    from state.redis_server import free_port

    s = RedisStore(f"redis://127.0.0.1:{free_port()}/0", on_error="local")
    try:
        yield s
    finally:
        s.close()


class Totals:
    """``total(ids, options)``: the sum of ``ids``, its calls counted."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, ids: list[int], options: dict[str, Any] | None = None) -> int:
        self.calls += 1
        return sum(ids)


def test_calls_invalidate_and_warm_take_lists_and_dicts(store: RedisStore) -> None:
    cache = ml.Cache(ttl=30.0, store=store)
    service = Totals()
    total = cache(service)
    assert total([1, 2], {"fast": True}) == total([1, 2], {"fast": True}) == 3
    assert service.calls == 1
    assert cache.invalidate([1, 2], {"fast": True}) == 1
    assert total([1, 2], {"fast": True}) == 3
    assert service.calls == 2
    assert cache.warm([1, 2], {"fast": True}) == 3  # computed again, stored
    assert service.calls == 3
    assert total([1, 2], {"fast": True}) == 3
    assert service.calls == 3


def test_a_store_outage_caches_lists_in_process(dead_store: RedisStore) -> None:
    # The in-process fallback keyed calls as in memory, by hashing the arguments:
    # every call with a list raised TypeError while Redis was away.
    cache = ml.Cache(ttl=30.0, store=dead_store)
    service = Totals()
    total = cache(service)
    assert total([1, 2]) == total([1, 2]) == 3
    assert service.calls == 1
    assert cache.invalidate([1, 2]) == 1  # the in-process entry
    assert total([1, 2]) == 3
    assert service.calls == 2


async def test_async_a_store_outage_caches_lists_in_process(dead_store: RedisStore) -> None:
    calls: list[list[int]] = []

    async def total(ids: list[int]) -> int:
        calls.append(ids)
        return sum(ids)

    call = ml.Cache(ttl=30.0, stale_ttl=30.0, store=dead_store)(total)
    assert await call([1, 2]) == await call([1, 2]) == 3
    assert calls == [[1, 2]]


def test_warm_in_a_pipeline_knows_the_function_it_served(store: RedisStore) -> None:
    cache = ml.Cache(ttl=30.0, store=store)
    pipeline = ml.Pipeline(cache)
    service = Totals()

    def total(ids: list[int]) -> int:
        return service(ids)

    assert pipeline.call(total, [4]) == 4
    assert cache.warm([5]) == 5  # was: ConfigError, "has served no function yet"
    assert pipeline.call(total, [5]) == 5
    assert service.calls == 2


async def test_async_warm_in_a_pipeline_knows_the_function_it_served(
        store: RedisStore) -> None:
    cache = ml.Cache(ttl=30.0, store=store)
    pipeline = ml.Pipeline(cache)
    calls: list[int] = []

    async def fetch(x: int) -> int:
        calls.append(x)
        return x

    assert await pipeline.acall(fetch, 1) == 1
    assert await cache.warm(1) == 1
    assert calls == [1, 1]
