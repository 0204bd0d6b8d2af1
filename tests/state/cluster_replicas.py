"""Helpers of the tests that stop one primary of the session's Redis Cluster while
the others answer (``cluster-require-full-coverage no``; the ``cluster`` fixture
of ``conftest.py``): two replicas of a service, each with a store of its own,
stand for two processes, with policy names whose keys live on chosen primaries."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import pytest
import redis

import meshlite as ml
from meshlite.state import RedisStore

__all__ = ["Replica", "each_node", "healed", "marked_failed", "name_on", "node_records",
           "replicas"]

_prefixes = itertools.count()

BACKEND = "http://127.0.0.1:9"  # never contacted: the calls ignore their backend


def each_node(cluster: Any, *command: Any) -> None:
    """Run ``command`` on every node of ``cluster``."""
    for server in cluster.servers:
        with redis.Redis(port=server.port) as node:
            node.execute_command(*command)


def healed(cluster: Any) -> bool:
    """Whether every node of ``cluster`` runs and sees the cluster whole."""
    for server in cluster.servers:
        with redis.Redis(port=server.port, socket_timeout=1.0) as node:
            if b"cluster_state:ok" not in node.execute_command("CLUSTER", "INFO"):
                return False
            if b"fail" in node.execute_command("CLUSTER", "NODES"):
                return False
    return True


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



def marked_failed(cluster: Any, port: int) -> bool:
    """Whether the node at ``port`` sees a node of ``cluster`` marked failed."""
    with redis.Redis(port=port, socket_timeout=1.0) as node:
        return b"fail" in node.execute_command("CLUSTER", "NODES")
