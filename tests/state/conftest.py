"""Fixtures of the meshlite.state tests: real redis-server processes on loopback.

``redis_server`` is one server per test module; ``fresh_server`` is a server of
the test's own, for tests that kill, pause or restart it. Every test writes under
a prefix of its own, so tests sharing a server never see each other's keys.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from _system import require_program
from redis_server import RedisServer, free_port

from meshlite.state import RedisStore

_prefixes = itertools.count()


@pytest.fixture(scope="module")
def redis_binary() -> str:
    return require_program("redis-server", "redis-server")


@pytest.fixture(scope="module")
def redis_server(redis_binary: str) -> Iterator[RedisServer]:
    """One redis-server per test module, killed after it."""
    server = RedisServer(redis_binary).start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def fresh_server(redis_binary: str) -> Iterator[RedisServer]:
    """A redis-server for this test alone (to kill, pause or restart)."""
    server = RedisServer(redis_binary).start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def prefix() -> str:
    """A key prefix of its own for each test."""
    return f"t{next(_prefixes)}"


@pytest.fixture
def store(redis_server: RedisServer, prefix: str) -> Iterator[RedisStore]:
    """A store on the module's server (generous timeout: the machine may be busy)."""
    s = RedisStore(redis_server.url, prefix=prefix, timeout=2.0)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def other_store(redis_server: RedisServer, prefix: str) -> Iterator[RedisStore]:
    """A second store on the same server and prefix: another process, as far as the
    shared state can tell (it shares no connection nor memory with ``store``)."""
    s = RedisStore(redis_server.url, prefix=prefix, timeout=2.0)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A plain redis-py client, to look at (and tamper with) what the store wrote."""
    client = redis.Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def dead_url() -> str:
    """A loopback URL nothing listens on: every connection is refused at once."""
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Any]:
    """A real 3-primary Redis Cluster on loopback, shared by the session."""
    from redis_topology import RedisCluster3

    cluster = RedisCluster3(require_program("redis-server", "redis-server"),
                            require_program("redis-cli", "redis-tools")).start()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def sentinel_setup() -> Iterator[Any]:
    """A primary, a replica and a sentinel (``redis-server --sentinel``), per test:
    the test fails it over."""
    from redis_topology import SentinelSetup

    setup = SentinelSetup(require_program("redis-server", "redis-server")).start()
    try:
        yield setup
    finally:
        setup.close()


def _healed_after(cluster: Any) -> None:
    """Start (or resume) every node a test killed (or stopped), and wait until the
    cluster sees itself whole again."""
    from cluster_replicas import healed
    from redis_topology import wait_until

    for server in cluster.servers:
        if server._proc is None:  # killed by the test and not started again
            server.start()
        else:
            server.resume()  # stopped by the test (a no-op otherwise)
    wait_until(lambda: healed(cluster), "the cluster healing", 30.0)


@pytest.fixture
def cluster(redis_cluster: Any) -> Iterator[Any]:
    """The session's cluster, serving the slots of the primaries that answer while
    one does not; after the test, every node runs and answers again (see
    ``cluster_replicas.py``)."""
    from cluster_replicas import each_node

    each_node(redis_cluster, "CONFIG", "SET", "cluster-require-full-coverage", "no")
    try:
        yield redis_cluster
    finally:
        _healed_after(redis_cluster)
        each_node(redis_cluster, "CONFIG", "SET", "cluster-require-full-coverage", "yes")


@pytest.fixture
def full_coverage_cluster(redis_cluster: Any) -> Iterator[Any]:
    """The session's cluster as Redis configures one by default
    (``cluster-require-full-coverage yes``): once one primary is marked failed, the
    others answer ``CLUSTERDOWN`` to every key; after the test, every node runs and
    the cluster is whole again."""
    try:
        yield redis_cluster
    finally:
        _healed_after(redis_cluster)
