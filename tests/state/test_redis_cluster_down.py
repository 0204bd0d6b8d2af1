"""A Redis Cluster as Redis configures one by default (``cluster-require-full-coverage
yes``) loses a primary that has no replica: once the cluster marks it failed, the
other primaries still answer ``PING`` but refuse every key (``CLUSTERDOWN``).

Each primary that refuses keys is then down, said once in words an operator reads,
every decision on its keys falls back (``on_error="raise"`` raises meshlite's error,
never redis-py's) without waiting on redis-py's pause after a ``CLUSTERDOWN``, a
ping says so, and sharing resumes by itself when the cluster is whole again. Runs on the
session's cluster (the ``full_coverage_cluster`` fixture of ``conftest.py``)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
import redis
from cluster_replicas import Replica, replicas
from redis_topology import wait_until

import meshlite as ml
from meshlite.state import RedisStore, StoreRecovered, StoreUnavailable, StoreUnavailableError


def cluster_state_ok(port: int) -> bool:
    with redis.Redis(port=port, socket_timeout=1.0) as node:
        return b"cluster_state:ok" in node.execute_command("CLUSTER", "INFO")


def clusterdown_replies(cluster: Any) -> int:
    """``CLUSTERDOWN`` replies the running nodes of ``cluster`` have sent so far."""
    total = 0
    for server in cluster.servers:
        if server._proc is not None:
            with redis.Redis(port=server.port, socket_timeout=1.0) as node:
                stats = node.info("errorstats")
            total += stats.get("errorstat_CLUSTERDOWN", {}).get("count", 0)
    return total


def probed(replica: Replica, node: int, service: str, probes: int) -> None:
    """Call ``service`` until the store probed the primary at port ``node``
    ``probes`` more times; no call raises."""
    health = replica.store._nodes.node(f"127.0.0.1:{node}")  # type: ignore[union-attr]
    until = health.probes + probes
    deadline = time.monotonic() + 20.0
    while health.probes < until:
        assert time.monotonic() < deadline, "the store never probed the primary"
        replica.admitted(service)
        time.sleep(0.01)


async def async_checks(replica: Replica, node: int) -> None:
    """Async decisions fall back too (their probes ask ``CLUSTER INFO`` first) and
    an async ping finds the store down."""
    health = replica.store._nodes.node(f"127.0.0.1:{node}")  # type: ignore[union-attr]
    until = health.probes + 2
    deadline = time.monotonic() + 20.0
    while health.probes < until:
        assert time.monotonic() < deadline, "the store never probed the primary"
        await replica.mesh.call("breaker-healthy", lambda backend: True)
        await asyncio.sleep(0.01)
    assert not await replica.store.aping()
    await replica.store.aclose()


def test_a_cluster_down_falls_back_says_so_once_and_recovers(
        full_coverage_cluster: Any, caplog: pytest.LogCaptureFixture) -> None:
    cluster = full_coverage_cluster
    dead, healthy = cluster.servers[2], cluster.servers[0]
    a, b = replicas(cluster, {"healthy": healthy.port})
    quota, _ = a.names["healthy"]
    strict = RedisStore(cluster.url, prefix=a.store.prefix, on_error="raise", timeout=2.0)
    strict_call = ml.RateLimit(rate=1e6, name=quota, store=strict, mode="reject")(lambda: 1)
    events: list[Any] = []
    a.store.add_hook(events.append)
    assert a.store.ping()
    assert strict_call() == 1
    caplog.set_level(logging.INFO, logger="meshlite.state")
    dead.kill()
    wait_until(lambda: not cluster_state_ok(healthy.port), "the cluster going down", 30.0)

    assert a.admitted("quota-healthy")  # met CLUSTERDOWN, fell back
    assert a.store.fallbacks == {("rate_limit", "local"): 1}
    with pytest.raises(StoreUnavailableError, match="cluster-require-full-coverage"):
        strict_call()
    replies = clusterdown_replies(cluster)
    probed(a, healthy.port, "breaker-healthy", 3)  # each asks CLUSTER INFO first
    assert clusterdown_replies(cluster) == replies  # (redis-py pauses after one)
    assert a.store.unavailable_nodes == (f"127.0.0.1:{healthy.port}",)
    assert not a.store.ping()  # the nodes answer PING, but serve no key
    assert not a.store.available
    for _ in range(8):  # whichever primaries are due for a probe: never "unreachable"
        assert not a.store.ping()
        time.sleep(0.02)
    everyone = tuple(sorted(f"127.0.0.1:{s.port}" for s in cluster.servers))
    assert a.store.unavailable_nodes == everyone
    asyncio.run(async_checks(a, healthy.port))

    assert [type(e) for e in events] == [StoreUnavailable] * 3
    assert {e.node for e in events} == set(everyone)
    assert all("cluster-require-full-coverage" in e.reason for e in events
               if e.node != f"127.0.0.1:{dead.port}")
    warnings = [r.getMessage() for r in caplog.records
                if r.name == "meshlite.state" and r.levelno >= logging.WARNING]
    assert len(warnings) == 4  # once per store and primary: a's 3, strict's 1
    refusing = [w for w in warnings if "ConnectionError" not in w]
    assert len(refusing) == 3
    assert all("answers but refuses every key: the cluster is down" in w
               for w in refusing)

    dead.start()
    wait_until(lambda: all(cluster_state_ok(s.port) for s in cluster.servers),
               "the cluster healing", 30.0)
    deadline = time.monotonic() + 20.0
    while True:  # a probe finds the cluster whole: decided in Redis again
        fallbacks = dict(a.store.fallbacks)
        a.admitted("breaker-healthy")
        if a.store.fallbacks == fallbacks:
            break
        assert time.monotonic() < deadline, "decisions kept falling back"
        time.sleep(0.01)
    assert a.store.ping()
    assert a.store.available
    recovered = [e for e in events if isinstance(e, StoreRecovered)]
    assert {e.node for e in recovered} == set(everyone)
    assert len(recovered) == 3  # each outage ended once, without flapping
    fallbacks = dict(a.store.fallbacks)
    spent = [a.admitted("quota-healthy"), b.admitted("quota-healthy"),
             b.admitted("quota-healthy")]  # one burst of 2, shared in Redis
    assert spent == [True, True, False]
    assert a.store.fallbacks == fallbacks
    assert b.store.fallbacks == {}
    for store in (a.store, b.store, strict):
        store.close()
