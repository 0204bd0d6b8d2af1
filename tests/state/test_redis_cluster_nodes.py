"""A Redis Cluster store whose primary dies or hangs while the others answer
(``cluster-require-full-coverage no``): the keys of the other primaries' slots stay
shared, the keys of the lost primary's slots fall back to each process's own state,
and come back to Redis when the primary does.

Two meshes, each with a store of its own, stand for two processes. The tests run on
the session's cluster (``redis_cluster``): they stop one of its primaries and bring
it back, and leave the cluster as they found it (every node up, full coverage
required again)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis_topology import wait_until

import meshlite as ml
from meshlite.state import RedisStore, StoreRecovered, StoreUnavailable

_prefixes = itertools.count()

BACKEND = "http://127.0.0.1:9"  # never contacted: the calls ignore their backend


def _each_node(cluster: Any, *command: Any) -> None:
    for server in cluster.servers:
        with redis.Redis(port=server.port) as node:
            node.execute_command(*command)


def _healthy(cluster: Any) -> bool:
    for server in cluster.servers:
        with redis.Redis(port=server.port, socket_timeout=1.0) as node:
            if b"cluster_state:ok" not in node.execute_command("CLUSTER", "INFO"):
                return False
            if b"fail" in node.execute_command("CLUSTER", "NODES"):
                return False
    return True


@pytest.fixture
def cluster(redis_cluster: Any) -> Iterator[Any]:
    """The session's cluster, serving the slots of the primaries that answer while
    one does not; after the test, every node runs and answers again."""
    _each_node(redis_cluster, "CONFIG", "SET", "cluster-require-full-coverage", "no")
    try:
        yield redis_cluster
    finally:
        for server in redis_cluster.servers:
            if server._proc is None:  # killed by the test and not started again
                server.start()
            else:
                server.resume()  # stopped by the test (a no-op otherwise)
        wait_until(lambda: _healthy(redis_cluster), "the cluster healing", 30.0)
        _each_node(redis_cluster, "CONFIG", "SET", "cluster-require-full-coverage", "yes")


def name_on(store: RedisStore, port: int, key: Callable[[str], str], taken: set[str]) -> str:
    """A policy name whose key (``key(name)``) lives on the primary at ``port``."""
    client = store._clients.sync()
    for i in itertools.count():
        name = f"n{i}"
        if name not in taken and client.get_node_from_key(key(name)).port == port:
            taken.add(name)
            return name
    raise AssertionError("unreachable")


class Replica:
    """One process of a service: a store of its own and a mesh whose services share
    their rate limit (``quota-<role>``) and breaker (``breaker-<role>``) through it."""

    def __init__(self, url: str, prefix: str, names: dict[str, tuple[str, str]],
                 timeout: float, retry_interval: float) -> None:
        self.store = RedisStore(url, prefix=prefix, timeout=timeout,
                                retry_interval=retry_interval)
        services = []
        for role, (quota, breaker) in names.items():
            limit = ml.RateLimit(rate=1.0, per=60.0, burst=2, mode="reject", name=quota,
                                 store=self.store)
            services.append(ml.Service(f"quota-{role}", backends=[BACKEND],
                                       pipeline=ml.Pipeline(limit)))
            circuit = ml.CircuitBreaker(name=breaker, store=self.store, window=4, min_calls=2,
                                        failure_rate=0.5, open_seconds=60.0)
            services.append(ml.Service(f"breaker-{role}", backends=[BACKEND],
                                       pipeline=ml.Pipeline(circuit)))
        self.mesh = ml.Mesh(services)
        self.names = names

    async def eventually_refused(self, service: str) -> bool:
        """Whether an async call of ``service`` is refused by Redis (not by the
        process's own limiter) within 20 tries."""
        for _ in range(20):
            fallbacks = dict(self.store.fallbacks)
            try:
                await self.mesh.call(service, lambda backend: True)
            except ml.RateLimitedError:
                if self.store.fallbacks == fallbacks:  # refused by Redis, not locally
                    await self.store.aclose()
                    return True
            await asyncio.sleep(0.06)
        await self.store.aclose()
        return False

    def admitted(self, service: str) -> bool:
        """Whether a call of ``service`` was let through (else its policy refused it)."""
        try:
            return bool(self.mesh.call_sync(service, lambda backend: True))
        except (ml.RateLimitedError, ml.CircuitOpenError):
            return False

    def fail(self, service: str) -> None:
        """A call of ``service`` that fails (the breaker counts it)."""
        def broken(backend: object) -> None:
            raise ValueError("the dependency failed")

        with pytest.raises(ValueError, match="the dependency failed"):
            self.mesh.call_sync(service, broken)


def replicas(cluster: Any, roles: dict[str, int], timeout: float = 2.0,
             retry_interval: float = 0.05) -> tuple[Replica, Replica]:
    """Two replicas sharing one prefix; ``roles`` maps a role to the port of the
    primary its quota and breaker keys live on. The timeout is generous, as in
    ``conftest.py``'s stores: a loaded machine may take over 0.5 s to answer."""
    prefix = f"nodes{next(_prefixes)}"
    finder = RedisStore(cluster.url, prefix=prefix)
    taken: set[str] = set()
    names = {role: (name_on(finder, port, lambda n: f"{prefix}:rl:{n}", taken),
                    name_on(finder, port, lambda n: f"{prefix}:cb:{{{n}}}", taken))
             for role, port in roles.items()}
    finder.close()
    return (Replica(cluster.url, prefix, names, timeout, retry_interval),
            Replica(cluster.url, prefix, names, timeout, retry_interval))


def node_records(caplog: pytest.LogCaptureFixture, node: str, level: int) -> list[str]:
    """The messages about the primary ``node`` logged at ``level`` on ``meshlite.state``."""
    return [r.getMessage() for r in caplog.records if r.name == "meshlite.state"
            and r.levelno == level and f"node {node} " in r.getMessage()]


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
    wait_until(lambda: _marked_failed(cluster, healthy.port), "the node marked failed", 30.0)
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



def test_a_probe_that_meets_the_dead_primary_ends_the_stores_own_outage_probe(
        cluster: Any) -> None:
    """While the store's own health is down (a ``PING`` reached no answer from one
    primary), the decision that probes it may go to the dead primary's keys: its
    failure is the probe's outcome, so the next decision probes again after the
    backoff (``retry_interval``), not after the whole probe allowance (about
    ``timeout``)."""
    dead, healthy = cluster.servers[0], cluster.servers[1]
    a, _ = replicas(cluster, {"healthy": healthy.port, "dead": dead.port}, timeout=5.0)
    assert a.admitted("quota-healthy")  # the client is made, its slot map read
    dead.kill()
    wait_until(lambda: _marked_failed(cluster, healthy.port), "the node marked failed", 30.0)
    assert not a.store.ping()  # one primary does not answer: the store is down
    time.sleep(0.06)  # past the backoff (at most retry_interval)
    assert a.admitted("quota-dead")  # the probe: the dead node, then a's own limiter
    assert a.store.unavailable_nodes == (f"127.0.0.1:{dead.port}",)
    time.sleep(0.06)
    fallbacks = dict(a.store.fallbacks)
    assert a.admitted("quota-healthy")  # the next probe, answered: the second of 2
    assert a.store.fallbacks == fallbacks  # decided in Redis
    assert not a.admitted("quota-healthy")
    assert a.store.fallbacks == fallbacks
    a.store.close()


def _marked_failed(cluster: Any, port: int) -> bool:
    with redis.Redis(port=port, socket_timeout=1.0) as node:
        return b"fail" in node.execute_command("CLUSTER", "NODES")
