"""RedisStore on a real 3-primary Redis Cluster and on a real Sentinel with a failover,
plus ready clients passed in."""

from __future__ import annotations

import asyncio
import gc
import itertools
import time
import warnings
from typing import Any

import pytest
import redis
import redis.cluster
from redis_server import RedisServer

import meshlite as ml
from meshlite.state import RedisStore

_names = itertools.count()


class Boom(Exception):
    pass


def boom() -> None:
    raise Boom


def prefix() -> str:
    return f"topo{next(_names)}"


def test_rate_limits_on_every_slot_share_the_cluster(redis_cluster: Any) -> None:
    p = prefix()
    store = RedisStore(redis_cluster.url, prefix=p, timeout=2.0)
    names = [f"api-{i}" for i in range(12)]
    for name in names:
        limit = ml.RateLimit(1.0, burst=1, store=store, name=name, mode="reject")
        call = limit(lambda: 1)
        assert call() == 1
        with pytest.raises(ml.RateLimitedError):
            call()  # the shared quota, wherever its slot lives
    assert store.fallbacks == {}
    assert store.available
    ports = set()
    client = store._clients.sync()
    for name in names:
        ports.add(client.get_node_from_key(f"{p}:rl:{name}").port)
    assert len(ports) == 3  # the names spread over the three primaries
    store.close()


def test_breaker_scripts_keep_their_keys_in_one_slot(redis_cluster: Any) -> None:
    p = prefix()
    a = RedisStore(redis_cluster.url, prefix=p, timeout=2.0)
    b = RedisStore(redis_cluster.url, prefix=p, timeout=2.0)
    for name in ("pay", "users", "search"):
        one = ml.CircuitBreaker(store=a, name=name, window=4, min_calls=2)
        other = ml.CircuitBreaker(store=b, name=name, window=4, min_calls=2)
        for _ in range(2):
            with pytest.raises(Boom):
                one(boom)()
        assert other.state == "open"  # opened by a, seen by b
        other.reset()
        assert one.state == "closed"
    assert a.fallbacks == {}
    assert b.fallbacks == {}
    a.close()
    b.close()


def test_cache_on_the_cluster(redis_cluster: Any) -> None:
    store = RedisStore(redis_cluster.url, prefix=prefix(), timeout=2.0)
    calls: list[int] = []
    cache = ml.Cache(ttl=30.0, store=store)

    @cache
    def double(x: int) -> int:
        calls.append(x)
        return 2 * x

    assert [double(i) for i in range(10)] == [2 * i for i in range(10)]
    assert [double(i) for i in range(10)] == [2 * i for i in range(10)]
    assert len(calls) == 10
    cache.invalidate(3)
    assert double(3) == 6
    assert len(calls) == 11
    cache.clear()
    assert len(calls) == 11
    assert double(4) == 8
    assert len(calls) == 12  # cleared for every process: computed again
    assert store.fallbacks == {}
    store.close()


async def test_async_decisions_on_the_cluster(redis_cluster: Any) -> None:
    # 300 decisions at once open up to 64 connections per node together: on a loaded
    # machine the event loop may finish a connect later than the default 0.5 s
    # connect timeout (the store would fall back, which is not what this test is about).
    store = RedisStore(redis_cluster.url, prefix=prefix(), timeout=2.0, connect_timeout=3.0)

    async def work() -> int:
        return 1

    calls = [ml.RateLimit(1e6, store=store, name=f"a{i}", mode="reject")(work)
             for i in range(6)]
    results = await asyncio.gather(*(c() for c in calls for _ in range(50)))
    assert sum(results) == 300
    assert store.fallbacks == {}
    await store.aclose()


def test_seed_node_list_and_a_ready_cluster_client(redis_cluster: Any) -> None:
    seeds = [f"127.0.0.1:{s.port}" for s in redis_cluster.servers]
    p = prefix()
    by_list = RedisStore(seeds, prefix=p, timeout=2.0)
    client = redis.cluster.RedisCluster(host="127.0.0.1", port=redis_cluster.servers[0].port)
    by_client = RedisStore(client, prefix=p, timeout=2.0)
    first = ml.RateLimit(1.0, burst=1, store=by_list, name="x", mode="reject")(lambda: 1)
    second = ml.RateLimit(1.0, burst=1, store=by_client, name="x", mode="reject")(lambda: 1)
    assert first() == 1
    with pytest.raises(ml.RateLimitedError):
        second()  # one quota through both
    assert by_list.fallbacks == {}
    assert by_client.fallbacks == {}
    by_list.close()
    by_client.close()
    client.ping()  # the store does not close a client it was given
    client.close()


def test_a_ready_client_and_pool(redis_server: RedisServer) -> None:
    p = prefix()
    client = redis.Redis.from_url(redis_server.url)
    pool = redis.ConnectionPool.from_url(redis_server.url)
    one = ml.RateLimit(1.0, burst=1, store=RedisStore(client, prefix=p), name="x",
                       mode="reject")(lambda: 1)
    two = ml.RateLimit(1.0, burst=1, store=RedisStore(pool, prefix=p), name="x",
                       mode="reject")(lambda: 1)
    assert one() == 1
    with pytest.raises(ml.RateLimitedError):
        two()
    client.close()
    pool.disconnect()


@pytest.mark.parametrize("url", [
    "redis+cluster://", "redis+cluster://h", "redis+sentinel://h:1", "redis+sentinel://h:1/a/b",
    [], [1], object()])
def test_bad_topologies_name_the_url(url: Any) -> None:
    with pytest.raises(ml.ConfigError, match=r"^RedisStore: url must be"):
        RedisStore(url)


def test_sentinel_failover_rediscovers_the_new_primary(sentinel_setup: Any) -> None:
    p = prefix()
    store = RedisStore(sentinel_setup.url, prefix=p, timeout=1.0, retry_interval=0.05)
    call = ml.RateLimit(1e6, store=store, name="s", mode="reject")(lambda: 1)
    call()
    assert asyncio.run(store.aping())  # the async client finds the primary too
    old = sentinel_setup.master_port()
    new = sentinel_setup.failover()
    assert new != old
    deadline = time.monotonic() + 10.0
    with redis.Redis(port=new) as primary:
        for i in itertools.count():  # until decisions reach the new primary
            assert time.monotonic() < deadline
            ml.RateLimit(1.0, store=store, name=f"s{i}", mode="reject")(lambda: 1)()
            if primary.exists(f"{p}:rl:s{i}"):
                break
            time.sleep(0.01)
    assert store.available
    # At most the decisions that met READONLY (or the closed connection) fell back.
    assert sum(store.fallbacks.values()) <= 3
    store.close()


def test_each_event_loop_closes_its_own_sentinel_connections(sentinel_setup: Any) -> None:
    store = RedisStore(sentinel_setup.url, prefix=prefix(), timeout=1.0)
    for _ in range(2):  # a second loop must not use the first loop's sentinel connections
        assert asyncio.run(store.aping())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del store
        gc.collect()  # nothing of the closed loops is still open
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []


async def test_registry_on_the_cluster(redis_cluster: Any) -> None:
    from meshlite.discovery import Discovery, RedisRegistry

    p = prefix()
    service = ml.Service("users", backends=["http://127.0.0.9:80"])
    watcher = RedisRegistry("users", redis_cluster.url, prefix=p, ttl=30.0)
    member = RedisRegistry("users", redis_cluster.url, prefix=p, ttl=30.0)
    await member.aregister("http://127.0.0.1:80")
    discovery = Discovery(service, watcher, min_interval=0.01)
    await discovery.start()
    try:
        assert [b.address for b in service.backends] == ["http://127.0.0.1:80"]
        await member.aregister("http://127.0.0.2:80")
        deadline = time.monotonic() + 5.0
        while len(service.backends) != 2:  # announced through the cluster's pub/sub
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
    finally:
        await discovery.stop()
        await member.stop()
