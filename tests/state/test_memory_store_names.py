"""MemoryStore under names that churn: what it keeps per name stays bounded.

Operations named at run time give a rate limit without ``name=`` one quota per
operation, and a cache one indexed function per operation. The store keeps every
state a policy holds, the last ``max_keys`` names asked for besides, and in a
cache's function index only functions that still have an entry (after the index
doubled).
"""

from __future__ import annotations

import gc
from typing import Any

import pytest
from named_operations import Operations

import meshlite as ml
from meshlite.policies._rate_limit._options import MAX_QUOTA_NAMES
from meshlite.state import MemoryStore
from meshlite.testing import FakeClock

FUNCTION_INDEX_MIN = 1024  # meshlite.state._memory: the index's first pruning point
CHURN = 3 * FUNCTION_INDEX_MIN  # names that come and go, well past every table


_made = Operations()
ran, operation = _made.ran, _made.operation


def states_held(store: MemoryStore) -> int:
    gc.collect()
    return len(store._states)


def churn_quotas(store: MemoryStore, count: int = CHURN) -> None:
    """``count`` operations through a rate limit named per call, on ``store``."""
    pipeline = ml.Pipeline(ml.RateLimit(rate=1e9, store=store))
    for i in range(count):
        pipeline.call(operation(i), i)


def test_quota_names_are_bounded_by_what_policies_hold_and_max_keys() -> None:
    store = MemoryStore(max_keys=8)
    pipeline = ml.Pipeline(ml.RateLimit(rate=1e9, store=store))
    for i in range(CHURN):
        pipeline.call(operation(i), i)
    # The limiter keeps MAX_QUOTA_NAMES names at most; the store 8 more.
    assert states_held(store) <= MAX_QUOTA_NAMES + 8
    del pipeline
    assert states_held(store) <= 8


def test_names_asked_of_the_store_alone_are_bounded_by_max_keys() -> None:
    store = MemoryStore(max_keys=8)
    for i in range(100):
        store.rate_limit(f"q{i}", 1.0, 0.0)
        store.cache(f"c{i}", 10.0, 0.0)
    assert states_held(store) <= 8


def test_a_name_asked_again_within_max_keys_keeps_its_state(clock: FakeClock) -> None:
    store = MemoryStore(max_keys=4, clock=clock)
    assert store.rate_limit("a", 1.0, 0.0).reserve("", 0.0)[0] == 0.0
    store.rate_limit("b", 1.0, 0.0)
    gc.collect()
    assert store.rate_limit("a", 1.0, 0.0).reserve("", 0.0)[0] == pytest.approx(1.0)
    for i in range(4):  # four names asked since: "a", held by nobody, is forgotten
        store.rate_limit(f"other{i}", 1.0, 0.0)
    gc.collect()
    assert store.rate_limit("a", 1.0, 0.0).reserve("", 0.0)[0] == 0.0


def test_a_state_a_policy_holds_outlives_any_churn(clock: FakeClock) -> None:
    store = MemoryStore(max_keys=1, clock=clock)
    quota = ml.RateLimit(1.0, burst=1, name="payments", store=store, mode="reject")
    assert quota(int)() == 0
    ran.clear()
    users = ml.Cache(ttl=60.0, store=store, name="users")  # held throughout
    assert users(operation(-1))(1) == [1, -1]
    breaker = ml.CircuitBreaker(name="svc", store=store, clock=clock)
    breaker.force_open()

    churn_quotas(store)
    for i in range(10):  # and other names of every kind
        store.cache(f"c{i}", 1.0, 0.0)
        store.circuit(f"b{i}", breaker.options, clock)
    gc.collect()

    again = ml.RateLimit(1.0, burst=1, name="payments", store=store, mode="reject")
    with pytest.raises(ml.RateLimitedError):
        again(int)()  # the same quota: its one token is spent
    ran.clear()
    assert ml.Cache(ttl=60.0, store=store, name="users")(operation(-1))(1) == [1, -1]
    assert ran == []  # the same entries
    assert ml.CircuitBreaker(name="svc", store=store, clock=clock).state == "forced_open"


def cache_churn(max_keys: int) -> tuple[ml.Cache, ml.Pipeline, MemoryStore]:
    """A Cache on a MemoryStore that stored one entry (argument 7) for each of CHURN
    functions."""
    store = MemoryStore(max_keys=max_keys, clock=FakeClock())
    cache = ml.Cache(ttl=60.0, store=store)
    pipeline = ml.Pipeline(cache)
    for i in range(CHURN):
        assert pipeline.call(operation(i), 7) == [7, i]
    return cache, pipeline, store


def test_the_function_index_forgets_functions_without_entries() -> None:
    cache, _, _ = cache_churn(max_keys=16)
    shared: Any = cache._shared
    # 16 entries, so 16 functions with one; the others go each time the index doubles.
    assert len(shared._fns) <= FUNCTION_INDEX_MIN


def test_invalidate_still_drops_every_live_entry_after_the_index_shrank() -> None:
    cache, pipeline, _ = cache_churn(max_keys=16)
    last = range(CHURN - 16, CHURN)  # the functions whose entries are left
    ran.clear()
    for i in last:
        pipeline.call(operation(i), 7)
    assert ran == []  # all 16 answered from the store
    assert cache.invalidate(7) == 16
    for i in last:
        pipeline.call(operation(i), 7)
    assert ran == list(last)  # every one computed again


def test_invalidate_drops_every_entry_when_all_functions_have_one() -> None:
    # More functions than the index's first pruning point, each with a live entry:
    # pruning keeps every one of them.
    cache, _, _ = cache_churn(max_keys=CHURN)
    assert cache.invalidate(7) == CHURN
    assert cache.invalidate(7) == 0


def test_clear_drops_every_entry_after_the_index_shrank() -> None:
    cache, pipeline, _ = cache_churn(max_keys=16)
    cache.clear()
    assert cache.invalidate(7) == 0
    ran.clear()
    last = range(CHURN - 16, CHURN)
    for i in last:
        pipeline.call(operation(i), 7)
    assert ran == list(last)
