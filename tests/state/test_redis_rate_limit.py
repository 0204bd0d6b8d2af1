"""RateLimit on a RedisStore: one quota for every process, GCRA on Redis's clock."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import redis

import meshlite as ml
from meshlite.policies._rate_limit import RateLimitWaited
from meshlite.state import RedisStore, StoreFallback, StoreUnavailableError
from meshlite.testing import FakeClock


def admitted(call: Any, n: int) -> int:
    count = 0
    for _ in range(n):
        try:
            call()
            count += 1
        except ml.RateLimitedError:
            pass
    return count


def test_two_processes_share_one_quota(store: RedisStore, other_store: RedisStore) -> None:
    a = ml.RateLimit(1.0, burst=5, store=store, name="api", mode="reject")(lambda: 1)
    b = ml.RateLimit(1.0, burst=5, store=other_store, name="api", mode="reject")(lambda: 1)
    assert admitted(a, 3) == 3
    assert admitted(b, 5) == 2  # what a left of the burst
    with pytest.raises(ml.RateLimitedError) as info:
        a()
    assert 0 < (info.value.retry_after or 0) <= 1.0


def test_total_admitted_stays_within_the_bound(store: RedisStore,
                                               other_store: RedisStore) -> None:
    rate, burst = 200.0, 10
    counts: list[int] = []
    stop = threading.Event()

    def worker(s: RedisStore) -> None:
        call = ml.RateLimit(rate, burst=burst, store=s, name="bound", mode="reject")(int)
        n = 0
        while not stop.is_set():
            try:
                call()
                n += 1
            except ml.RateLimitedError:
                pass
        counts.append(n)

    threads = [threading.Thread(target=worker, args=(s,)) for s in (store, other_store) * 2]
    start = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(0.4)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    total = sum(counts)
    assert burst <= total <= burst + rate * elapsed


def test_keys_have_their_own_quota(store: RedisStore, raw: redis.Redis) -> None:
    limit = ml.RateLimit(1.0, burst=1, store=store, name="tenants", mode="reject",
                         key=lambda tenant: tenant)
    call = limit(lambda tenant: tenant)
    assert call("a") == "a"
    assert call("b") == "b"
    with pytest.raises(ml.RateLimitedError, match="key 'a'"):
        call("a")
    assert raw.exists(f"{store.prefix}:rl:tenants:a", f"{store.prefix}:rl:tenants:b") == 2


def test_default_name_is_the_service_else_the_operation(store: RedisStore,
                                                        raw: redis.Redis) -> None:
    def lookup() -> int:
        return 1

    ml.RateLimit(10.0, store=store)(lookup)()
    assert raw.exists(f"{store.prefix}:rl:{lookup.__qualname__}")


def test_state_expires_once_its_slot_is_past(store: RedisStore, raw: redis.Redis) -> None:
    ml.RateLimit(10.0, burst=1, store=store, name="ttl", mode="reject")(int)()
    assert 0 < raw.pttl(f"{store.prefix}:rl:ttl") <= 101


def test_wait_mode_waits_for_its_slot_on_the_policy_clock(store: RedisStore,
                                                          clock: FakeClock) -> None:
    limit = ml.RateLimit(10.0, burst=1, store=store, name="w", clock=clock)
    events: list[Any] = []
    limit.add_hook(events.append)
    call = limit(lambda: "ok")
    assert call() == "ok"
    before = clock.monotonic()
    assert call() == "ok"
    waited = [e.waited for e in events if isinstance(e, RateLimitWaited)]
    assert len(waited) == 1
    assert 0.05 < waited[0] <= 0.1
    assert clock.monotonic() - before == pytest.approx(waited[0])


def test_max_wait_rejects_without_taking_the_slot(store: RedisStore, raw: redis.Redis,
                                                  clock: FakeClock) -> None:
    limit = ml.RateLimit(1.0, burst=1, store=store, name="mw", max_wait=0.1, clock=clock)
    call = limit(lambda: 1)
    call()
    tat = raw.get(f"{store.prefix}:rl:mw")
    with pytest.raises(ml.RateLimitedError, match="max_wait"):
        call()
    assert raw.get(f"{store.prefix}:rl:mw") == tat
    assert clock.monotonic() == 0.0


def test_interrupted_wait_gives_the_slot_back(store: RedisStore, raw: redis.Redis) -> None:
    class Interrupting(FakeClock):
        def sleep(self, seconds: float) -> None:
            raise KeyboardInterrupt

    call = ml.RateLimit(1.0, burst=1, store=store, name="int", clock=Interrupting())(int)
    call()
    tat = raw.get(f"{store.prefix}:rl:int")
    with pytest.raises(KeyboardInterrupt):
        call()
    assert raw.get(f"{store.prefix}:rl:int") == tat


async def test_async_shares_the_quota(store: RedisStore, other_store: RedisStore) -> None:
    async def work() -> int:
        return 1

    a = ml.RateLimit(1.0, burst=2, store=store, name="aq", mode="reject")(work)
    b = ml.RateLimit(1.0, burst=2, store=other_store, name="aq", mode="reject")(work)
    assert await a() == 1
    assert await b() == 1
    with pytest.raises(ml.RateLimitedError):
        await b()
    await store.aclose()
    await other_store.aclose()


async def test_cancelled_wait_gives_the_slot_back(store: RedisStore, raw: redis.Redis) -> None:
    class Stuck(FakeClock):
        async def asleep(self, seconds: float) -> None:
            await asyncio.Event().wait()  # until cancelled

    async def work() -> int:
        return 1

    call = ml.RateLimit(1.0, burst=1, store=store, name="cancel", clock=Stuck())(work)
    await call()
    tat = raw.get(f"{store.prefix}:rl:cancel")
    task = asyncio.create_task(call())
    while raw.get(f"{store.prefix}:rl:cancel") == tat:  # noqa: ASYNC110 - polls Redis
        await asyncio.sleep(0.001)  # until the slot is reserved...
    task.cancel()  # ...and given back by a task of its own
    with pytest.raises(asyncio.CancelledError):
        await task
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    await asyncio.gather(*others)  # the release
    assert raw.get(f"{store.prefix}:rl:cancel") == tat
    await store.aclose()


# -- faults ------------------------------------------------------------------------------


def test_local_fallback_uses_the_in_process_quota(dead_url: str) -> None:
    store = RedisStore(dead_url)
    limit = ml.RateLimit(1.0, burst=2, store=store, name="f", mode="reject")
    events: list[Any] = []
    limit.add_hook(events.append)
    assert admitted(limit(lambda: 1), 5) == 2
    fallbacks = [e for e in events if isinstance(e, StoreFallback)]
    assert len(fallbacks) == 5
    assert {(e.policy, e.action, e.step) for e in fallbacks} == {("rate_limit", "local",
                                                                   "decide")}


def test_allow_fallback_admits_everything(dead_url: str) -> None:
    call = ml.RateLimit(1.0, burst=1, store=RedisStore(dead_url, on_error="allow"),
                        name="f", mode="reject")(lambda: 1)
    assert admitted(call, 5) == 5


def test_deny_fallback_rejects_with_retry_after(dead_url: str) -> None:
    store = RedisStore(dead_url, on_error="deny", retry_interval=2.5)
    limit = ml.RateLimit(100.0, store=store, name="f")
    events: list[Any] = []
    limit.add_hook(events.append)
    with pytest.raises(ml.RateLimitedError, match="unavailable") as info:
        limit(lambda: 1)()
    assert info.value.retry_after == 2.5
    assert any(isinstance(e, ml._events.CallRejected) and e.reason == "store_unavailable"
               for e in events)


async def test_async_fallbacks(dead_url: str) -> None:
    async def work() -> int:
        return 7

    local = ml.RateLimit(1.0, burst=1, store=RedisStore(dead_url), name="f",
                         mode="reject")(work)
    assert await local() == 7
    with pytest.raises(ml.RateLimitedError):
        await local()
    raising = ml.RateLimit(1.0, store=RedisStore(dead_url, on_error="raise"), name="f")(work)
    with pytest.raises(StoreUnavailableError):
        await raising()
    denying = ml.RateLimit(1.0, store=RedisStore(dead_url, on_error="deny"), name="f")(work)
    with pytest.raises(ml.RateLimitedError, match="unavailable"):
        await denying()


def test_bad_store_and_name() -> None:
    with pytest.raises(ml.ConfigError, match="RateLimit: store must be"):
        ml.RateLimit(1.0, store="redis://localhost")
    with pytest.raises(ml.ConfigError, match="RateLimit: name must be"):
        ml.RateLimit(1.0, store=RedisStore(), name="")


def test_in_memory_limiter_keeps_its_gate() -> None:
    # No store: the wrap-time choice leaves the in-memory handlers as they were.
    limit = ml.RateLimit(1.0)
    assert limit._store is None
    handler = limit.wrap(lambda ctx: 1)
    assert handler.__qualname__.startswith("LocalGcraCell.gate")
