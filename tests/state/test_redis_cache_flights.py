"""Single flight of a Cache on a RedisStore behaves as the in-memory cache's: the calls
in flight of a Cache are one table (every pipeline it is in), invalidate() and clear()
keep a call in flight out of the store, and a refresh that stops while it takes the
cross-process lock leaves no flight behind for later callers to wait on."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

import meshlite as ml
from meshlite.state import RedisStore


def wait_until(condition: Callable[[], bool]) -> None:
    """Poll a condition other threads make true (bounded, never a timing assertion)."""
    deadline = time.monotonic() + 10.0
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.001)


class Gated:
    """A service that blocks until ``release`` is set; returns its call number."""

    def __init__(self) -> None:
        self.calls = 0
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, x: int) -> int:
        self.calls += 1
        self.entered.set()
        assert self.release.wait(10.0)
        return self.calls


@pytest.mark.parametrize("how", ["invalidate", "clear"])
def test_invalidate_or_clear_during_a_call_keeps_its_result_out(
        store: RedisStore, how: str) -> None:
    service = Gated()
    cache = ml.Cache(ttl=30.0, store=store)
    call = cache(service)
    result: list[int] = []
    leader = threading.Thread(target=lambda: result.append(call(1)))
    leader.start()
    assert service.entered.wait(10.0)
    # The value being computed may be out of date already.
    if how == "invalidate":
        cache.invalidate(1)
    else:
        cache.clear()
    service.release.set()
    leader.join()
    assert result == [1]  # its caller still gets it
    assert call(1) == 2  # but it was not stored
    assert call(1) == 2


def test_pipelines_around_one_cache_share_its_flights(store: RedisStore) -> None:
    # No cache_lock: the process's own single flight is all there is.
    service = Gated()
    cache = ml.Cache(ttl=30.0, store=store)
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(ml.Pipeline(cache).call(
        service, 5))) for _ in range(3)]
    threads[0].start()
    assert service.entered.wait(10.0)
    for t in threads[1:]:
        t.start()

    def waiting() -> int:
        flights = getattr(cache, "_shared_flights", None)
        return 0 if flights is None else sum(len(f.waiters) for f in [*flights.flights.values()])

    # Either both callers wait for the first call, or they made calls of their own.
    wait_until(lambda: waiting() == 2 or service.calls == 3)
    service.release.set()
    for t in threads:
        t.join()
    assert results == [1, 1, 1]
    assert service.calls == 1


class LockHeldUp:
    """A RedisStore whose caches' cross-process lock is not answered until
    ``release`` is set (a slow store): everything else is the real store's."""

    def __init__(self, store: RedisStore) -> None:
        self._store = store
        self.asked = asyncio.Event()
        self.release = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def cache(self, namespace: str, ttl: float, stale_ttl: float) -> Any:
        real = self._store.cache(namespace, ttl, stale_ttl)
        outer = self

        class Shared:
            single_flight = real.single_flight

            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

            async def alock(self, key: str) -> Any:
                outer.asked.set()
                await outer.release.wait()
                return await real.alock(key)

        return Shared()


async def test_a_refresh_cancelled_while_it_takes_the_lock_leaves_no_flight(
        redis_server: Any, prefix: str, raw: redis.Redis) -> None:
    store = RedisStore(redis_server.url, prefix=prefix, timeout=2.0, cache_lock=5.0)
    held = LockHeldUp(store)
    calls = 0

    async def fetch(x: int) -> int:
        nonlocal calls
        calls += 1
        return calls

    cache = ml.Cache(ttl=30.0, stale_ttl=60.0, store=held)
    call = cache(fetch)
    held.release.set()
    assert await call(1) == 1  # a miss takes the lock: let it
    held.release.clear()
    held.asked.clear()
    (key,) = raw.keys(f"{prefix}:cache:default:e:*")
    raw.pexpire(key, 50_000)  # stale: the next caller refreshes, taking the lock
    caller = asyncio.create_task(call(1))
    await asyncio.wait_for(held.asked.wait(), 10.0)
    # Whoever waits for the lock (the caller, or the task refreshing for it) is
    # cancelled there: a client went away, a timeout fired.
    for task in (caller, *cache._tasks):
        task.cancel()
    await asyncio.gather(caller, *cache._tasks, return_exceptions=True)
    held.release.set()
    cache.invalidate(1)
    # The next caller of the key leads a call of its own instead of waiting forever
    # for the one that was cancelled.
    assert await asyncio.wait_for(call(1), 10.0) == 2
    await store.aclose()
