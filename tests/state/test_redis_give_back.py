"""What a policy gives back to its store after a call (a rate limit's reserved slot,
a breaker's trial permit, a cache's single-flight lock) is announced like every other
store operation that could not be made: a ``StoreFallback`` with ``step="release"``,
counted in the store's fallbacks. It never replaces the call's outcome. Each test
stops a real redis-server between the policy's decision and its give-back."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis
from redis_server import RedisServer

import meshlite as ml
from meshlite.state import RedisStore, StoreFallback, StoreUnavailableError


class Interrupted(BaseException):
    """Stands for a KeyboardInterrupt arriving while the call waits or runs."""


def released(events: list[Any]) -> list[tuple[str, str, str]]:
    return [(e.policy, e.step, e.action) for e in events
            if isinstance(e, StoreFallback) and e.step != "decide"]


@pytest.fixture
def store(fresh_server: RedisServer, prefix: str) -> Any:
    s = RedisStore(fresh_server.url, prefix=prefix, timeout=2.0, retry_interval=60.0,
                   cache_lock=5.0)
    yield s
    s.close()


class KillingClock:
    """The system clock, except that a sleep stops Redis and is interrupted."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.sleeping: asyncio.Event | None = None  # set once an async sleep began

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        self.server.kill()
        raise Interrupted

    async def asleep(self, seconds: float) -> None:
        self.server.kill()
        if self.sleeping is not None:
            self.sleeping.set()
        await asyncio.sleep(3600)  # cancelled by the test


def test_a_rate_limit_slot_not_given_back_is_announced(fresh_server: RedisServer,
                                                       store: RedisStore) -> None:
    limit = ml.RateLimit(rate=1.0, per=60.0, burst=1, mode="wait", store=store,
                         name="slots", clock=KillingClock(fresh_server))
    events: list[Any] = []
    limit.add_hook(events.append)
    pipeline = ml.Pipeline(limit)
    assert pipeline.call(lambda: 1) == 1
    with pytest.raises(Interrupted):
        pipeline.call(lambda: 2)  # waits for its slot; Redis stops meanwhile
    assert released(events) == [("rate_limit", "release", "local")]
    assert store.fallbacks == {("rate_limit", "local"): 1}


async def test_a_cancelled_wait_whose_slot_is_not_given_back_is_announced(
        fresh_server: RedisServer, store: RedisStore) -> None:
    clock = KillingClock(fresh_server)
    clock.sleeping = asyncio.Event()
    limit = ml.RateLimit(rate=1.0, per=60.0, burst=1, mode="wait", store=store,
                         name="aslots", clock=clock)
    events: list[Any] = []
    limit.add_hook(events.append)
    pipeline = ml.Pipeline(limit)

    async def one() -> int:
        return 1

    assert await pipeline.acall(one) == 1
    waiting = asyncio.ensure_future(pipeline.acall(one))
    await clock.sleeping.wait()  # it waits for its slot, and Redis has stopped
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    for _ in range(200):  # the slot is given back in a task of its own
        if released(events):
            break
        await asyncio.sleep(0.01)
    assert released(events) == [("rate_limit", "release", "local")]


def half_open(store: RedisStore, server: RedisServer, name: str) -> ml.CircuitBreaker:
    """A breaker on ``store`` whose next call is a trial (its permit must go back)."""
    breaker = ml.CircuitBreaker(store=store, name=name, window=4, min_calls=2,
                                open_seconds=60.0, half_open_calls=1)

    def fail() -> None:
        raise ConnectionError

    for _ in range(2):
        with pytest.raises(ConnectionError):
            breaker(fail)()
    client = redis.Redis.from_url(server.url)
    client.hset(f"{store.prefix}:cb:{{{name}}}", "ou", 0)  # the open period is over
    client.close()
    return breaker


def test_a_breaker_permit_not_given_back_is_announced(fresh_server: RedisServer,
                                                      store: RedisStore) -> None:
    breaker = half_open(store, fresh_server, "permits")
    events: list[Any] = []
    breaker.add_hook(events.append)

    @breaker
    def interrupted() -> None:
        fresh_server.kill()
        raise Interrupted

    with pytest.raises(Interrupted):
        interrupted()
    assert released(events) == [("circuit_breaker", "release", "local")]


async def test_an_async_breaker_permit_not_given_back_is_announced(
        fresh_server: RedisServer, store: RedisStore) -> None:
    breaker = half_open(store, fresh_server, "apermits")
    events: list[Any] = []
    breaker.add_hook(events.append)

    @breaker
    async def refused() -> None:
        fresh_server.kill()
        raise ml.BulkheadFullError("full")  # refused further in: not an outcome

    with pytest.raises(ml.BulkheadFullError):
        await refused()
    assert released(events) == [("circuit_breaker", "release", "local")]


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_a_cache_lock_not_given_back_is_announced(
        fresh_server: RedisServer, store: RedisStore, asynchronous: bool) -> None:
    cache = ml.Cache(ttl=30.0, store=store, name=f"lock{asynchronous}")
    events: list[Any] = []
    cache.add_hook(events.append)

    def compute(x: int) -> int:
        fresh_server.kill()  # after the lock was taken, before the value is stored
        return x * 2

    async def acompute(x: int) -> int:
        return compute(x)

    if asynchronous:
        assert await cache(acompute)(21) == 42
    else:
        assert cache(compute)(21) == 42
    assert released(events) == [("cache", "store", "local"), ("cache", "release", "local")]


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_a_cache_lock_redis_refuses_is_announced(
        fresh_server: RedisServer, store: RedisStore, asynchronous: bool) -> None:
    # Out of memory, Redis still answers reads but refuses every write: the entry's
    # look finds nothing, the single-flight lock is refused (the call goes on without
    # one), and so is storing the value. Each is announced.
    client = redis.Redis.from_url(fresh_server.url)
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)
    client.close()
    cache = ml.Cache(ttl=30.0, store=store, name=f"oom{asynchronous}")
    events: list[Any] = []
    cache.add_hook(events.append)

    def compute(x: int) -> int:
        return x * 2

    async def acompute(x: int) -> int:
        return x * 2

    if asynchronous:
        assert await cache(acompute)(21) == 42
    else:
        assert cache(compute)(21) == 42
    assert released(events) == [("cache", "lock", "local"), ("cache", "store", "local")]


class SecondLookFails:
    """A RedisStore whose caches' second look of a call cannot reach Redis (as when it
    stops between the two): everything else is the real store's."""

    def __init__(self, store: RedisStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def cache(self, namespace: str, ttl: float, stale_ttl: float) -> Any:
        real = self._store.cache(namespace, ttl, stale_ttl)
        looks = [0]

        class Shared:
            single_flight = real.single_flight

            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

            def get(self, key: str) -> Any:
                looks[0] += 1
                if looks[0] == 2:
                    raise StoreUnavailableError("store stopped")
                return real.get(key)

            async def aget(self, key: str) -> Any:
                looks[0] += 1
                if looks[0] == 2:
                    raise StoreUnavailableError("store stopped")
                return await real.aget(key)

        return Shared()


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_a_second_look_that_fails_is_announced(
        fresh_server: RedisServer, prefix: str, asynchronous: bool) -> None:
    plain = RedisStore(fresh_server.url, prefix=prefix, timeout=2.0)  # no cache_lock
    cache = ml.Cache(ttl=30.0, store=SecondLookFails(plain), name=f"look{asynchronous}")
    events: list[Any] = []
    cache.add_hook(events.append)

    async def acompute(x: int) -> int:
        return x * 2

    if asynchronous:
        assert await cache(acompute)(21) == 42
    else:
        assert cache(lambda x: x * 2)(21) == 42
    plain.close()
    assert released(events) == [("cache", "read", "local")]
