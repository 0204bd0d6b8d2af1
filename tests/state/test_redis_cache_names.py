"""A Cache on a RedisStore under function names that churn.

A process remembers when it last added each function to the namespace's index
(``:fns``), to update it only once per entry lifetime. With operations named at
run time that memory must stay bounded, and forgetting must never cost an entry
its invalidation: ``invalidate()`` and ``clear()`` still drop every live entry.
"""

from __future__ import annotations

from typing import Any

from named_operations import Operations

import meshlite as ml
from meshlite.state import RedisStore

INDEX_MEMORY = 1024  # meshlite.state._redis_cache: functions remembered after pruning
CHURN = 2 * INDEX_MEMORY + 300  # past the first pruning point

_made = Operations()
ran, operation = _made.ran, _made.operation


def churned(store: RedisStore, count: int = CHURN) -> tuple[ml.Cache, ml.Pipeline]:
    """A Cache that stored one entry (argument 7) for each of ``count`` functions."""
    cache = ml.Cache(ttl=600.0, store=store, name="churn")
    pipeline = ml.Pipeline(cache)
    for i in range(count):
        assert pipeline.call(operation(i), 7) == [7, i]
    return cache, pipeline


def test_what_a_process_remembers_of_the_index_stays_bounded(store: RedisStore) -> None:
    cache, _ = churned(store)
    shared: Any = cache._shared
    assert len(shared._indexed) <= 2 * INDEX_MEMORY


def test_invalidate_drops_every_live_entry_after_the_memory_was_pruned(
        store: RedisStore) -> None:
    cache, pipeline = churned(store)
    first = range(50)  # functions the process forgot having indexed: stored again
    for i in first:
        assert pipeline.call(operation(i), 8) == [8, i]
    assert cache.invalidate(7) == CHURN
    assert cache.invalidate(8) == len(first)
    ran.clear()
    for i in range(CHURN):
        pipeline.call(operation(i), 7)
    assert ran == list(range(CHURN))  # every one computed again


def test_clear_drops_every_entry_after_the_memory_was_pruned(store: RedisStore) -> None:
    cache, pipeline = churned(store)
    cache.clear()
    assert cache.invalidate(7) == 0
    ran.clear()
    for i in range(CHURN):
        pipeline.call(operation(i), 7)
    assert ran == list(range(CHURN))
    # And the functions stored after the clear are indexed again.
    assert cache.invalidate(7) == CHURN
