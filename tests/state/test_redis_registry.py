"""RedisRegistry: backends register with a TTL heartbeat; watching meshes follow."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import redis
from redis_server import RedisServer

import meshlite as ml
from meshlite.discovery import Discovery
from meshlite.discovery._redis import RedisRegistry
from meshlite.state import RedisStore, StoreUnavailableError


@pytest.fixture
def registry(store: RedisStore) -> RedisRegistry:
    return RedisRegistry("users", store=store, ttl=30.0)


async def until(condition: object, seconds: float = 5.0) -> None:
    """Await until ``condition()`` holds (the registry pushes; this only bounds the wait)."""
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


async def test_register_resolve_deregister(registry: RedisRegistry, store: RedisStore) -> None:
    assert registry.register(ml.Backend("http://127.0.0.1:80", weight=2.0, zone="a",
                                        metadata={"v": "1"}))
    await registry.aregister("http://127.0.0.2:80")
    found = await registry.resolve()
    by_address = {b.address: b for b in found.backends}
    assert set(by_address) == {"http://127.0.0.1:80", "http://127.0.0.2:80"}
    assert found.ttl is not None
    assert 0 < found.ttl <= 30.0
    assert registry.deregister("http://127.0.0.2:80")
    assert not registry.deregister("http://127.0.0.2:80")
    assert [b.address for b in (await registry.resolve()).backends] == ["http://127.0.0.1:80"]
    await store.aclose()


async def test_metadata_round_trips(registry: RedisRegistry, store: RedisStore) -> None:
    registry.register(ml.Backend("http://127.0.0.1:80", weight=2.0, zone="eu",
                                 metadata={"version": "3"}))
    [backend] = (await registry.resolve()).backends
    assert (backend.weight, backend.zone, dict(backend.metadata)) == (2.0, "eu",
                                                                      {"version": "3"})
    await store.aclose()


async def test_renewing_only_announces_changes(registry: RedisRegistry,
                                               store: RedisStore) -> None:
    assert registry.register("http://127.0.0.1:80")
    assert not registry.register("http://127.0.0.1:80")  # a heartbeat: nothing new
    assert registry.register(ml.Backend("http://127.0.0.1:80", weight=3.0))  # changed
    await store.aclose()


async def test_expired_registrations_are_dropped(registry: RedisRegistry, store: RedisStore,
                                                 raw: redis.Redis) -> None:
    registry.register("http://127.0.0.1:80")
    registry.register("http://127.0.0.2:80")
    raw.zadd(f"{store.prefix}:reg:{{users}}", {"http://127.0.0.1:80": 1})  # expired long ago
    assert [b.address for b in (await registry.resolve()).backends] == ["http://127.0.0.2:80"]
    # Resolving is read-only; the next registration sweeps the expired entry out.
    assert raw.hget(f"{store.prefix}:reg:{{users}}:meta", "http://127.0.0.1:80") is not None
    registry.register("http://127.0.0.3:80")
    assert raw.hget(f"{store.prefix}:reg:{{users}}:meta", "http://127.0.0.1:80") is None
    assert raw.zscore(f"{store.prefix}:reg:{{users}}", "http://127.0.0.1:80") is None
    await store.aclose()


async def test_a_bad_entry_does_not_hide_the_others(registry: RedisRegistry,
                                                    store: RedisStore,
                                                    raw: redis.Redis) -> None:
    registry.register("http://127.0.0.1:80")
    registry.register("http://127.0.0.2:80")
    raw.hset(f"{store.prefix}:reg:{{users}}:meta", "http://127.0.0.1:80",
             json.dumps({"weight": -1}))
    assert [b.address for b in (await registry.resolve()).backends] == ["http://127.0.0.2:80"]
    await store.aclose()


async def test_watching_mesh_sees_backends_arrive_and_leave(redis_server: RedisServer,
                                                            prefix: str) -> None:
    service = ml.Service("users", backends=["http://127.0.0.9:80"])
    watcher = RedisRegistry("users", redis_server.url, prefix=prefix, ttl=30.0)
    member = RedisRegistry("users", redis_server.url, prefix=prefix, ttl=30.0)
    await member.aregister("http://127.0.0.1:80")
    discovery = Discovery(service, watcher, min_interval=60.0)
    await discovery.start()
    try:
        assert [b.address for b in service.backends] == ["http://127.0.0.1:80"]
        async with member.heartbeat("http://127.0.0.2:80"):
            await until(lambda: len(service.backends) == 2)
        await until(lambda: len(service.backends) == 1)  # left: announced at once
        assert [b.address for b in service.backends] == ["http://127.0.0.1:80"]
    finally:
        await discovery.stop()
        await member.stop()


async def test_async_heartbeat_keeps_a_short_ttl_alive(registry: RedisRegistry,
                                                       store: RedisStore) -> None:
    short = RedisRegistry("users", store=store, ttl=0.2)
    async with short.heartbeat("http://127.0.0.1:80", interval=0.02) as beat:
        await until(lambda: beat.renewals >= 15)  # well past the ttl
        assert [b.address for b in (await short.resolve()).backends] == [
            "http://127.0.0.1:80"]
    assert (await short.resolve()).backends == ()
    await store.aclose()


def test_sync_heartbeat_in_a_thread(registry: RedisRegistry, raw: redis.Redis,
                                    store: RedisStore) -> None:
    key = f"{store.prefix}:reg:{{users}}"
    with registry.heartbeat("http://127.0.0.1:80", interval=0.01) as beat:
        assert raw.zscore(key, "http://127.0.0.1:80") is not None
        deadline = time.monotonic() + 5.0
        while beat.renewals < 3:
            assert time.monotonic() < deadline
            time.sleep(0.005)
    assert raw.zscore(key, "http://127.0.0.1:80") is None


def test_sync_heartbeat_every_few_centuries_waits_in_its_thread(
        registry: RedisRegistry, raw: redis.Redis, store: RedisStore) -> None:
    # An interval longer than one thread wait may be (threading.TIMEOUT_MAX): the
    # heartbeat thread waits it in parts (one wait of it raised OverflowError there,
    # which pytest reports as an unhandled thread exception), and stops at once.
    key = f"{store.prefix}:reg:{{users}}"
    with registry.heartbeat("http://127.0.0.1:80", interval=1e10) as beat:
        time.sleep(0.05)  # the thread is waiting now
        thread = beat._thread
        assert thread is not None
        assert thread.is_alive()
    assert beat.renewals == 1
    assert raw.zscore(key, "http://127.0.0.1:80") is None


async def test_registry_down_raises_store_error(dead_url: str) -> None:
    registry = RedisRegistry("users", dead_url)
    with pytest.raises(StoreUnavailableError):
        await registry.resolve()
    with pytest.raises(StoreUnavailableError):
        await registry.changed()
    with pytest.raises(StoreUnavailableError):
        async with registry.heartbeat("http://127.0.0.1:80"):
            pass
    await registry.stop()


def test_bad_arguments() -> None:
    with pytest.raises(ml.ConfigError, match=r"^RedisRegistry: service must be"):
        RedisRegistry("")
    with pytest.raises(ml.ConfigError, match=r"^RedisRegistry: ttl must be"):
        RedisRegistry("users", ttl=0)
    with pytest.raises(ml.ConfigError, match=r"^RedisRegistry: store must be"):
        RedisRegistry("users", store="redis://x")  # type: ignore[arg-type]
    with pytest.raises(ml.ConfigError, match="interval must be"):
        RedisRegistry("users").heartbeat("http://127.0.0.1:80", interval=-1)


async def test_a_burst_of_changes_costs_a_watcher_few_resolves(redis_server: RedisServer,
                                                               prefix: str) -> None:
    service = ml.Service("burst", backends=["http://127.0.0.9:80"])
    watcher = RedisRegistry("burst", redis_server.url, prefix=prefix, ttl=30.0,
                            coalesce=0.1)
    member = RedisRegistry("burst", redis_server.url, prefix=prefix, ttl=30.0)
    resolves = [0]
    real = watcher.resolve

    async def counted() -> Any:
        resolves[0] += 1
        return await real()

    watcher.resolve = counted  # type: ignore[method-assign]
    await member.aregister("http://127.0.0.1:80")
    discovery = Discovery(service, watcher, min_interval=0.001)
    await discovery.start()
    try:
        before = resolves[0]
        for i in range(2, 102):  # a rolling deploy of 100 backends, back to back
            await member.aregister(f"http://127.0.0.{i}:80")
        await until(lambda: len(service.backends) == 101)
        assert resolves[0] - before <= 10  # not one per change
    finally:
        await discovery.stop()
        await member.stop()


async def test_subscriptions_never_take_the_decisions_connections(
        redis_server: RedisServer, prefix: str) -> None:
    # One store for the registries of many services: each watcher holds a pub/sub
    # connection for as long as it watches. Those came from the pool the decisions
    # use, so with more watchers than spare connections, subscribing and resolving
    # waited for a connection forever.
    store = RedisStore(redis_server.url, prefix=prefix, timeout=2.0, max_connections=2)
    registries = [RedisRegistry(f"svc{i}", store=store, ttl=30.0) for i in range(12)]

    async def watch_and_resolve() -> list[Any]:
        for registry in registries:
            await registry.start()
        await registries[0].aregister("http://127.0.0.1:80")
        return await asyncio.gather(*(r.resolve() for r in registries))

    answers = await asyncio.wait_for(watch_and_resolve(), 10.0)
    assert [b.address for b in answers[0].backends] == ["http://127.0.0.1:80"]
    assert all(not a.backends for a in answers[1:])
    assert all(r._pubsub is not None for r in registries)  # all twelve subscribed
    for registry in registries:
        await registry.stop()
    await store.aclose()


def test_a_forked_worker_watches_with_a_subscription_of_its_own(
        redis_server: RedisServer, prefix: str) -> None:
    # A mesh opened before a fork (gunicorn --preload) and again in the worker: the
    # worker reused the parent's subscription (its loop's, its connection's), and
    # every wait for a change failed, so changes came only at the retry interval.
    import threading

    from _forked import in_child

    watcher = RedisRegistry("users", redis_server.url, prefix=prefix, ttl=30.0)
    loop = asyncio.new_event_loop()  # the parent's mesh loop, waiting for a change
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    waiting_in_parent = asyncio.run_coroutine_threadsafe(watcher.changed(), loop)
    time.sleep(0.3)  # subscribed and reading when the fork comes

    def child() -> int:
        async def run() -> int:
            member = RedisRegistry("users", redis_server.url, prefix=prefix, ttl=30.0)
            waiting = asyncio.create_task(watcher.changed())
            await asyncio.sleep(0.2)  # subscribed (anew) before the change
            await member.aregister("http://127.0.0.1:80")
            await asyncio.wait_for(waiting, 5.0)
            await member.stop()
            await watcher.stop()
            return 1

        return asyncio.run(run())

    assert in_child(child) == 1
    waiting_in_parent.cancel()
    asyncio.run_coroutine_threadsafe(watcher.stop(), loop).result(5.0)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5.0)
    loop.close()
    watcher.store.close()


async def test_a_heartbeat_through_an_outage_logs_its_failure_once_and_its_return(
        fresh_server: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture) -> None:
    # Every renewal that failed wrote a WARNING: every ttl/3 of an outage, for every
    # instance (75 lines in 12 s for four instances in a probe).
    import logging

    member = RedisRegistry("users", fresh_server.url, prefix=prefix, ttl=0.3)
    async with member.heartbeat("http://127.0.0.1:80", interval=0.05) as beat:
        with caplog.at_level(logging.INFO, logger="meshlite.discovery"):
            fresh_server.kill()
            await asyncio.sleep(0.5)  # about ten renewals fail
            fresh_server.start()
            await until(lambda: "renewed again" in caplog.text)
            renewed = beat.renewals
            await until(lambda: beat.renewals > renewed)  # and go on
    lines = [r.getMessage() for r in caplog.records if r.name == "meshlite.discovery"]
    failed = [line for line in lines if "failed:" in line]
    again = [line for line in lines if "renewed again" in line]
    assert len(failed) == 1
    assert len(again) == 1
    assert "after" in again[0]
    await member.stop()
