"""CircuitBreaker on a RedisStore: one state machine for every process."""

from __future__ import annotations

import asyncio
import random
import threading
from typing import Any

import pytest
import redis

import meshlite as ml
from meshlite.state import RedisStore, StoreFallback, StoreUnavailableError
from meshlite.testing import FakeClock


class Boom(Exception):
    pass


def fail() -> None:
    raise Boom


def breaker(store: RedisStore, **options: Any) -> ml.CircuitBreaker:
    settings: dict[str, Any] = {"name": "users", "window": 4, "min_calls": 2,
                                "open_seconds": 60.0, "half_open_calls": 2}
    settings.update(options)
    return ml.CircuitBreaker(store=store, **settings)


def open_period_over(raw: redis.Redis, store: RedisStore, name: str = "users") -> None:
    """End the open period now, as if ``open_seconds`` had passed (Redis's clock decides)."""
    raw.hset(f"{store.prefix}:cb:{{{name}}}", "ou", 0)


def test_opened_by_one_process_is_open_for_all(store: RedisStore,
                                               other_store: RedisStore) -> None:
    a, b = breaker(store), breaker(other_store)
    events: list[Any] = []
    a.add_hook(events.append)
    for _ in range(2):
        with pytest.raises(Boom):
            a(fail)()
    with pytest.raises(ml.CircuitOpenError, match="2 of 2 calls failed") as info:
        b(lambda: 1)()
    assert 0 < (info.value.retry_after or 0) <= 60.0
    assert b.state == "open"
    m = b.metrics()
    assert (m.calls, m.failures, m.reason) == (2, 2, "2 of 2 calls failed")
    assert [type(e) for e in events if isinstance(e, ml._events.CircuitStateChanged)] == [
        ml._events.CircuitOpened]


def test_half_open_admits_exactly_n_across_processes(store: RedisStore,
                                                     other_store: RedisStore,
                                                     raw: redis.Redis) -> None:
    a, b = breaker(store), breaker(other_store)
    for _ in range(2):
        with pytest.raises(Boom):
            a(fail)()
    open_period_over(raw, store)
    gate = threading.Event()
    admitted: list[str] = []
    rejected: list[str] = []

    def trial(cb: ml.CircuitBreaker, who: str) -> None:
        try:
            cb(lambda: gate.wait(5))()
            admitted.append(who)
        except ml.CircuitOpenError as error:
            rejected.append(str(error))

    threads = [threading.Thread(target=trial, args=(cb, who))
               for cb, who in ((a, "a"), (b, "b")) * 3]
    for t in threads:
        t.start()
    for _ in range(5000):  # the four calls over the two trials are rejected at once
        if len(rejected) == 4:
            break
        threading.Event().wait(0.001)
    gate.set()
    for t in threads:
        t.join()
    assert len(admitted) == 2
    assert all("trial calls are taken" in message for message in rejected)
    assert a.state == b.state == "closed"  # both trials succeeded


def test_failed_trial_reopens_for_all(store: RedisStore, other_store: RedisStore,
                                      raw: redis.Redis) -> None:
    a, b = breaker(store, half_open_calls=1), breaker(other_store, half_open_calls=1)
    for _ in range(2):
        with pytest.raises(Boom):
            a(fail)()
    open_period_over(raw, store)
    with pytest.raises(Boom):
        b(fail)()
    assert a.state == "open"
    assert a.metrics().reason == "1 of 1 trial calls failed"


def test_manual_controls_reach_every_process(store: RedisStore,
                                             other_store: RedisStore) -> None:
    a, b = breaker(store), breaker(other_store)
    a.force_open()
    assert b.state == "forced_open"
    with pytest.raises(ml.CircuitOpenError, match="forced open"):
        b(lambda: 1)()
    b.reset()
    assert a.state == "closed"
    assert a(lambda: 1)() == 1
    b.disable()
    assert a.state == "disabled"
    for _ in range(5):
        with pytest.raises(Boom):
            a(fail)()
    assert b.state == "disabled"
    assert b.metrics().calls == 0


def test_inner_rejections_give_the_trial_back(store: RedisStore, raw: redis.Redis) -> None:
    a = breaker(store, half_open_calls=1)
    for _ in range(2):
        with pytest.raises(Boom):
            a(fail)()
    open_period_over(raw, store)

    def rejected() -> None:
        raise ml.RateLimitedError("inner limit")

    with pytest.raises(ml.RateLimitedError):
        a(rejected)()
    assert a.metrics().trial_calls == 0
    assert a(lambda: 1)() == 1  # the trial slot was free again
    assert a.state == "closed"


def test_same_decisions_as_the_in_memory_breaker(store: RedisStore) -> None:
    # The Lua state machine against the Python one, call by call, on a count window
    # (a time window runs on Redis's clock, which a fake clock cannot drive).
    clock = FakeClock()
    options: dict[str, Any] = {"window": 10, "min_calls": 5,
                               "failure_rate": 0.5, "slow_call_seconds": 1.0,
                               "slow_call_rate": 0.6, "open_seconds": 600.0,
                               "half_open_calls": 2, "name": "model"}
    local = ml.CircuitBreaker(clock=clock, **options)
    shared = ml.CircuitBreaker(clock=clock, store=store, **options)
    rng = random.Random(7)
    for _ in range(200):
        failed, slow = rng.random() < 0.35, rng.random() < 0.35

        def call(failed: bool = failed, slow: bool = slow) -> None:
            if slow:
                clock.advance(2.0)
            if failed:
                raise Boom

        outcomes = []
        for cb in (local, shared):
            try:
                cb(call)()
                outcomes.append("ok")
            except Boom:
                outcomes.append("failed")
            except ml.CircuitOpenError:
                outcomes.append("rejected")
        assert outcomes[0] == outcomes[1]
        lm, sm = local.metrics(), shared.metrics()
        assert (lm.state, lm.calls, lm.failures, lm.slow_calls, lm.reason) == (
            sm.state, sm.calls, sm.failures, sm.slow_calls, sm.reason)
        if lm.state == "open":
            local.reset()
            shared.reset()


def test_time_window_counts_and_forgets_on_redis_time(store: RedisStore,
                                                      raw: redis.Redis) -> None:
    cb = breaker(store, window=60, window_type="time", min_calls=3, failure_rate=1.0)
    for _ in range(2):
        with pytest.raises(Boom):
            cb(fail)()
    assert cb(lambda: 1)() == 1
    assert (cb.metrics().calls, cb.metrics().failures) == (3, 2)
    key = f"{store.prefix}:cb:{{users}}"
    raw.hset(key, "hd", int(raw.hget(key, "hd") or 0) - 100)  # as if 100 s had passed
    assert (cb.metrics().calls, cb.metrics().failures) == (0, 0)
    with pytest.raises(Boom):
        cb(fail)()
    assert cb.state == "closed"  # one call: below min_calls


def test_slow_calls_open_it(store: RedisStore, clock: FakeClock) -> None:
    cb = breaker(store, slow_call_seconds=1.0, slow_call_rate=1.0, clock=clock)

    def slow() -> int:
        clock.advance(1.5)
        return 1

    assert cb(slow)() == 1
    assert cb(slow)() == 1
    assert cb.state == "open"
    assert "2 of 2 calls were slow (>= 1 s)" in cb.metrics().reason


async def test_async_shared_breaker(store: RedisStore, other_store: RedisStore) -> None:
    async def afail() -> None:
        raise Boom

    async def ok() -> int:
        return 1

    a, b = breaker(store), breaker(other_store)
    for _ in range(2):
        with pytest.raises(Boom):
            await a(afail)()
    with pytest.raises(ml.CircuitOpenError):
        await b(ok)()
    await store.aclose()
    await other_store.aclose()


async def test_cancelled_trial_gives_its_permit_back(store: RedisStore,
                                                     raw: redis.Redis) -> None:
    a = breaker(store, half_open_calls=1)
    for _ in range(2):
        with pytest.raises(Boom):
            a(fail)()
    open_period_over(raw, store)
    started = asyncio.Event()

    async def hangs() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(a(hangs)())
    await started.wait()
    assert a.metrics().trial_calls == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    await asyncio.gather(*others)
    assert a.metrics().trial_calls == 0
    await store.aclose()


async def test_calls_an_outer_timeout_cuts_open_the_shared_circuit(
        store: RedisStore, other_store: RedisStore, raw: redis.Redis) -> None:
    # A hung service behind the recommended order (Timeout outside the breaker):
    # the cut calls are failures in Redis, so every process stops calling it.
    a = breaker(store, failure_on=TimeoutError, half_open_calls=1)
    p = ml.Pipeline(ml.Timeout(0.05), a)

    async def hangs() -> None:
        await asyncio.Event().wait()

    for _ in range(2):
        with pytest.raises(ml.TimeoutExceeded):
            await p.acall(hangs)
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    await asyncio.gather(*others)  # the outcomes are recorded in the background
    assert raw.hget(f"{store.prefix}:cb:{{users}}", "st") == b"open"
    with pytest.raises(ml.CircuitOpenError, match="2 of 2 calls failed"):
        await breaker(other_store)(asyncio.sleep)(0)
    # a trial cut by the deadline opens it again, and gives no permit back twice
    open_period_over(raw, store)
    with pytest.raises(ml.TimeoutExceeded):
        await p.acall(hangs)
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    await asyncio.gather(*others)
    assert (a.state, a.metrics().trial_calls) == ("open", 0)
    await store.aclose()
    await other_store.aclose()


def test_trials_lost_with_their_process_open_the_circuit_again(
        store: RedisStore, other_store: RedisStore, raw: redis.Redis) -> None:
    # A process took the one trial permit and died before reporting (killed, or its
    # outcome could not reach Redis): without a bound, every process would refuse
    # every call, half-open with all trials taken, until the state expired (a day).
    a, b = breaker(store, half_open_calls=1), breaker(other_store, half_open_calls=1)
    for _ in range(2):
        with pytest.raises(Boom):
            a(fail)()
    open_period_over(raw, store)
    shared = b._shared
    assert shared is not None
    assert shared.acquire().permit is not None  # b's trial, never reported
    with pytest.raises(ml.CircuitOpenError, match="trial calls are taken"):
        a(lambda: 1)()
    open_period_over(raw, store)  # the trial has been out for a whole open period
    with pytest.raises(ml.CircuitOpenError,
                       match=r"open after 1 of 1 trial calls did not finish within 60 s"):
        a(lambda: 1)()
    assert a.state == "open"
    open_period_over(raw, store)
    assert b(lambda: 1)() == 1  # a fresh trial (a trusts its refusal a while): it closes
    assert a.state == b.state == "closed"


# -- faults -----------------------------------------------------------------------------


def test_local_fallback_uses_the_in_process_breaker(dead_url: str) -> None:
    cb = breaker(RedisStore(dead_url))
    events: list[Any] = []
    cb.add_hook(events.append)
    for _ in range(2):
        with pytest.raises(Boom):
            cb(fail)()
    with pytest.raises(ml.CircuitOpenError):
        cb(lambda: 1)()
    assert cb.state == "open"  # read from the local state while the store is down
    assert {e.action for e in events if isinstance(e, StoreFallback)} == {"local"}


def test_allow_deny_and_raise_fallbacks(dead_url: str) -> None:
    allow = breaker(RedisStore(dead_url, on_error="allow"))
    for _ in range(4):
        with pytest.raises(Boom):
            allow(fail)()
    assert allow(lambda: 1)() == 1  # nothing recorded, nothing opened
    deny = breaker(RedisStore(dead_url, on_error="deny", retry_interval=3.0))
    with pytest.raises(ml.CircuitOpenError, match="unavailable") as info:
        deny(lambda: 1)()
    assert info.value.retry_after == 3.0
    raising = breaker(RedisStore(dead_url, on_error="raise"))
    with pytest.raises(StoreUnavailableError):
        raising(lambda: 1)()
    with pytest.raises(StoreUnavailableError):
        raising.force_open()
    assert raising._core.state() == "forced_open"  # the local state follows anyway


async def test_async_fallbacks(dead_url: str) -> None:
    async def ok() -> int:
        return 1

    assert await breaker(RedisStore(dead_url))(ok)() == 1
    assert await breaker(RedisStore(dead_url, on_error="allow"))(ok)() == 1
    with pytest.raises(ml.CircuitOpenError):
        await breaker(RedisStore(dead_url, on_error="deny"))(ok)()


def test_name_is_required_with_a_store() -> None:
    with pytest.raises(ml.ConfigError, match=r"^CircuitBreaker: name must be set when store"):
        ml.CircuitBreaker(store=RedisStore())
    with pytest.raises(ml.ConfigError, match=r"^CircuitBreaker: store must be"):
        ml.CircuitBreaker(name="x", store=object())


def test_a_raising_failure_on_gives_the_shared_trial_slot_back(
        store: RedisStore, raw: redis.Redis) -> None:
    # The predicate raised before the outcome was recorded: the shared trial slot
    # stayed taken (until its lease ran out), refusing the other processes too.
    def server_error(error: Any) -> bool:
        return bool(error.status >= 500)  # AttributeError for a Boom

    class Status(Exception):
        status = 503

    def http() -> None:
        raise Status

    b = breaker(store, half_open_calls=1, failure_on=server_error)
    for _ in range(2):
        with pytest.raises(Status):
            b(http)()
    open_period_over(raw, store)
    with pytest.raises(AttributeError, match="status"):
        b(fail)()
    assert b(lambda: "ok")() == "ok"  # the slot is free: this call is the trial

    async def afail() -> None:
        raise Boom

    async def aok() -> str:
        return "ok"

    async def run() -> str:
        for _ in range(2):
            with pytest.raises(Status):
                await b(_async(http))()
        open_period_over(raw, store)
        with pytest.raises(AttributeError, match="status"):
            await b(afail)()
        return await b(aok)()

    assert asyncio.run(run()) == "ok"


def _async(fn: Any) -> Any:
    async def call() -> Any:
        return fn()
    return call
