"""Cache on a RedisStore: entries, TTL and invalidation shared by every process."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest
import redis
from redis_server import RedisServer

import meshlite as ml
from meshlite.policies._cache import CacheHit, CacheMiss
from meshlite.state import RedisStore, StoreFallback, StoreUnavailableError


class Counter:
    """A service whose calls are counted; returns ``[x, call number]``."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, x: Any) -> list[Any]:
        self.calls += 1
        return [x, self.calls]


def make(store: RedisStore, fn: Any, **options: Any) -> Any:
    options.setdefault("ttl", 30.0)
    return ml.Cache(store=store, **options)(fn)


def lookup(x: int) -> list[int]:
    """A module-level function: its shared key is ``<module>.lookup``."""
    lookup.calls += 1  # type: ignore[attr-defined]
    return [x, lookup.calls]  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _reset_lookup() -> None:
    lookup.calls = 0  # type: ignore[attr-defined]


def test_an_entry_stored_by_one_process_answers_another(store: RedisStore,
                                                        other_store: RedisStore) -> None:
    a, b = make(store, lookup), make(other_store, lookup)
    assert a(1) == [1, 1]
    assert b(1) == [1, 1]
    assert lookup.calls == 1  # type: ignore[attr-defined]


def entry_key(store: RedisStore, raw: redis.Redis) -> bytes:
    """The one entry of ``lookup`` in the default namespace (its argument digest is
    in ``test_redis_cache_keys.py``)."""
    (key,) = raw.keys(f"{store.prefix}:cache:default:e:{lookup.__module__}.lookup:*")
    return bytes(key)


def test_entries_are_json_under_the_function_name(store: RedisStore, raw: redis.Redis) -> None:
    make(store, lookup)(5, )
    key = entry_key(store, raw)
    assert raw.get(key) == b"[5,1]"
    assert 0 < raw.pttl(key) <= 30_000  # Redis keeps the TTL


def test_keyword_arguments_and_key_function(store: RedisStore) -> None:
    service = Counter()
    call = make(store, service)
    assert call(1) == call(1)
    assert call(x=1) == call(x=1)
    assert service.calls == 2  # f(1) and f(x=1) are different keys
    keyed = make(store, Counter(), key=lambda item: item["id"], name="keyed")
    assert keyed({"id": 3, "noise": 1}) == keyed({"id": 3, "noise": 2})


def test_arguments_that_are_not_json_need_a_key(store: RedisStore) -> None:
    call = make(store, Counter())
    with pytest.raises(TypeError, match=r"shared cache key.*pass key="):
        call(object())


def test_two_functions_of_one_name_are_refused_not_answered_with_each_other(
        store: RedisStore) -> None:
    # Entries are keyed by module.qualname: closures one factory made over other
    # values would read each other's entries, as no in-memory cache would.
    cache = ml.Cache(ttl=30.0, store=store)

    def make(n: int) -> Any:
        @cache
        def add(x: int) -> int:
            return x + n
        return add

    add1, add100, another1 = make(1), make(100), make(1)
    assert add1(5) == 6
    with pytest.raises(TypeError, match=r"make.<locals>.add' names two different functions"):
        add100(5)
    assert another1(5) == 6  # the same definition over the same value is that function
    pipeline = ml.Pipeline(ml.Cache(ttl=30.0, store=store, name="lambdas"))
    for uid in (1, 2):  # a lambda made in a loop closes over the loop's variable
        if uid == 1:
            assert pipeline.call(lambda: [uid]) == [1]  # noqa: B023 (the point)
        else:
            with pytest.raises(TypeError, match=r"pipeline.call\(fetch, uid\)"):
                pipeline.call(lambda: [uid])  # noqa: B023


def test_a_lambda_made_anew_for_each_call_is_one_function(store: RedisStore) -> None:
    pipeline = ml.Pipeline(ml.Cache(ttl=30.0, store=store))
    assert [pipeline.call(lambda: lookup(7)) for _ in range(3)] == [[7, 1]] * 3
    assert lookup.calls == 1  # type: ignore[attr-defined]


def test_a_closure_keeping_its_own_state_stays_one_function(store: RedisStore) -> None:
    calls = 0

    @ml.Cache(ttl=30.0, store=store)
    def count(x: int) -> int:
        nonlocal calls  # its cell changes with each miss: still the same function
        calls += 1
        return calls

    assert [count(1), count(2), count(1)] == [1, 2, 1]


def test_long_keys_are_hashed(store: RedisStore, raw: redis.Redis) -> None:
    call = make(store, lookup)
    call("x" * 500)
    call("x" * 499)
    keys = raw.keys(f"{store.prefix}:cache:default:e:*")
    assert len(keys) == 2
    assert all(len(key) < 200 for key in keys)


def test_invalidate_is_seen_by_every_process(store: RedisStore, other_store: RedisStore) -> None:
    a_cache = ml.Cache(ttl=30.0, store=store)
    a = a_cache(lookup)
    b = make(other_store, lookup)
    assert a(1) == [1, 1]
    assert b(1) == [1, 1]
    other = ml.Cache(ttl=30.0, store=other_store)(Counter())  # a function a never served
    other(1)
    assert a_cache.invalidate(1) == 2
    assert b(1) == [1, 2]
    assert a(1) == [1, 2]


def test_clear_drops_the_namespace_only(store: RedisStore, raw: redis.Redis) -> None:
    mine = ml.Cache(ttl=30.0, store=store, name="mine")
    mine(lookup)(1)
    ml.Cache(ttl=30.0, store=store, name="theirs")(lookup)(1)
    mine.clear()
    assert raw.keys(f"{store.prefix}:cache:mine:*") == []
    assert raw.keys(f"{store.prefix}:cache:theirs:*") != []


@pytest.mark.parametrize("name", ["users:e", "users:l", "users:fns", "a:e:b"])
def test_a_name_that_would_read_as_the_key_layout_is_refused(store: RedisStore,
                                                             name: str) -> None:
    # clear() of "users" scans users:* and keeps what is its own (users:e:..., users:l:...,
    # users:fns): a namespace "users:e" would be cleared with it.
    with pytest.raises(ml.ConfigError, match=r"^Cache: name must be a name none of whose"):
        ml.Cache(ttl=30.0, store=store, name=name)
    ml.Cache(ttl=30.0, name=name)  # in memory there are no keys to confuse


def test_errors_are_not_cached(store: RedisStore) -> None:
    attempts = []

    def flaky(x: int) -> int:
        attempts.append(x)
        if len(attempts) == 1:
            raise ValueError("first")
        return x

    call = make(store, flaky)
    with pytest.raises(ValueError, match="first"):
        call(1)
    assert call(1) == 1
    assert call(1) == 1
    assert len(attempts) == 2


def test_unencodable_results_are_returned_not_cached(store: RedisStore,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    made: list[object] = []

    def thing(x: int) -> object:
        made.append(object())
        return made[-1]

    call = make(store, thing)
    with caplog.at_level(logging.WARNING, logger="meshlite.state"):
        assert call(1) is made[0]
        assert call(1) is made[1]
    assert "cannot be stored" in caplog.text


def test_a_dict_whose_keys_json_would_make_strings_is_not_cached(
        store: RedisStore, caplog: pytest.LogCaptureFixture) -> None:
    # A hit must answer what a miss answers: {1: "one"} read back as {"1": "one"}
    # would fail the caller's [1].
    counter = Counter()

    def names(x: int) -> dict[Any, Any]:
        counter(x)
        return {"ok": {x: "one"}}

    call = make(store, names)
    with caplog.at_level(logging.WARNING, logger="meshlite.state"):
        assert call(1)["ok"][1] == "one"
        assert call(1)["ok"][1] == "one"
    assert counter.calls == 2
    assert "a dict key 1 (int) would come back as the string \"1\"" in caplog.text
    assert "that result of" in caplog.text
    assert make(store, lookup, name="strings")(3) == make(store, lookup, name="strings")(3)
    assert lookup.calls == 1  # type: ignore[attr-defined]


def test_tuples_come_back_as_lists_with_json_and_as_tuples_with_pickle(
        redis_server: RedisServer, prefix: str) -> None:
    def pair(x: int) -> tuple[int, int]:
        return (x, x)

    json_store = RedisStore(redis_server.url, prefix=prefix + "j")
    pickle_store = RedisStore(redis_server.url, prefix=prefix + "p", codec="pickle")
    make(json_store, pair)(1)
    make(pickle_store, pair)(1)
    assert make(json_store, pair)(1) == [1, 1]
    assert make(pickle_store, pair)(1) == (1, 1)


def test_events_and_counters(store: RedisStore) -> None:
    cache = ml.Cache(ttl=30.0, store=store)
    events: list[Any] = []
    cache.add_hook(events.append)
    call = cache(lookup)
    call(1)
    call(1)
    assert [type(e) for e in events] == [CacheMiss, CacheHit]
    assert (cache.hits, cache.misses) == (1, 1)


def test_stale_entry_is_refreshed_inline(store: RedisStore, raw: redis.Redis) -> None:
    cache = ml.Cache(ttl=30.0, stale_ttl=60.0, store=store)
    call = cache(lookup)
    assert call(1) == [1, 1]
    key = entry_key(store, raw)
    raw.pexpire(key, 50_000)  # less than stale_ttl left: stale, as Redis judges it
    assert call(1) == [1, 2]  # sync: the first caller to see it stale refreshes
    assert raw.pttl(key) > 60_000
    assert call(1) == [1, 2]


def test_threads_of_one_process_make_one_call(store: RedisStore) -> None:
    gate = threading.Event()
    calls = []

    def slow(x: int) -> int:
        calls.append(x)
        gate.wait(5)
        return x

    call = make(store, slow)
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(call(9))) for _ in range(6)]
    for t in threads:
        t.start()
    while not calls:
        pass
    gate.set()
    for t in threads:
        t.join()
    assert results == [9] * 6
    assert calls == [9]


def test_cache_lock_makes_one_call_across_processes(redis_server: RedisServer,
                                                    prefix: str) -> None:
    stores = [RedisStore(redis_server.url, prefix=prefix, cache_lock=5.0) for _ in range(3)]
    gate = threading.Event()
    calls = []

    def slow(x: int) -> int:
        calls.append(x)
        gate.wait(5)
        return x * 10

    results: list[int] = []
    threads = [threading.Thread(target=lambda s=s: results.append(make(s, slow)(4)))
               for s in stores]
    for t in threads:
        t.start()
    while not calls:
        pass
    gate.set()
    for t in threads:
        t.join()
    assert results == [40] * 3
    assert calls == [4]


def test_warm_stores_in_the_store(store: RedisStore, other_store: RedisStore) -> None:
    cache = ml.Cache(ttl=30.0, store=store)
    call = cache(lookup)
    call(1)
    assert cache.warm(1) == [1, 2]  # recomputed even though cached
    assert make(other_store, lookup)(1) == [1, 2]


async def test_async_hit_miss_and_one_call_per_key(store: RedisStore,
                                                   other_store: RedisStore) -> None:
    calls = []

    async def fetch(x: int) -> int:
        calls.append(x)
        await asyncio.sleep(0.01)
        return x + 1

    a, b = make(store, fetch), make(other_store, fetch)
    assert await asyncio.gather(*(a(1) for _ in range(5))) == [2] * 5
    assert await b(1) == 2
    assert calls == [1]
    await store.aclose()
    await other_store.aclose()


async def test_async_stale_is_served_while_a_task_refreshes(store: RedisStore,
                                                            raw: redis.Redis) -> None:
    n = [0]

    async def fetch(x: int) -> int:
        n[0] += 1
        return n[0]

    call = ml.Cache(ttl=30.0, stale_ttl=60.0, store=store)(fetch)
    assert await call(1) == 1
    key = raw.keys(f"{store.prefix}:cache:default:e:*")[0]
    raw.pexpire(key, 50_000)
    assert await call(1) == 1  # stale, at once
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    await asyncio.gather(*others)
    assert await call(1) == 2
    await store.aclose()


# -- faults ----------------------------------------------------------------------------


def test_local_fallback_caches_in_process(dead_url: str) -> None:
    cache = ml.Cache(ttl=30.0, store=RedisStore(dead_url))
    events: list[Any] = []
    cache.add_hook(events.append)
    service = Counter()
    call = cache(service)
    assert call(1) == call(1)
    assert service.calls == 1
    assert {e.action for e in events if isinstance(e, StoreFallback)} == {"local"}


@pytest.mark.parametrize("mode", ["allow", "deny"])
def test_other_fallbacks_call_through(dead_url: str, mode: Any) -> None:
    service = Counter()
    call = ml.Cache(ttl=30.0, store=RedisStore(dead_url, on_error=mode))(service)
    assert call(1) == [1, 1]
    assert call(1) == [1, 2]  # a cache outage never refuses a call


def test_raise_fallback_raises(dead_url: str) -> None:
    cache = ml.Cache(ttl=30.0, store=RedisStore(dead_url, on_error="raise"))
    with pytest.raises(StoreUnavailableError):
        cache(Counter())(1)
    with pytest.raises(StoreUnavailableError):
        cache.invalidate(1)


async def test_async_local_fallback(dead_url: str) -> None:
    calls = []

    async def fetch(x: int) -> int:
        calls.append(x)
        return x

    call = ml.Cache(ttl=30.0, store=RedisStore(dead_url))(fetch)
    assert await call(1) == await call(1) == 1
    assert calls == [1]


def test_store_failing_after_the_call_keeps_the_result(fresh_server: RedisServer,
                                                       prefix: str) -> None:
    store = RedisStore(fresh_server.url, prefix=prefix, on_error="raise")
    cache = ml.Cache(ttl=30.0, store=store)
    events: list[Any] = []
    cache.add_hook(events.append)

    def kills_redis(x: int) -> int:
        fresh_server.kill()
        return x

    assert cache(kills_redis)(3) == 3  # storing failed: the result is still returned
    assert [e.step for e in events if isinstance(e, StoreFallback)] == ["store"]
    store.close()


def test_bad_options() -> None:
    with pytest.raises(ml.ConfigError, match="Cache: store must be"):
        ml.Cache(ttl=1.0, store=object())
    with pytest.raises(ml.ConfigError, match="Cache: name must be"):
        ml.Cache(ttl=1.0, name="")
