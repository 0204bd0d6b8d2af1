"""A shared breaker that loses one of its two keys, as a Redis with a ``maxmemory``
eviction policy does (it evicts keys one by one, and every breaker key has a TTL,
so ``volatile-*`` policies pick them too): its totals must not drift."""

from __future__ import annotations

import pytest
import redis

import meshlite as ml
from meshlite.state import RedisStore


class Boom(Exception):
    pass


def fail() -> None:
    raise Boom


def ok() -> int:
    return 1


def _breaker(store: RedisStore, window_type: str = "count",
             window: float = 4) -> ml.CircuitBreaker:
    return ml.CircuitBreaker(store=store, name="users", window=window, min_calls=4,
                             failure_rate=0.5, window_type=window_type)


def _run(cb: ml.CircuitBreaker, outcomes: str) -> None:
    for outcome in outcomes:
        if outcome == "F":
            with pytest.raises(Boom):
                cb(fail)()
        else:
            assert cb(ok)() == 1


def test_a_window_evicted_alone_does_not_open_the_breaker_early(
        store: RedisStore, raw: redis.Redis) -> None:
    cb = _breaker(store)
    _run(cb, "FSSS")  # 1 of 4 failed: closed
    raw.delete(f"{store.prefix}:cb:{{users}}:w")  # the window evicted, its totals kept
    _run(cb, "SSSSF")  # the last four: S, S, S, F: 1 of 4 failed
    assert cb.state == "closed"  # the failure evicted with the window counted no more
    assert (cb.metrics().calls, cb.metrics().failures) == (4, 1)
    assert store.fallbacks == {}


def test_totals_evicted_alone_do_not_keep_the_breaker_closed(
        store: RedisStore, raw: redis.Redis) -> None:
    cb = _breaker(store)
    _run(cb, "FFS")  # below min_calls
    raw.delete(f"{store.prefix}:cb:{{users}}")  # the state hash evicted, its window kept
    _run(cb, "SSSS")
    assert (cb.metrics().calls, cb.metrics().failures) == (4, 0)
    _run(cb, "FF")  # the last four: S, S, F, F: 2 of 4 failed
    assert cb.state == "open"
    assert store.fallbacks == {}


def test_a_time_window_evicted_alone_is_forgotten(store: RedisStore,
                                                  raw: redis.Redis) -> None:
    cb = _breaker(store, window_type="time", window=60)
    _run(cb, "FS")
    raw.delete(f"{store.prefix}:cb:{{users}}:w")
    assert (cb.metrics().calls, cb.metrics().failures) == (0, 0)
    _run(cb, "SSSF")
    assert cb.state == "closed"
    assert (cb.metrics().calls, cb.metrics().failures) == (4, 1)
