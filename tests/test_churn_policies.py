"""Policies on a shared store keep bounded memory when every call brings a new
operation name (a function named at run time): a RateLimit whose quota is named by
the call's operation, a Cache whose shared entries are keyed by the function's name.
Real Redis (redis-server on loopback) and the in-memory store."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _system import require_program

import meshlite as ml
from meshlite.policies._cache._shared import MAX_FUNCTION_NAMES
from meshlite.policies._rate_limit import MAX_QUOTA_NAMES
from meshlite.state import MemoryStore

pytest.importorskip("redis")


def named(name: str) -> Callable[[], str]:
    """A new function object whose qualified name (its operation) is ``name``."""

    def operation() -> str:
        return name

    operation.__qualname__ = name
    return operation


def alive(kind: str) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o).__name__ == kind)


@pytest.fixture
def redis_url() -> Iterator[str]:
    from state.redis_server import RedisServer

    server = RedisServer(require_program("redis-server", "redis-server")).start()
    try:
        yield server.url
    finally:
        server.close()


def test_a_limit_named_by_operation_keeps_a_bounded_number_of_quotas(redis_url: str) -> None:
    from meshlite.state import RedisStore

    store = RedisStore(redis_url, timeout=2.0)
    limit = ml.RateLimit(rate=1.0, per=60.0, burst=1, mode="reject", store=store)
    pipeline = ml.Pipeline(limit)
    try:
        assert pipeline.call(named("first")) == "first"
        before = alive("RedisGcra")
        for i in range(MAX_QUOTA_NAMES + 500):
            assert pipeline.call(named(f"op{i}")) == f"op{i}"
        assert alive("RedisGcra") - before <= MAX_QUOTA_NAMES
        # A quota let go of in this process still counts in the store: its one slot
        # of the minute is spent.
        with pytest.raises(ml.RateLimitedError):
            pipeline.call(named("first"))
    finally:
        store.close()


def test_a_shared_cache_forgets_functions_named_per_call() -> None:
    cache = ml.Cache(ttl=60.0, store=MemoryStore())
    pipeline = ml.Pipeline(cache)
    made: list[weakref.ref[Any]] = []
    for i in range(MAX_FUNCTION_NAMES + 1000):
        fn = named(f"op{i}")
        made.append(weakref.ref(fn))
        assert pipeline.call(fn) == f"op{i}"
    del fn
    gc.collect()
    assert sum(r() is not None for r in made) <= MAX_FUNCTION_NAMES
    # The functions last called are still told apart from another of their name.
    def other() -> str:
        return "other"

    other.__qualname__ = f"op{MAX_FUNCTION_NAMES + 999}"
    with pytest.raises(TypeError, match="names two different functions"):
        pipeline.call(other)
