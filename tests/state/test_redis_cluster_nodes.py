"""A Redis Cluster store whose primary dies or hangs while the others answer
(``cluster-require-full-coverage no``): the keys of the other primaries' slots stay
shared, the keys of the lost primary's slots fall back to each process's own state,
and come back to Redis when the primary does.

Two meshes, each with a store of its own, stand for two processes
(``cluster_replicas.py``). The tests run on the session's cluster (the ``cluster``
fixture of ``conftest.py``): they stop one of its primaries and bring it back, and
leave the cluster as they found it (every node up, full coverage required again)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
import redis
from cluster_replicas import Replica, marked_failed, node_records, replicas
from redis_topology import wait_until

import meshlite as ml
from meshlite.state import RedisStore, StoreFallback, StoreRecovered, StoreUnavailable


def test_a_dead_primary_turns_sharing_off_for_its_slots_only(
        cluster: Any, caplog: pytest.LogCaptureFixture) -> None:
    # The first node holds slot 0: a client starting reads the command table from it.
    dead, healthy = cluster.servers[0], cluster.servers[1]
    node = f"127.0.0.1:{dead.port}"
    a, b = replicas(cluster, {"healthy": healthy.port, "dead": dead.port,
                              "back": dead.port})
    events: list[Any] = []
    a.store.add_hook(events.append)
    assert a.admitted("breaker-dead")  # a's breaker learns the circuit is closed
    caplog.set_level(logging.INFO, logger="meshlite.state")
    dead.kill()

    # The healthy primary's keys: one quota and one breaker for both meshes.
    assert [a.admitted("quota-healthy"), a.admitted("quota-healthy")] == [True, True]
    assert not b.admitted("quota-healthy")  # a's calls spent the shared burst
    a.fail("breaker-healthy")
    a.fail("breaker-healthy")  # 2 of 2 failed: open, for both
    assert not b.admitted("breaker-healthy")

    # The dead primary's keys: each mesh decides alone, and no store error escapes.
    assert [a.admitted("quota-dead") for _ in range(3)] == [True, True, False]
    assert [b.admitted("quota-dead") for _ in range(3)] == [True, True, False]
    for _ in range(3):  # the first outcome is lost with the node; then a decides alone
        a.fail("breaker-dead")
    assert not a.admitted("breaker-dead")  # a's own breaker opened
    assert b.admitted("breaker-dead")  # b's own is closed

    for replica in (a, b):
        assert replica.store.unavailable_nodes == (node,)
        assert not replica.store.available
        assert replica.store.fallbacks[("rate_limit", "local")] >= 3
    warnings = node_records(caplog, node, logging.WARNING)
    assert len(warnings) == 2, warnings  # once per store, however many decisions fell back
    assert all("keys on the other nodes stay shared" in w for w in warnings)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING
                and f"node 127.0.0.1:{healthy.port} " in r.getMessage()]
    assert [type(e) for e in events] == [StoreUnavailable]
    assert events[0].node == node

    # A process that starts now (its clients made while the node is down) shares the
    # healthy primary's keys too, sync and async.
    late = Replica(cluster.url, a.store.prefix, a.names, 2.0, 0.05)
    assert not late.admitted("quota-healthy")
    assert late.store.fallbacks == {}
    assert asyncio.run(late.eventually_refused("quota-healthy"))
    late.store.close()

    dead.start()  # its nodes.conf brings it back with its slots, its data gone
    deadline = time.monotonic() + 30.0
    while a.store.unavailable_nodes or b.store.unavailable_nodes:
        assert time.monotonic() < deadline, "the primary never came back"
        a.admitted("quota-dead")
        b.admitted("quota-dead")
        time.sleep(0.05)
    # Its keys are shared again.
    assert [a.admitted("quota-back"), a.admitted("quota-back")] == [True, True]
    assert not b.admitted("quota-back")
    assert [type(e) for e in events] == [StoreUnavailable, StoreRecovered]
    assert events[1].node == node
    assert len(node_records(caplog, node, logging.INFO)) == 2
    for replica in (a, b):
        replica.store.close()


async def test_a_hung_primary_costs_one_timeout_then_its_keys_fall_back(
        cluster: Any, caplog: pytest.LogCaptureFixture) -> None:
    hung, healthy = cluster.servers[2], cluster.servers[0]
    node = f"127.0.0.1:{hung.port}"
    a, b = replicas(cluster, {"healthy": healthy.port, "hung": hung.port}, timeout=0.2,
                    retry_interval=1.0)

    async def call(replica: Replica, service: str) -> bool:
        try:
            return bool(await replica.mesh.call(service, lambda backend: True))
        except ml.RateLimitedError:
            return False

    caplog.set_level(logging.WARNING, logger="meshlite.state")
    assert await call(a, "quota-healthy")  # both connected before the hang
    assert await call(b, "quota-hung")
    hung.pause()
    try:
        assert await call(a, "quota-hung")  # one timeout, then a's own limiter
        sent = a.store.round_trips
        assert [await call(a, "quota-hung") for _ in range(20)] == [True] + [False] * 19
        assert a.store.round_trips - sent <= 1  # refused without the network (a probe at most)
        assert await call(a, "quota-healthy")  # shared: the second of the burst of 2
        assert not await call(b, "quota-healthy")
        assert a.store.unavailable_nodes == (node,)
        assert [w for w in node_records(caplog, node, logging.WARNING)
                if "TimeoutError" in w] != []
    finally:
        hung.resume()
    deadline = time.monotonic() + 30.0
    while a.store.unavailable_nodes:
        assert time.monotonic() < deadline, "the primary never came back"
        await call(a, "quota-hung")
        await asyncio.sleep(0.05)
    assert len(node_records(caplog, node, logging.WARNING)) == 1
    for replica in (a, b):
        await replica.store.aclose()
        replica.store.close()


def test_a_store_started_while_a_primary_is_down_shares_the_others_keys_at_once(
        cluster: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A process whose clients are made while a primary is down decides the keys of
    the healthy primaries through Redis within a few calls, sync and async, however
    long its ``timeout`` (its first decisions must not hold the store down)."""
    dead, healthy = cluster.servers[0], cluster.servers[1]  # dead holds slot 0
    a, _ = replicas(cluster, {"healthy": healthy.port, "dead": dead.port})
    a.store.close()
    caplog.set_level(logging.WARNING, logger="meshlite.state")
    dead.kill()
    wait_until(lambda: marked_failed(cluster, healthy.port), "the node marked failed", 30.0)
    late = Replica(cluster.url, a.store.prefix, a.names, 5.0, 0.05)

    def decided_by_redis() -> list[bool]:
        """Of three calls spending the burst of 2, which were decided through Redis."""
        through = []
        for _ in range(3):
            fallbacks = dict(late.store.fallbacks)
            late.admitted("quota-healthy")
            through.append(late.store.fallbacks == fallbacks)
        return through

    assert decided_by_redis() == [True] * 3
    assert not late.admitted("quota-healthy")  # the shared burst is spent

    async def async_refusals() -> list[bool]:
        """Three async calls: whether each was refused through Redis."""
        refused = []
        for _ in range(3):
            fallbacks = dict(late.store.fallbacks)
            try:
                await late.mesh.call("quota-healthy", lambda backend: True)
            except ml.RateLimitedError:
                refused.append(late.store.fallbacks == fallbacks)
            else:
                refused.append(False)
        await late.store.aclose()
        return refused

    try:
        assert asyncio.run(async_refusals()) == [True] * 3, late.store.fallbacks
    finally:
        late.store.close()



def test_a_new_stores_first_decision_on_a_dead_primarys_key_is_that_primarys_outage(
        cluster: Any) -> None:
    """The first decision of a process (its client not made yet, so checked against
    the store's own health) goes to the dead primary's keys: the failure names that
    primary, so only its keys fall back, and the others' are decided in Redis."""
    dead, healthy = cluster.servers[1], cluster.servers[2]
    a, b = replicas(cluster, {"healthy": healthy.port, "dead": dead.port})
    a.store.close()
    b.store.close()
    dead.kill()
    late = Replica(cluster.url, a.store.prefix, a.names, 2.0, 0.05)
    assert late.admitted("quota-dead")  # the dead node, then late's own limiter
    assert late.store.unavailable_nodes == (f"127.0.0.1:{dead.port}",)
    fallbacks = dict(late.store.fallbacks)
    assert [late.admitted("quota-healthy") for _ in range(3)] == [True, True, False]
    assert late.store.fallbacks == fallbacks  # the burst of 2 spent in Redis
    late.store.close()


def test_a_probe_that_meets_the_dead_primary_ends_the_stores_own_outage_probe(
        cluster: Any) -> None:
    """While the store's own health is down (its client could not be made: no
    primary answered), the decision that probes it may go to the dead primary's
    keys: its failure is the probe's outcome, so the next decision probes again
    after the backoff (``retry_interval``), not after the whole probe allowance
    (about ``timeout + connect_timeout``)."""
    dead, healthy = cluster.servers[0], cluster.servers[1]
    a, _ = replicas(cluster, {"healthy": healthy.port, "dead": dead.port})
    assert a.admitted("quota-healthy")  # the first of the burst of 2, in Redis
    a.store.close()
    dead.kill()
    wait_until(lambda: marked_failed(cluster, healthy.port), "the node marked failed", 30.0)
    late = Replica(cluster.url, a.store.prefix, a.names, 0.3, 0.05)
    others = [server for server in cluster.servers if server is not dead]
    for server in others:
        server.pause()
    try:
        assert late.admitted("quota-healthy")  # no primary answers: late's own limiter
    finally:
        for server in others:
            server.resume()
    assert late.store.unavailable_nodes == ()  # no node to blame: the store is down
    assert not late.store.available
    time.sleep(0.06)  # past the backoff (at most retry_interval)
    assert late.admitted("quota-dead")  # the probe: the dead node, then late's own limiter
    assert late.store.unavailable_nodes == (f"127.0.0.1:{dead.port}",)
    time.sleep(0.06)
    fallbacks = dict(late.store.fallbacks)
    assert late.admitted("quota-healthy")  # the next probe, answered: the second of 2
    assert late.store.fallbacks == fallbacks  # decided in Redis
    assert not late.admitted("quota-healthy")
    assert late.store.fallbacks == fallbacks
    late.store.close()


def test_clearing_a_cache_with_a_primary_down_clears_the_others_and_falls_back(
        cluster: Any) -> None:
    """``Cache.clear()`` on a Cluster store while one primary is down drops the
    entries on the primaries that answer, and the dead one's miss is a fallback
    (``StoreFallback``, ``step="manage"``), not a redis-py error escaping."""
    dead = cluster.servers[1]
    healthy = [server for server in cluster.servers if server is not dead]
    prefix = "clear-one-down"
    store = RedisStore(cluster.url, prefix=prefix, timeout=2.0)
    cache = ml.Cache(ttl=60.0, store=store)
    events: list[Any] = []
    cache.add_hook(events.append)

    @cache
    def double(x: int) -> int:
        return 2 * x

    def entries(server: Any) -> list[bytes]:
        with redis.Redis(port=server.port) as node:
            return list(node.keys(f"{prefix}:cache:*:e:*"))

    for i in range(30):
        double(i)
    assert all(entries(server) for server in healthy)
    dead.kill()
    cache.clear()  # raises nothing
    assert [entries(server) for server in healthy] == [[], []]
    assert [(e.step, e.action) for e in events if isinstance(e, StoreFallback)] == [
        ("manage", "local")]
    assert store.unavailable_nodes == (f"127.0.0.1:{dead.port}",)
    store.close()
