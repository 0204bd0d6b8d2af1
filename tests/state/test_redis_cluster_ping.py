"""``RedisStore.ping()`` on a Redis Cluster asks every primary: one primary that
does not answer is that primary's outage (``unavailable_nodes``), not the whole
store's, so the keys of the others stay shared; the store is down only when no
primary answers. Runs on the session's cluster (the ``cluster`` fixture)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from cluster_replicas import Replica, each_node, node_records, replicas

import meshlite as ml
from meshlite.state import RedisStore, StoreRecovered, StoreUnavailable


def default_node(cluster: Any) -> Any:
    """The server a new store's sync client sends commands without a key to (a
    ``PING`` of one node only would go there)."""
    probe, _ = replicas(cluster, {})
    port = probe.store._clients.sync().get_default_node().port
    probe.store.close()
    return cluster.server(port)


def shared(a: Replica, b: Replica, service: str) -> bool:
    """Whether ``a`` and ``b`` share the quota of ``service`` (a burst of 2) through
    Redis: ``a`` spends it, ``b`` is refused, and neither falls back."""
    before = (dict(a.store.fallbacks), dict(b.store.fallbacks))
    spent = [a.admitted(service), a.admitted(service), b.admitted(service)]
    return spent == [True, True, False] and before == (a.store.fallbacks, b.store.fallbacks)


def test_a_ping_names_the_dead_primary_and_leaves_the_others_shared(
        cluster: Any, caplog: pytest.LogCaptureFixture) -> None:
    dead = default_node(cluster)  # the node a PING without a key goes to
    healthy = next(s for s in cluster.servers if s is not dead)
    node = f"127.0.0.1:{dead.port}"
    a, b = replicas(cluster, {"healthy": healthy.port, "dead": dead.port})
    events: list[Any] = []
    a.store.add_hook(events.append)
    assert a.store.ping()
    assert a.store.available
    caplog.set_level(logging.INFO, logger="meshlite.state")
    dead.kill()

    assert a.store.ping()  # the other primaries answer: the store is up...
    assert a.store.unavailable_nodes == (node,)  # ...but for the dead one's slots
    assert not a.store.available
    assert [(type(e), e.node) for e in events] == [(StoreUnavailable, node)]
    assert shared(a, b, "quota-healthy")  # decided in Redis right after the ping
    assert [a.admitted("quota-dead") for _ in range(3)] == [True, True, False]  # a alone
    assert a.store.ping()  # again: the dead node's outage goes on, nothing new
    assert len(node_records(caplog, node, logging.WARNING)) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING
                and " node " not in r.getMessage()]  # no whole-store outage logged

    dead.start()
    deadline = time.monotonic() + 30.0
    while not (a.store.ping() and a.store.available):  # each ping probes the node
        assert time.monotonic() < deadline, "the primary never answered a ping"
        time.sleep(0.05)
    assert [(type(e), e.node) for e in events] == [(StoreUnavailable, node),
                                                   (StoreRecovered, node)]
    for replica in (a, b):
        replica.store.close()


async def test_an_async_ping_names_the_dead_primary_and_leaves_the_others_shared(
        cluster: Any) -> None:
    dead = default_node(cluster)
    healthy = next(s for s in cluster.servers if s is not dead)
    node = f"127.0.0.1:{dead.port}"
    a, b = replicas(cluster, {"healthy": healthy.port})
    assert await a.store.aping()  # the loop's client reads the slot map
    dead.kill()

    assert await a.store.aping()
    assert a.store.unavailable_nodes == (node,)
    assert not a.store.available
    fallbacks = dict(a.store.fallbacks)
    for _ in range(2):
        await a.mesh.call("quota-healthy", lambda backend: True)
    with pytest.raises(ml.RateLimitedError):  # b's refusal: the burst was spent in Redis
        await b.mesh.call("quota-healthy", lambda backend: True)
    assert a.store.fallbacks == fallbacks
    assert b.store.fallbacks == {}
    for replica in (a, b):
        await replica.store.aclose()
        replica.store.close()


def check_all_down(store: RedisStore, events: list[Any]) -> None:
    """After a ping that no primary answered: every primary and the store are down."""
    assert len(store.unavailable_nodes) == 3
    assert not store.available
    assert [e.node for e in events if isinstance(e, StoreUnavailable)][-1] is None


def check_all_back(events: list[Any], cluster: Any) -> None:
    """After a ping that every primary answered: each outage announced its end."""
    recovered = {e.node for e in events if isinstance(e, StoreRecovered)}
    assert recovered == {None} | {f"127.0.0.1:{s.port}" for s in cluster.servers}


def test_a_ping_no_primary_answers_finds_the_store_down(cluster: Any) -> None:
    a, _ = replicas(cluster, {}, timeout=0.3)
    events: list[Any] = []
    a.store.add_hook(events.append)
    assert a.store.ping()
    for server in cluster.servers:
        server.pause()  # every primary hangs
    try:
        assert not a.store.ping()
    finally:
        for server in cluster.servers:
            server.resume()
    check_all_down(a.store, events)
    deadline = time.monotonic() + 30.0
    while not (a.store.ping() and a.store.available):
        assert time.monotonic() < deadline, "the cluster never answered a ping"
        time.sleep(0.05)
    check_all_back(events, cluster)
    a.store.close()


async def test_an_async_ping_no_primary_answers_finds_the_store_down(cluster: Any) -> None:
    a, _ = replicas(cluster, {}, timeout=0.3)
    events: list[Any] = []
    a.store.add_hook(events.append)
    assert await a.store.aping()
    for server in cluster.servers:
        server.pause()
    try:
        assert not await a.store.aping()
    finally:
        for server in cluster.servers:
            server.resume()
    a.store._clients.sync()  # unavailable_nodes reads the sync client's slot map
    check_all_down(a.store, events)
    deadline = time.monotonic() + 30.0
    while not (await a.store.aping() and a.store.available):
        assert time.monotonic() < deadline, "the cluster never answered a ping"
        await asyncio.sleep(0.05)
    check_all_back(events, cluster)
    await a.store.aclose()
    a.store.close()


def test_a_ping_counts_a_refused_cluster_info_as_an_answer(redis_cluster: Any) -> None:
    # A ping asks each primary CLUSTER INFO; a user whose ACL lacks it pings as PING did.
    each_node(redis_cluster, "ACL", "SETUSER", "noinfo", "on", ">pw", "~*", "&*", "+@all",
              "-cluster|info")
    try:
        url = redis_cluster.url.replace("redis+cluster://", "redis+cluster://noinfo:pw@")
        store = RedisStore(url, prefix="noinfo", timeout=2.0)
        assert store.ping()
        assert store.available
        store.close()
    finally:
        each_node(redis_cluster, "ACL", "DELUSER", "noinfo")
