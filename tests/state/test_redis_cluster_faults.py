"""RedisStore on a real Redis Cluster whose nodes misbehave during traffic: a hung
primary, slots moving (MOVED / ASK) under load."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from _system import require_program

import meshlite as ml
from meshlite.state import RedisStore, StoreRecovered, StoreUnavailable

_names = itertools.count()

PAUSE = 3.0
"""Seconds a node stays hung: far longer than a decision may take."""


def prefix() -> str:
    return f"fault{next(_names)}"


@contextmanager
def hung(port: int) -> Iterator[None]:
    """The node at ``port`` accepts and reads, but answers no client for ``PAUSE``
    seconds (``CLIENT PAUSE``; its cluster bus keeps talking, so the cluster stays up)."""
    admin = redis.Redis(port=port)
    admin.execute_command("CLIENT", "PAUSE", int(PAUSE * 1000), "ALL")
    ends = time.monotonic() + PAUSE
    try:
        yield
    finally:
        time.sleep(max(0.0, ends - time.monotonic()) + 0.05)
        admin.close()


def fast_store(url: str) -> RedisStore:
    """A store of its own prefix that falls back within 250 ms (a loaded machine's
    healthy decisions, connecting included, still meet it) and looks for Redis again
    every 50 ms."""
    return RedisStore(url, prefix=prefix(), timeout=0.25, retry_interval=0.05)


def node_of(store: RedisStore, name: str) -> int:
    """The port of the primary holding rate limit ``name``'s key (sync client's view)."""
    return store._clients.sync().get_node_from_key(f"{store.prefix}:rl:{name}").port


def test_a_hung_primary_costs_one_timeout_not_the_client_retries(redis_cluster: Any) -> None:
    store = fast_store(redis_cluster.url)
    call = ml.RateLimit(1e6, store=store, name="hung", mode="reject")(lambda: 1)
    assert call() == 1
    port = node_of(store, "hung")
    with hung(port):
        started = time.monotonic()
        assert call() == 1  # the in-process limiter answered
        waited = time.monotonic() - started
    # redis-py's Cluster client would retry (10 times, with backoff) until the node
    # answered again; the decision falls back within its timeout instead.
    assert store.fallbacks == {("rate_limit", "local"): 1}
    assert waited < PAUSE / 2
    store.close()


async def test_async_hung_primary_costs_one_timeout(redis_cluster: Any) -> None:
    store = fast_store(redis_cluster.url)

    async def work() -> int:
        return 1

    call = ml.RateLimit(1e6, store=store, name="hung", mode="reject")(work)
    assert await call() == 1
    port = store._clients.loop_client().client.get_node_from_key(
        f"{store.prefix}:rl:hung").port
    with hung(port):
        started = time.monotonic()
        assert await call() == 1
        waited = time.monotonic() - started
    assert store.fallbacks == {("rate_limit", "local"): 1}
    assert waited < PAUSE / 2
    await store.aclose()


async def test_an_async_client_whose_map_lacks_a_slot_falls_back_then_reads_it_again(
        redis_cluster: Any) -> None:
    # A client that read the slot map while the Cluster was not whole (a node
    # restarting, say) lacks those slots. redis-py below 8.2 raised a bare KeyError
    # there, through every policy and whatever on_error said, and never read the map
    # again: a registry on the Cluster failed for good (pyproject.toml asks 8.2).
    store = fast_store(redis_cluster.url)

    async def work() -> int:
        return 1

    call = ml.RateLimit(1e6, store=store, name="unmapped", mode="reject")(work)
    assert await call() == 1
    store._clients.loop_client().client.nodes_manager.slots_cache.clear()
    assert await call() == 1  # decided locally: the slot's primary is unknown
    assert store.fallbacks == {("rate_limit", "local"): 1}
    deadline = time.monotonic() + 20.0
    while store.fallbacks != {("rate_limit", "local"): 1} or not await store.aping():
        assert time.monotonic() < deadline, "the map was never read again"
        await asyncio.sleep(0.05)
    before = dict(store.fallbacks)
    assert await call() == 1
    assert store.fallbacks == before  # decided in Redis again
    await store.aclose()


def test_connections_a_restart_closed_reconnect_without_falling_back(
        redis_cluster: Any) -> None:
    store = RedisStore(redis_cluster.url, prefix=prefix(), timeout=2.0)
    calls = [ml.RateLimit(1e6, store=store, name=f"k{i}", mode="reject")(lambda: 1)
             for i in range(12)]
    assert sum(c() for c in calls) == 12
    for server in redis_cluster.servers:  # what a restart does to open connections
        with redis.Redis(port=server.port) as admin:
            admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    assert sum(c() for c in calls) == 12
    assert store.fallbacks == {}
    store.close()


def _start_moving(ports: list[int], slot: int
                  ) -> tuple[dict[int, redis.Redis], dict[int, str], int, int]:
    """Mark ``slot`` IMPORTING on another primary and MIGRATING on its owner; returns
    a client per port, the node ids, the owner's port and the new owner's."""
    nodes = {port: redis.Redis(port=port) for port in ports}
    ids = {port: n.execute_command("CLUSTER", "MYID").decode() for port, n in nodes.items()}
    source = next(master[1] for low, high, master, *_ in
                  nodes[ports[0]].execute_command("CLUSTER", "SLOTS") if low <= slot <= high)
    target = next(port for port in ports if port != source)
    nodes[target].execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
    nodes[source].execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])
    return nodes, ids, source, target


def _move_slot(ports: list[int], slot: int) -> None:
    """Move ``slot`` to another primary the way ``redis-cli --cluster reshard`` does:
    IMPORTING / MIGRATING (clients get ASK), MIGRATE its keys, then the new owner
    (clients get MOVED)."""
    nodes, ids, source, target = _start_moving(ports, slot)
    time.sleep(0.05)
    while keys := nodes[source].execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
        nodes[source].execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000,
                                      "KEYS", *keys)
        time.sleep(0.05)
    # The new owner first, then the old one, then the rest, as the cluster specification
    # and `redis-cli --cluster reshard` do: the old owner first would answer MOVED to
    # a new owner still importing, which answers MOVED back, and a client bounces
    # between them until its redirections run out ("TTL exhausted").
    for port in (target, source, *(p for p in ports if p not in (target, source))):
        nodes[port].execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target])
    for node in nodes.values():
        node.close()


def test_slots_moving_under_traffic_cost_no_fallback(redis_cluster: Any) -> None:
    p = prefix()
    store = RedisStore(redis_cluster.url, prefix=p, timeout=2.0)
    breaker = ml.CircuitBreaker(name="moving", store=store)
    call = ml.Pipeline(breaker, ml.RateLimit(1e6, store=store, name="moving"))(lambda: 1)
    assert call() == 1
    stop = threading.Event()
    made = [0]

    def traffic() -> None:
        while not stop.is_set():
            made[0] += call()

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        client = store._clients.sync()
        ports = [s.port for s in redis_cluster.servers]
        for key in (f"{p}:rl:moving", f"{p}:cb:{{moving}}"):  # one key; a breaker's two
            _move_slot(ports, client.keyslot(key))
    finally:
        stop.set()
        worker.join()
    assert made[0] > 0
    assert store.fallbacks == {}  # MOVED and ASK are followed, never a fallback
    assert breaker.state == "closed"
    store.close()


@pytest.fixture
def replicated_cluster(redis_binary: str) -> Iterator[Any]:
    """3 primaries with a replica each, of this test alone (it fails one over)."""
    from redis_topology import RedisCluster3

    cluster = RedisCluster3(redis_binary, require_program("redis-cli", "redis-tools"),
                            replicas=1, node_timeout_ms=500).start()
    try:
        yield cluster
    finally:
        cluster.close()


def test_a_primary_failing_over_to_its_replica_recovers(replicated_cluster: Any) -> None:
    for server in replicated_cluster.servers:  # the other primaries serve meanwhile
        with redis.Redis(port=server.port) as node:
            node.config_set("cluster-require-full-coverage", "no")
    store = fast_store(replicated_cluster.url)
    events: list[Any] = []
    store.add_hook(events.append)
    call = ml.RateLimit(1e6, store=store, name="failover", mode="reject")(lambda: 1)
    assert call() == 1
    port = node_of(store, "failover")
    client = store._clients.sync()
    other = next(f"b{i}" for i in itertools.count()  # a breaker on another primary
                 if client.get_node_from_key(f"{store.prefix}:cb:{{b{i}}}").port != port)
    elsewhere = ml.CircuitBreaker(name=other, store=store)(lambda: 1)
    replicated_cluster.server(port).kill()  # its replica takes its slots over
    deadline = time.monotonic() + 20.0
    while store.available:  # until a decision meets the dead primary
        assert call() == 1
    assert store.unavailable_nodes == (f"127.0.0.1:{port}",)
    while not store.available:  # a probe finds the promoted replica
        assert time.monotonic() < deadline, "the store never found the new primary"
        assert call() == 1
        assert elsewhere() == 1
        time.sleep(0.01)
    while True:  # decided in Redis again (a replica just promoted may answer late once)
        fallbacks = dict(store.fallbacks)
        assert sum(call() for _ in range(20)) == 20
        if store.fallbacks == fallbacks:
            break
        assert time.monotonic() < deadline, "decisions kept falling back"
    assert ("circuit_breaker", "local") not in fallbacks  # the other primary's key never fell back
    assert node_of(store, "failover") != port
    dead = f"127.0.0.1:{port}"
    assert (type(events[0]), events[0].node) == (StoreUnavailable, dead)
    ended = [e for e in events if isinstance(e, StoreRecovered) and e.node == dead]
    assert len(ended) == 1  # by its replica serving its slots, not by answering
    assert "served by" in ended[0].reason or "serves no slot" in ended[0].reason
    store.close()


def test_a_failover_with_full_coverage_required_shares_every_key_again(
        replicated_cluster: Any) -> None:
    # Redis's default, cluster-require-full-coverage yes: from the primary's failure
    # to its replica's promotion, the other primaries answer CLUSTERDOWN too.
    store = fast_store(replicated_cluster.url)
    events: list[Any] = []
    store.add_hook(events.append)
    calls = [ml.RateLimit(1e6, store=store, name=f"k{i}", mode="reject")(lambda: 1)
             for i in range(12)]  # keys on every primary
    assert sum(call() for call in calls) == 12
    port = node_of(store, "k0")
    replicated_cluster.server(port).kill()
    deadline = time.monotonic() + 20.0
    while True:  # no restart: decided in Redis again once the replica serves
        fallbacks = dict(store.fallbacks)
        assert sum(call() for call in calls) == 12  # never an error, whatever falls back
        if (fallbacks and store.fallbacks == fallbacks and store.ping()
                and store.available):
            break
        assert time.monotonic() < deadline, "decisions kept falling back"
        time.sleep(0.01)
    assert node_of(store, "k0") != port
    down = [e.node for e in events if isinstance(e, StoreUnavailable)]
    assert down
    assert None not in down  # primaries' outages, never the whole store's
    back = [e.node for e in events if isinstance(e, StoreRecovered)]
    assert sorted(back) == sorted(down)  # each ended once, without flapping
    store.close()


@contextmanager
def migrating(ports: list[int], slot: int) -> Iterator[None]:
    """``slot`` half way through a reshard (MIGRATING on its owner, IMPORTING on another
    primary), none of its keys moved yet; back to stable after."""
    nodes, _, source, target = _start_moving(ports, slot)
    try:
        yield
    finally:
        for port in (source, target):
            nodes[port].execute_command("CLUSTER", "SETSLOT", slot, "STABLE")
        for node in nodes.values():
            node.close()


@pytest.mark.parametrize("window_type", ["count", "time"])
def test_a_quiet_breaker_in_a_migrating_slot_answers_at_once(redis_cluster: Any,
                                                             window_type: str) -> None:
    store = RedisStore(redis_cluster.url, prefix=prefix(), timeout=0.5)
    breaker = ml.CircuitBreaker(store=store, name="quiet", window=10,
                                window_type=window_type, min_calls=5)
    call = breaker(lambda: 1)
    assert call() == 1
    breaker.reset()  # its window is empty: before, its key was gone
    client = store._clients.sync()
    slot = client.keyslot(f"{store.prefix}:cb:{{quiet}}")
    with migrating([s.port for s in redis_cluster.servers], slot):
        assert [call() for _ in range(3)] == [1, 1, 1]
    # Its state hash on the old owner and its window nowhere, Redis answered TRYAGAIN,
    # which redis-py's Cluster client retries with pauses for about 0.4 s, and then
    # each call fell back.
    assert store.fallbacks == {}
    store.close()
