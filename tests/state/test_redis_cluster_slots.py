"""A Redis Cluster with a hash slot that no node serves (``CLUSTER DELSLOTS``, with
``cluster-require-full-coverage no``: the other slots are served): the decisions
on keys in that slot fall back, each process on its own state, while every other
key stays shared and the store reports up; once a node serves the slot again
(``CLUSTER ADDSLOTS``), its keys are shared again, without a restart.

Two stores on one prefix stand for two processes: a quota that one spends and the
other finds spent was decided in Redis, not by a process's own limiter. The tests
run on the session's cluster (the ``cluster`` fixture of ``conftest.py``) and give
the slot back to its node whatever happens."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from cluster_replicas import each_node
from redis.crc import key_slot
from redis_topology import wait_until

import meshlite as ml
from meshlite.state import RedisStore, StoreUnavailable

_prefixes = itertools.count()


def owner(cluster: Any, slot: int, port: int) -> int | None:
    """The port of the node serving ``slot`` as the node at ``port`` sees it."""
    with redis.Redis(port=port, socket_timeout=1.0) as node:
        for start, end, primary, *_ in node.execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return int(primary[1])
    return None


@contextmanager
def unassigned(cluster: Any, slot: int) -> Iterator[Callable[[], None]]:
    """``slot`` served by no node while inside; yields a function that gives it back
    to its node (and waits until every node knows), as leaving does if not done."""
    port = owner(cluster, slot, cluster.servers[0].port)
    assert port is not None
    each_node(cluster, "CLUSTER", "DELSLOTS", slot)

    def assign() -> None:
        if owner(cluster, slot, port) is None:
            with redis.Redis(port=port) as node:
                node.execute_command("CLUSTER", "ADDSLOTS", slot)
        wait_until(lambda: all(owner(cluster, slot, s.port) == port
                               for s in cluster.servers),
                   f"every node seeing slot {slot} served again", 20.0)

    try:
        yield assign
    finally:
        assign()


def quota(store: RedisStore, name: str, rate: float = 1 / 60,
          asynchronous: bool = False) -> Any:
    """A call under a rate limit with a burst of 2 (refilled once a minute): 2 calls
    pass, then it refuses; a call returns True when admitted."""
    async def awork() -> bool:
        return True

    limit = ml.RateLimit(rate=rate, burst=2, mode="reject", name=name, store=store)
    return limit(awork) if asynchronous else limit(lambda: True)


def admits(call: Callable[[], Any]) -> bool:
    try:
        return bool(call())
    except ml.RateLimitedError:
        return False


async def aadmits(call: Callable[[], Any]) -> bool:
    try:
        return bool(await call())
    except ml.RateLimitedError:
        return False


def names(prefix: str) -> tuple[str, str, str, int]:
    """Two quota names (the uncovered one, and a probe whose key is in its slot),
    a name in another slot, and the uncovered slot."""
    slot = key_slot(f"{prefix}:rl:gone".encode())
    probe = next(f"p{i}" for i in itertools.count()
                 if key_slot(f"{prefix}:rl:p{i}".encode()) == slot)
    assert key_slot(f"{prefix}:rl:kept".encode()) != slot
    return "gone", probe, "kept", slot


def slot_warnings(caplog: pytest.LogCaptureFixture, slot: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "meshlite.state"
            and r.levelno == logging.WARNING and f"slot {slot} " in r.getMessage()]


def unavailable_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "meshlite.state"
            and r.levelno == logging.WARNING and "unavailable" in r.getMessage()]


def test_a_slot_no_node_serves_falls_back_for_its_keys_only(
        cluster: Any, caplog: pytest.LogCaptureFixture) -> None:
    prefix = f"slots{next(_prefixes)}"
    a = RedisStore(cluster.url, prefix=prefix, timeout=2.0, retry_interval=0.05)
    b = RedisStore(cluster.url, prefix=prefix, timeout=2.0, retry_interval=0.05)
    gone, probe, kept, slot = names(prefix)
    events: list[Any] = []
    a.add_hook(events.append)
    # Both clients read the slot map while the slot is served: the first decision
    # on its keys meets the node's "CLUSTERDOWN Hash slot not served", the next ones
    # the slot missing from the map redis-py read again then.
    assert a.ping()
    assert b.ping()
    a_gone, b_gone, a_kept, b_kept = (quota(a, gone), quota(b, gone), quota(a, kept),
                                      quota(b, kept))
    caplog.set_level(logging.INFO, logger="meshlite.state")
    try:
        with unassigned(cluster, slot) as assign:
            # The uncovered slot's quota: each process decides alone, no error escapes.
            assert [admits(a_gone) for _ in range(3)] == [True, True, False]
            assert [admits(b_gone) for _ in range(3)] == [True, True, False]
            assert a.fallbacks[("rate_limit", "local")] == 3
            # Every other key is still decided in Redis: b finds the burst a spent.
            assert [admits(a_kept), admits(a_kept)] == [True, True]
            assert not admits(b_kept)
            assert a.fallbacks[("rate_limit", "local")] == 3
            for store in (a, b):
                assert store.available
                assert store.unavailable_nodes == ()
                assert store.ping()
            assert not [e for e in events if isinstance(e, StoreUnavailable)]
            assert not unavailable_warnings(caplog)
            warned = slot_warnings(caplog, slot)
            assert len(warned) == 2, warned  # one per store, not one per decision
            assert "served by no node" in warned[0]

            assign()
            for store in (a, b):  # each reads the map again, by itself
                deadline = time.monotonic() + 20.0
                while True:
                    before = dict(store.fallbacks)
                    assert admits(quota(store, probe, rate=1e6))
                    if store.fallbacks == before:
                        break
                    assert time.monotonic() < deadline, "the slot was never shared again"
                    time.sleep(0.02)
            # The slot's quota is in Redis again (a new one: the key was never
            # written): a spends it, b finds it spent.
            a_gone, b_gone = quota(a, gone), quota(b, gone)
            assert [admits(a_gone), admits(a_gone)] == [True, True]
            assert not admits(b_gone)
    finally:
        a.close()
        b.close()


async def test_a_store_made_while_a_slot_is_unserved_shares_the_other_keys(
        cluster: Any, caplog: pytest.LogCaptureFixture) -> None:
    prefix = f"slots{next(_prefixes)}"
    gone, probe, kept, slot = names(prefix)
    caplog.set_level(logging.INFO, logger="meshlite.state")
    with unassigned(cluster, slot) as assign:
        # Made now, their clients read a slot map that lacks the slot, sync and async.
        a = RedisStore(cluster.url, prefix=prefix, timeout=2.0, retry_interval=0.05)
        b = RedisStore(cluster.url, prefix=prefix, timeout=2.0, retry_interval=0.05)
        a_gone, b_gone = quota(a, gone, asynchronous=True), quota(b, gone)
        try:
            assert [await aadmits(quota(a, kept, asynchronous=True)),
                    admits(quota(a, kept))] == [True, True]
            assert not await aadmits(quota(b, kept, asynchronous=True))
            assert [await aadmits(a_gone) for _ in range(3)] == [True, True, False]
            assert [admits(b_gone) for _ in range(3)] == [True, True, False]
            assert a.fallbacks[("rate_limit", "local")] == 3
            assert await a.aping()
            assert b.ping()
            assert a.available
            assert b.available
            assert not unavailable_warnings(caplog)
            assert len(slot_warnings(caplog, slot)) == 2

            await asyncio.to_thread(assign)
            for store, sync in ((a, False), (b, True)):
                deadline = time.monotonic() + 20.0
                while True:
                    before = dict(store.fallbacks)
                    call = quota(store, probe, rate=1e6, asynchronous=not sync)
                    assert admits(call) if sync else await aadmits(call)
                    if store.fallbacks == before:
                        break
                    assert time.monotonic() < deadline, "the slot was never shared again"
                    await asyncio.sleep(0.02)
            a_gone, b_gone = quota(a, gone, asynchronous=True), quota(b, gone)
            assert [await aadmits(a_gone), await aadmits(a_gone)] == [True, True]
            assert not admits(b_gone)
        finally:
            await a.aclose()
            a.close()
            b.close()


def test_a_slot_no_node_serves_costs_one_map_read_per_retry_interval(cluster: Any) -> None:
    # redis-py raises SlotNotCoveredError for the slot without sending anything and
    # never reads its map again for it; the store does, but not once per decision:
    # while the slot is out, a map read asks every seed node.
    prefix = f"slots{next(_prefixes)}"
    gone, _, kept, slot = names(prefix)
    store = RedisStore(cluster.url, prefix=prefix, timeout=2.0, retry_interval=600.0)
    try:
        with unassigned(cluster, slot):
            manager = store._clients.sync().nodes_manager
            reads = []
            read = manager.initialize
            manager.initialize = lambda *args, **kwargs: reads.append(1) or read(
                *args, **kwargs)
            call = quota(store, gone, rate=1e6)
            assert all(admits(call) for _ in range(50))
            assert store.fallbacks[("rate_limit", "local")] == 50
            assert len(reads) == 1  # the first decision's; the next after 600 s
            assert admits(quota(store, kept))
            assert store.fallbacks[("rate_limit", "local")] == 50
    finally:
        store.close()


def test_map_reads_that_fail_for_a_missing_slot_are_logged_once_per_window(
        cluster: Any, caplog: pytest.LogCaptureFixture) -> None:
    # The map is read again once per retry_interval while decisions meet the slot;
    # when no node answers the read, that is not one warning per read.
    prefix = f"slots{next(_prefixes)}"
    gone, _, _, slot = names(prefix)
    store = RedisStore(cluster.url, prefix=prefix, timeout=2.0, retry_interval=0.01)
    caplog.set_level(logging.INFO, logger="meshlite.state")
    try:
        with unassigned(cluster, slot):
            manager = store._clients.sync().nodes_manager
            # The client reads the map now, without the slot: each decision meets the
            # slot missing from it. (With a map read before, the first decision meets
            # the node's CLUSTERDOWN instead, and redis-py's own map read, failing
            # here, makes the store unavailable: one warning too, but another path.)
            manager.initialize()
            reads = []

            def unreachable(*args: Any, **kwargs: Any) -> None:
                reads.append(1)
                raise redis.ConnectionError("no seed node answered")

            manager.initialize = unreachable
            call = quota(store, gone, rate=1e6)
            for _ in range(5):
                assert admits(call)
                time.sleep(0.02)  # past retry_interval: the next decision reads again
            # (each decision past retry_interval reads; a store's probe on its own
            # thread may read once more on a loaded machine)
            assert len(reads) >= 5
            failed = [r.getMessage() for r in caplog.records
                      if "rediscovery failed" in r.getMessage()]
            assert len(failed) == 1, failed
    finally:
        store.close()
