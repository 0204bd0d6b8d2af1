from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import meshlite as ml
from meshlite.policies import _cache
from meshlite.policies._cache import (
    CacheHit,
    CacheMiss,
    CacheRefreshFailed,
    CacheStaleServed,
    _store,
)
from meshlite.testing import FakeClock


def wait_until(condition: Callable[[], bool]) -> None:
    """Poll a condition other threads make true (bounded, never a timing assertion)."""
    deadline = time.monotonic() + 10.0
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.001)


def waiting(cache: ml.Cache) -> int:
    """Callers waiting for a call in flight (sync and async)."""
    s = cache._store
    return sum(len(f.waiters) for f in (*s.flights.values(), *s.aflights.values()))


def in_flight(cache: ml.Cache) -> int:
    return len(cache._store.flights) + len(cache._store.aflights)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


# -- hits, misses, expiry --------------------------------------------------------------


def test_hit_miss_and_expiry(clock: FakeClock) -> None:
    calls: list[int] = []
    cache = ml.Cache(ttl=10.0, clock=clock)

    @cache
    def double(x: int) -> int:
        calls.append(x)
        return x * 2

    assert double(2) == 4
    assert double(2) == 4
    assert double(3) == 6
    assert calls == [2, 3]
    clock.advance(9.9)
    assert double(2) == 4
    assert calls == [2, 3]
    clock.advance(0.1)  # exactly ttl: expired, as in cachetools
    assert double(2) == 4
    assert calls == [2, 3, 2]
    assert (cache.hits, cache.misses, cache.stale) == (2, 3, 0)


async def test_async_hit_miss_and_expiry(clock: FakeClock) -> None:
    calls: list[int] = []

    @ml.Cache(ttl=5.0, clock=clock)
    async def double(x: int) -> int:
        calls.append(x)
        return x * 2

    assert [await double(1), await double(1)] == [2, 2]
    clock.advance(5.0)
    assert await double(1) == 2
    assert calls == [1, 1]


def test_keyword_arguments_in_any_order(clock: FakeClock) -> None:
    calls: list[tuple[int, int]] = []

    @ml.Cache(ttl=10.0, clock=clock)
    def add(a: int, b: int = 0) -> int:
        calls.append((a, b))
        return a + b

    assert add(a=1, b=2) == 3
    assert add(b=2, a=1) == 3
    assert len(calls) == 1
    assert add(1, b=2) == 3  # positional and keyword calls are different keys
    assert len(calls) == 2


def test_none_results_are_cached(clock: FakeClock) -> None:
    calls = 0

    @ml.Cache(ttl=10.0, clock=clock)
    def nothing() -> None:
        nonlocal calls
        calls += 1

    nothing()
    nothing()
    assert calls == 1


def test_least_recently_used_is_evicted(clock: FakeClock) -> None:
    calls: list[int] = []

    @ml.Cache(ttl=60.0, maxsize=2, clock=clock)
    def ident(x: int) -> int:
        calls.append(x)
        return x

    ident(1)
    ident(2)
    ident(1)  # a hit makes 1 the most recently used
    ident(3)  # evicts 2
    ident(1)
    ident(2)
    assert calls == [1, 2, 3, 2]


def test_without_cachetools_internals_the_public_read_path_is_used(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_store, "OrderedDict", dict)  # the fast reader's probe fails
    calls: list[int] = []
    cache = ml.Cache(ttl=10.0, maxsize=2, clock=clock)
    assert cache._store.reader()[0] == cache._store.peek

    @cache
    def ident(x: int) -> int:
        calls.append(x)
        return x

    ident(1)
    ident(1)
    ident(2)
    ident(1)
    ident(3)  # 2 was least recently used
    clock.advance(10.0)
    ident(1)
    assert calls == [1, 2, 3, 1]


# -- errors are not cached ----------------------------------------------------------


def test_errors_are_not_cached(clock: FakeClock) -> None:
    outcomes: list[Any] = [ConnectionError("down"), "up"]

    @ml.Cache(ttl=10.0, clock=clock)
    def flaky() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return str(outcome)

    with pytest.raises(ConnectionError):
        flaky()
    assert flaky() == "up"
    assert flaky() == "up"
    assert outcomes == []


async def test_async_errors_are_not_cached(clock: FakeClock) -> None:
    outcomes: list[Any] = [ConnectionError("down"), "up"]

    @ml.Cache(ttl=10.0, clock=clock)
    async def flaky() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return str(outcome)

    with pytest.raises(ConnectionError):
        await flaky()
    assert await flaky() == "up"
    assert outcomes == []


# -- single flight --------------------------------------------------------------------


def test_single_flight_threads() -> None:
    calls = 0
    release = threading.Event()
    cache = ml.Cache(ttl=60.0)

    @cache
    def load(x: int) -> int:
        nonlocal calls
        calls += 1
        release.wait(10.0)
        return x * 10

    barrier = threading.Barrier(8)
    results: list[int] = []

    def worker() -> None:
        barrier.wait()
        results.append(load(3))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    wait_until(lambda: waiting(cache) == 7)
    release.set()
    for t in threads:
        t.join()
    assert calls == 1
    assert results == [30] * 8
    assert in_flight(cache) == 0


def test_single_flight_threads_share_the_error() -> None:
    release = threading.Event()
    cache = ml.Cache(ttl=60.0)
    calls = 0

    @cache
    def load() -> int:
        nonlocal calls
        calls += 1
        release.wait(10.0)
        raise ConnectionError("down")

    errors: list[BaseException] = []

    def worker() -> None:
        try:
            load()
        except ConnectionError as error:
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    wait_until(lambda: waiting(cache) == 3)
    release.set()
    for t in threads:
        t.join()
    assert calls == 1
    assert len(errors) == 4
    assert all(e is errors[0] for e in errors)
    assert in_flight(cache) == 0


async def test_single_flight_tasks() -> None:
    calls = 0
    release = asyncio.Event()
    cache = ml.Cache(ttl=60.0)

    @cache
    async def load(x: int) -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return x + 1

    tasks = [asyncio.create_task(load(1)) for _ in range(100)]
    await settle()
    assert waiting(cache) == 99
    release.set()
    assert await asyncio.gather(*tasks) == [2] * 100
    assert calls == 1
    assert in_flight(cache) == 0


async def test_followers_get_the_leaders_error_and_it_is_not_cached() -> None:
    release = asyncio.Event()
    calls = 0

    @ml.Cache(ttl=60.0)
    async def load() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        if calls == 1:
            raise ConnectionError("down")
        return 7

    tasks = [asyncio.create_task(load()) for _ in range(5)]
    await settle()
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert calls == 1
    assert await load() == 7
    assert calls == 2


async def test_cancelled_leader_hands_over_to_a_follower() -> None:
    calls = 0
    release = asyncio.Event()
    cache = ml.Cache(ttl=60.0)

    @cache
    async def load() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        return "value"

    tasks = [asyncio.create_task(load()) for _ in range(5)]
    await settle()
    assert waiting(cache) == 4
    tasks[0].cancel()
    await settle()
    assert calls == 2  # a follower took the lead
    assert waiting(cache) == 3
    release.set()
    assert await asyncio.gather(*tasks[1:]) == ["value"] * 4
    with pytest.raises(asyncio.CancelledError):
        await tasks[0]
    assert in_flight(cache) == 0


async def test_cancelled_follower_leaves_the_others_alone() -> None:
    release = asyncio.Event()
    cache = ml.Cache(ttl=60.0)

    @cache
    async def load() -> str:
        await release.wait()
        return "value"

    tasks = [asyncio.create_task(load()) for _ in range(3)]
    await settle()
    tasks[1].cancel()
    await settle()
    release.set()
    assert await tasks[0] == "value"
    assert await tasks[2] == "value"
    assert tasks[1].cancelled()
    assert in_flight(cache) == 0


def test_a_leader_out_of_its_callers_time_hands_over() -> None:
    # The leader's caller left it 0.05 s (an outer deadline); its answer comes later,
    # so the Timeout inside raises TimeoutExceeded. That says the leader's time ran
    # out, not that the call fails: a follower with time of its own calls again
    # instead of being handed an error about someone else's deadline.
    calls: list[int] = []
    release = threading.Event()
    cache = ml.Cache(ttl=60.0)
    cached = ml.Pipeline(cache, ml.Timeout(5.0))
    hurried = ml.Pipeline(ml.Timeout(0.05))

    def load() -> str:
        calls.append(1)
        if len(calls) == 1:
            release.wait(10.0)
        return "value"

    outcomes: dict[str, Any] = {}

    def lead() -> None:
        try:
            hurried.call(lambda: cached.call(load))
        except ml.TimeoutExceeded as error:
            outcomes["leader"] = error

    def follow() -> None:
        outcomes["follower"] = cached.call(load)

    leader = threading.Thread(target=lead)
    leader.start()
    wait_until(lambda: len(calls) == 1)
    follower = threading.Thread(target=follow)
    follower.start()
    wait_until(lambda: waiting(cache) == 1)
    time.sleep(0.1)  # past the leader's deadline
    release.set()
    leader.join(10.0)
    follower.join(10.0)
    assert isinstance(outcomes["leader"], ml.TimeoutExceeded)
    assert outcomes["follower"] == "value"
    assert len(calls) == 2
    assert in_flight(cache) == 0


class Interrupted(BaseException):
    """Stands for KeyboardInterrupt in a worker thread."""


def test_interrupted_sync_leader_hands_over() -> None:
    calls = 0
    release = threading.Event()
    cache = ml.Cache(ttl=60.0)

    @cache
    def load() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            release.wait(10.0)
            raise Interrupted
        return "value"

    outcomes: list[object] = []

    def worker() -> None:
        try:
            outcomes.append(load())
        except Interrupted as error:
            outcomes.append(error)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    wait_until(lambda: waiting(cache) == 2)
    release.set()
    for t in threads:
        t.join()
    assert calls == 2
    assert sorted(map(str, outcomes)) == ["", "value", "value"]
    assert in_flight(cache) == 0


class DeadlineIn(ml.Policy):
    """A test stand-in for an outer Timeout: gives sync calls a deadline."""

    kind = "deadline"

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def wrap(self, call_next: ml.Handler) -> ml.Handler:
        def handle(ctx: ml.CallContext) -> Any:
            ctx.deadline = ctx.clock.monotonic() + self.seconds
            return call_next(ctx)

        return handle

    def awrap(self, call_next: ml.AsyncHandler) -> ml.AsyncHandler:
        return call_next


def test_sync_follower_waits_no_longer_than_its_deadline() -> None:
    release = threading.Event()
    cache = ml.Cache(ttl=60.0)

    def load() -> str:
        release.wait(10.0)
        return "value"

    leader = threading.Thread(target=ml.Pipeline(cache).call, args=(load,))
    leader.start()
    wait_until(lambda: in_flight(cache) == 1)
    with pytest.raises(ml.TimeoutExceeded, match="waited for the same call") as info:
        ml.Pipeline(DeadlineIn(0.05), cache).call(load)
    assert info.value.policy == "cache"
    release.set()
    leader.join()
    assert ml.Pipeline(cache).call(load) == "value"


def test_sync_follower_with_a_deadline_longer_than_a_lock_can_time_out_waits() -> None:
    # threading.Lock.acquire refuses timeouts above threading.TIMEOUT_MAX with
    # OverflowError; a follower with such a (valid) deadline must simply wait.
    release = threading.Event()
    cache = ml.Cache(ttl=60.0)
    calls: list[int] = []

    def load() -> str:
        calls.append(1)
        release.wait(10.0)
        return "value"

    leader = threading.Thread(target=ml.Pipeline(cache).call, args=(load,))
    leader.start()
    wait_until(lambda: in_flight(cache) == 1)
    results: list[str] = []
    pipeline = ml.Pipeline(DeadlineIn(threading.TIMEOUT_MAX * 10), cache)
    follower = threading.Thread(target=lambda: results.append(pipeline.call(load)))
    follower.start()
    wait_until(lambda: waiting(cache) == 1)
    release.set()
    leader.join()
    follower.join()
    assert results == ["value"]
    assert calls == [1]


def test_async_callers_of_different_event_loops_do_not_share_a_flight() -> None:
    calls = 0
    second_ran = threading.Event()
    cache = ml.Cache(ttl=60.0)

    @cache
    async def load() -> int:
        nonlocal calls
        calls += 1
        mine = calls
        if mine == 1:
            # Only a second, independent call (in the other loop) lets this one end.
            await asyncio.to_thread(second_ran.wait, 10.0)
        else:
            second_ran.set()
        return mine

    first = threading.Thread(target=asyncio.run, args=(load(),))
    first.start()
    wait_until(lambda: in_flight(cache) == 1)
    # This loop cannot await the other loop's futures: it makes the call itself.
    assert asyncio.run(load()) == 2
    first.join()
    assert calls == 2
    assert in_flight(cache) == 0


# -- stale while revalidate ------------------------------------------------------------


async def test_stale_served_while_one_background_refresh_runs(clock: FakeClock) -> None:
    version = 0
    gate = asyncio.Event()
    cache = ml.Cache(ttl=10.0, stale_ttl=100.0, clock=clock)

    @cache
    async def load(x: int) -> int:
        nonlocal version
        version += 1
        if version > 1:
            await gate.wait()
        return version

    assert await load(1) == 1
    clock.advance(15.0)
    assert [await load(1) for _ in range(5)] == [1] * 5
    await settle()
    assert version == 2  # one refresh, however many stale answers
    assert cache.stale == 5
    gate.set()
    await asyncio.gather(*cache._tasks)
    assert await load(1) == 2
    assert cache.hits == 1
    assert in_flight(cache) == 0


async def test_refresh_gets_a_context_of_its_own(clock: FakeClock) -> None:
    seen: list[ml.CallContext | None] = []
    cache = ml.Cache(ttl=1.0, stale_ttl=10.0, clock=clock)

    @cache
    async def load() -> int:
        seen.append(ml.current_context())
        return len(seen)

    await load()
    clock.advance(2.0)
    await load()
    await asyncio.gather(*cache._tasks)
    assert seen[1] is not None
    assert seen[1] is not seen[0]
    assert seen[1].deadline is None


def test_sync_stale_refreshed_inline_by_first_caller(clock: FakeClock) -> None:
    calls = 0
    entered, gate = threading.Event(), threading.Event()
    cache = ml.Cache(ttl=10.0, stale_ttl=100.0, clock=clock)

    @cache
    def load() -> int:
        nonlocal calls
        calls += 1
        if calls > 1:
            entered.set()
            gate.wait(10.0)
        return calls

    assert load() == 1
    clock.advance(15.0)
    refreshed: list[int] = []
    refresher = threading.Thread(target=lambda: refreshed.append(load()))
    refresher.start()
    entered.wait(10.0)
    assert [load(), load(), load()] == [1, 1, 1]  # stale, at once
    gate.set()
    refresher.join()
    assert refreshed == [2]
    assert load() == 2
    assert calls == 2
    assert cache.stale == 3


async def test_failed_refresh_keeps_stale_until_it_expires(clock: FakeClock) -> None:
    events: list[ml.Event] = []
    failing = False
    cache = ml.Cache(ttl=10.0, stale_ttl=20.0, clock=clock)
    cache.add_hook(events.append)

    @cache
    async def load() -> str:
        if failing:
            raise ConnectionError("down")
        return "v1"

    assert await load() == "v1"
    clock.advance(15.0)
    failing = True
    assert await load() == "v1"
    await asyncio.gather(*cache._tasks)
    assert await load() == "v1"
    await asyncio.gather(*cache._tasks)
    failed = [e for e in events if isinstance(e, CacheRefreshFailed)]
    assert len(failed) == 2
    assert isinstance(failed[0].error, ConnectionError)
    clock.advance(15.0)  # past ttl + stale_ttl
    with pytest.raises(ConnectionError):
        await load()


def test_sync_failed_refresh_serves_stale(clock: FakeClock) -> None:
    events: list[ml.Event] = []
    failing = False
    cache = ml.Cache(ttl=10.0, stale_ttl=20.0, clock=clock)
    cache.add_hook(events.append)

    @cache
    def load() -> str:
        if failing:
            raise ConnectionError("down")
        return "v1"

    load()
    clock.advance(15.0)
    failing = True
    assert load() == "v1"
    assert [type(e) for e in events][-2:] == [CacheRefreshFailed, CacheStaleServed]
    clock.advance(15.0)
    with pytest.raises(ConnectionError):
        load()


async def test_refresh_cancelled_before_it_ran_frees_the_key(clock: FakeClock) -> None:
    calls = 0
    cache = ml.Cache(ttl=1.0, stale_ttl=10.0, clock=clock)

    @cache
    async def load() -> int:
        nonlocal calls
        calls += 1
        return calls

    await load()
    clock.advance(2.0)
    await load()
    (task,) = cache._tasks
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert in_flight(cache) == 0
    assert calls == 1
    await load()  # stale again: a new refresh starts
    await asyncio.gather(*cache._tasks)
    assert calls == 2


# -- invalidate, clear, warm -----------------------------------------------------------


def test_invalidate_and_clear(clock: FakeClock) -> None:
    calls: list[int] = []
    cache = ml.Cache(ttl=60.0, clock=clock)

    @cache
    def ident(x: int, scale: int = 1) -> int:
        calls.append(x)
        return x * scale

    ident(1)
    ident(2)
    ident(3, scale=2)
    assert cache.size == 3
    assert cache.invalidate(1) == 1
    assert cache.invalidate(1) == 0
    assert cache.invalidate(3, scale=2) == 1
    ident(1)
    ident(2)
    ident(3, scale=2)
    assert calls == [1, 2, 3, 1, 3]
    cache.clear()
    assert cache.size == 0
    ident(2)
    assert calls[-1] == 2


async def test_invalidate_during_a_call_keeps_its_result_out(clock: FakeClock) -> None:
    release = asyncio.Event()
    calls = 0
    cache = ml.Cache(ttl=60.0, clock=clock)

    @cache
    async def load(x: int) -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return calls

    task = asyncio.create_task(load(1))
    await settle()
    cache.invalidate(1)  # the value being computed may be out of date already
    release.set()
    assert await task == 1
    assert await load(1) == 2


def test_invalidate_during_the_first_call_of_a_function_keeps_its_result_out(
        clock: FakeClock) -> None:
    # Inside a pipeline the Cache learns its functions from their stored entries: a
    # first call still running (or one whose entries went) was not marked, and its
    # result, computed before the invalidation, was stored after it.
    cache = ml.Cache(ttl=60.0, clock=clock)
    running, release = threading.Event(), threading.Event()
    calls = 0

    @ml.Pipeline(cache)
    def load(x: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            running.set()
            assert release.wait(30)
        return calls

    results: list[int] = []
    first = threading.Thread(target=lambda: results.append(load(1)))
    first.start()
    assert running.wait(30)
    cache.invalidate(1)  # another thread: the data changed while the call ran
    release.set()
    first.join(30)
    assert results == [1]
    assert load(1) == 2  # was 1: the out-of-date result had been stored


def test_warm_recomputes_for_the_decorated_function(clock: FakeClock) -> None:
    version = 0
    cache = ml.Cache(ttl=60.0, clock=clock)

    @cache
    def load(x: int) -> int:
        nonlocal version
        version += 1
        return version * 100 + x

    assert cache.warm(1) == 101  # before any call
    assert load(1) == 101
    assert cache.warm(1) == 201  # even when cached
    assert load(1) == 201


async def test_warm_async(clock: FakeClock) -> None:
    cache = ml.Cache(ttl=60.0, clock=clock)
    calls = 0

    @cache
    async def load(x: int) -> int:
        nonlocal calls
        calls += 1
        return x

    assert await cache.warm(5) == 5
    assert await load(5) == 5
    assert calls == 1


def test_warm_in_a_pipeline_needs_one_known_function(clock: FakeClock) -> None:
    cache = ml.Cache(ttl=60.0, clock=clock)
    pipeline = ml.Pipeline(cache)
    with pytest.raises(ml.ConfigError, match="served no function yet"):
        cache.warm(1)

    def first(x: int) -> str:
        return f"first {x}"

    def second(x: int) -> str:
        return f"second {x}"

    pipeline.call(first, 1)
    assert cache.warm(2) == "first 2"
    assert pipeline.call(first, 2) == "first 2"
    pipeline.call(second, 1)
    with pytest.raises(ml.ConfigError, match="several functions"):
        cache.warm(1)


# -- keys -------------------------------------------------------------------------------


def test_unhashable_arguments_explain_key(clock: FakeClock) -> None:
    @ml.Cache(ttl=10.0, clock=clock)
    def get_user(ids: list[int]) -> int:
        return len(ids)

    with pytest.raises(TypeError) as info:
        get_user([1, 2])
    assert str(info.value) == (
        "Cache: the arguments of 'test_unhashable_arguments_explain_key.<locals>.get_user' "
        "are not hashable (list); pass key= to build a cache key, "
        "e.g. key=lambda items: tuple(items)"
    )


async def test_unhashable_nested_argument_named(clock: FakeClock) -> None:
    @ml.Cache(ttl=10.0, stale_ttl=1.0, clock=clock)
    async def load(x: object) -> int:
        return 1

    with pytest.raises(TypeError, match=r"not hashable \(dict\); pass key="):
        await load((1, {"a": 1}))


def test_custom_key(clock: FakeClock) -> None:
    calls: list[list[int]] = []

    @ml.Cache(ttl=10.0, key=lambda items, verbose=False: tuple(items), clock=clock)
    def total(items: list[int], verbose: bool = False) -> int:
        calls.append(items)
        return sum(items)

    assert total([1, 2]) == 3
    assert total([1, 2], verbose=True) == 3  # the key ignores verbose
    assert len(calls) == 1


def test_custom_key_must_return_something_hashable(clock: FakeClock) -> None:
    @ml.Cache(ttl=10.0, key=lambda items: list(items), clock=clock)
    def total(items: list[int]) -> int:
        return sum(items)

    with pytest.raises(TypeError, match=r"key= returned an unhashable value .* \(list\)"):
        total([1])


def test_invalidate_with_unhashable_arguments(clock: FakeClock) -> None:
    cache = ml.Cache(ttl=10.0, clock=clock)
    with pytest.raises(TypeError, match=r"arguments of invalidate\(\) are not hashable"):
        cache.invalidate([1])


def test_two_functions_sharing_one_cache_do_not_collide(clock: FakeClock) -> None:
    cache = ml.Cache(ttl=60.0, clock=clock)
    pipeline = ml.Pipeline(cache)

    @pipeline
    def name(uid: int) -> str:
        return f"name-{uid}"

    @pipeline
    def email(uid: int) -> str:
        return f"{uid}@example.com"

    assert (name(1), email(1)) == ("name-1", "1@example.com")
    assert (name(1), email(1)) == ("name-1", "1@example.com")
    assert cache.hits == 2
    assert cache.invalidate(1) == 2


# -- events, options --------------------------------------------------------------------


def test_events(clock: FakeClock) -> None:
    events: list[ml.Event] = []
    cache = ml.Cache(ttl=10.0, stale_ttl=10.0, clock=clock)
    cache.add_hook(events.append)
    pipeline = ml.Pipeline(cache, service="users")

    @pipeline
    def load() -> int:
        return 1

    load()
    load()
    assert [type(e) for e in events] == [CacheMiss, CacheHit]
    assert events[1].service == "users"
    assert events[1].policy == "cache"
    assert events[1].operation is not None
    assert events[1].operation.endswith("load")


def test_process_wide_hooks_see_hits(clock: FakeClock) -> None:
    events: list[ml.Event] = []
    cache = ml.Cache(ttl=10.0, clock=clock)

    @cache
    def load() -> int:
        return 1

    load()
    remove = ml.add_hook(events.append)
    try:
        load()
    finally:
        remove()
    load()
    assert [type(e) for e in events] == [CacheHit]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ttl": 0}, "ttl"),
        ({"ttl": -1.0}, "ttl"),
        ({"ttl": "30"}, "ttl"),
        ({"ttl": 1.0, "maxsize": 0}, "maxsize"),
        ({"ttl": 1.0, "maxsize": 2.5}, "maxsize"),
        ({"ttl": 1.0, "stale_ttl": -1}, "stale_ttl"),
        ({"ttl": 1.0, "key": "uid"}, "key"),
        ({"ttl": 1.0, "store": object()}, "store"),
        ({"ttl": 1.0, "clock": 3}, "clock"),
    ],
)
def test_bad_options(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ml.ConfigError, match=f"Cache: {field} must be"):
        ml.Cache(**kwargs)


def test_store_message_points_to_meshlite_state() -> None:
    with pytest.raises(ml.ConfigError, match=r"meshlite\.state"):
        ml.Cache(ttl=1.0, store="redis://localhost")


def test_exports_and_repr() -> None:
    assert _cache.Cache is ml.Cache
    assert repr(ml.Cache(ttl=30.0, stale_ttl=5.0)) == "Cache(ttl=30.0, maxsize=1024, stale_ttl=5.0)"
