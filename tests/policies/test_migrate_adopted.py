"""Objects a service already had, adopted mid-life: a pybreaker breaker kept open in
Redis by its replicas, an aiolimiter limiter that has just admitted calls, a
cachetools ``TTLCache``. What they had decided carries over to the meshlite policy
in front of a real loopback backend."""

from __future__ import annotations

import asyncio
import itertools

import aiolimiter
import cachetools
import httpx
import pybreaker
import pytest

import meshlite as ml
from meshlite.state import RedisStore
from meshlite.testing import FakeBackend, FakeClock

redis = pytest.importorskip("redis")

_names = itertools.count()



def test_a_pybreaker_open_in_redis_is_adopted_open_in_the_shared_store(
        redis_url: str, replicas: tuple[RedisStore, RedisStore]) -> None:
    name = f"orders{next(_names)}"
    client = redis.Redis.from_url(redis_url)
    try:
        storage = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, client, namespace=name)
        old = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=60, state_storage=storage,
                                       name=name)
        with pytest.raises(pybreaker.CircuitBreakerError):
            old.call(lambda: 1 / 0)  # the replicas' shared breaker opened
        assert old.current_state == "open"
        one = ml.CircuitBreaker.from_pybreaker(old, store=replicas[0])
        # the other replica, built from the same settings, reads the same state
        two = ml.CircuitBreaker.from_pybreaker(
            pybreaker.CircuitBreaker(fail_max=1, reset_timeout=60, name=name), store=replicas[1])
    finally:
        client.close()
    assert (one.options.name, one.options.open_seconds) == (name, 60)
    assert one.state == two.state == "open"
    with FakeBackend() as backend, httpx.Client(base_url=backend.url) as http:
        for breaker in (one, two):
            with pytest.raises(ml.CircuitOpenError):
                ml.Pipeline(breaker).call(http.get, "/orders/1")
        assert backend.requests == []


async def test_an_aiolimiter_that_admitted_calls_is_adopted_with_them_spent() -> None:
    # 4 calls an hour: what it gives back while the test runs is far below one call
    limiter = aiolimiter.AsyncLimiter(4, 3600)
    async with FakeBackend() as backend, httpx.AsyncClient(base_url=backend.url) as client:
        for _ in range(3):
            async with limiter:
                await client.get("/before")
        limit = ml.RateLimit.from_aiolimiter(limiter, mode="reject", clock=FakeClock())
        pipeline = ml.Pipeline(limit)

        def sync_get() -> object:
            with httpx.Client(base_url=backend.url) as sync_client:
                return pipeline.call(sync_client.get, "/after")

        # one call is left in the hour, for threads and tasks alike
        outcomes = await asyncio.gather(
            asyncio.to_thread(sync_get), asyncio.to_thread(sync_get),
            pipeline.acall(client.get, "/after"), pipeline.acall(client.get, "/after"),
            return_exceptions=True)
    rejected = [o for o in outcomes if isinstance(o, ml.RateLimitedError)]
    assert len(rejected) == 3, outcomes
    assert [r.path for r in backend.requests].count("/after") == 1


async def test_an_unused_aiolimiter_is_adopted_with_its_whole_burst() -> None:
    limit = ml.RateLimit.from_aiolimiter(aiolimiter.AsyncLimiter(3, 3600), mode="reject",
                                         clock=FakeClock())
    pipeline = ml.Pipeline(limit)
    for _ in range(3):
        await pipeline.acall(asyncio.sleep, 0)
    with pytest.raises(ml.RateLimitedError):
        await pipeline.acall(asyncio.sleep, 0)


def test_a_ttlcache_given_as_ttl_says_how_to_carry_its_settings_over() -> None:
    old: cachetools.TTLCache[str, str] = cachetools.TTLCache(maxsize=100, ttl=60)
    old["secret-key"] = "secret-value"
    with pytest.raises(ml.ConfigError, match=r"ttl=cache\.ttl, maxsize=int\(cache\.maxsize\)") \
            as raised:
        ml.Cache(old)  # type: ignore[arg-type]
    assert "secret" not in str(raised.value)  # the entries are not shown
    cache = ml.Cache(ttl=old.ttl, maxsize=int(old.maxsize))
    assert (cache.options.ttl, cache.options.maxsize) == (60, 100)


def test_a_library_object_given_in_place_of_a_number_names_its_adapter() -> None:
    with pytest.raises(ml.ConfigError, match=r"ml\.RateLimit\.from_aiolimiter\(limiter\)"):
        ml.RateLimit(aiolimiter.AsyncLimiter(5, 1))  # type: ignore[arg-type]
    with pytest.raises(ml.ConfigError, match=r"ml\.RateLimit\.from_aiolimiter\(limiter\)"):
        ml.resilient(rate=aiolimiter.AsyncLimiter(5, 1))  # type: ignore[call-overload]
    with pytest.raises(ml.ConfigError, match=r"ml\.CircuitBreaker\.from_pybreaker\(cb\)"):
        ml.resilient(breaker=pybreaker.CircuitBreaker())  # type: ignore[call-overload]
