"""The command paths of a RedisStore on a Redis Cluster: each operation is checked
against, and counted for, the health of its key's primary (:mod:`._redis_nodes`),
and goes through redis-py's Cluster client, which routes it by slot.

A mixin of :class:`~meshlite.state._redis_ops.Commands`, whose one-Redis paths send
here when the store has no wire (a Cluster), and whose helpers (classifying an
error, waiting for a send slot, rediscovering) these paths share.
"""

from __future__ import annotations

import asyncio
from time import monotonic
from typing import TYPE_CHECKING, Any

from ._redis_nodes import key_of

if TYPE_CHECKING:
    from ._base import StoreUnavailableError
    from ._health import Health
    from ._redis_conn import Clients
    from ._redis_nodes import Nodes

__all__ = ["ClusterCommands"]


class ClusterCommands:
    """The Cluster paths of :class:`~meshlite.state._redis_ops.Commands`."""

    round_trips: int
    _nodes: Nodes | None
    _clients: Clients
    _redirects: tuple[type[BaseException], ...]
    _noscript: type[BaseException]

    if TYPE_CHECKING:  # defined by Commands
        def _redis_errors(self) -> tuple[type[BaseException], ...]: ...
        def _classify(self, error: BaseException, sent: float,
                      health: Health) -> StoreUnavailableError: ...
        def _wait_slot(self, health: Health | None = None) -> None: ...
        async def _await_slot(self, slots: asyncio.Semaphore, health: Health) -> None: ...
        def _rediscover(self) -> None: ...
        async def _arediscover(self) -> None: ...

    def _run_cluster(self, script: Any, nkeys: int, args: tuple[Any, ...]) -> Any:
        """:meth:`_run` on a Cluster, against the health of the key's primary."""
        nodes = self._nodes
        assert nodes is not None
        key = key_of(script, nkeys, args)
        if nodes.store.down_since is not None:
            nodes.store.refuse()
        health = nodes.health_of(self._clients.made(), key)
        if health.down_since is not None and health is not nodes.store:
            health.refuse()
        self._wait_slot(health)
        self.round_trips += 1
        sent = monotonic()
        try:
            client = self._clients.sync()
            if script is None:
                result = client.execute_command(*args)
            else:
                try:
                    result = client.evalsha(script.sha, nkeys, *args)
                except self._noscript:  # see _arun_cluster
                    result = client.eval(script.script, nkeys, *args)
        except self._redis_errors() as error:
            if isinstance(error, self._redirects):
                self._rediscover()
            raise self._classify(error, sent, nodes.blame(error, health)) from error
        finally:
            self._clients.slots.release()
        health.last_ok = monotonic()
        if health.down_since is not None or nodes.store.down_since is not None:
            self._answered(nodes, health, client, key)
        return result

    def _answered(self, nodes: Nodes, health: Health, client: Any, key: Any) -> None:
        """A Cluster operation on ``key``, checked against ``health``, was answered
        while ``health`` or the store's was down."""
        if health.down_since is not None:
            nodes.answered(health, client, key)
        if nodes.store.down_since is not None:  # any answer: the Cluster is reachable
            nodes.store.recovered()

    async def _arun_cluster(self, script: Any, nkeys: int, args: tuple[Any, ...]) -> Any:
        """:meth:`_arun` on a Cluster, against the health of the key's primary."""
        nodes = self._nodes
        assert nodes is not None
        key = key_of(script, nkeys, args)
        if nodes.store.down_since is not None:
            nodes.store.refuse()
        entry = self._clients.loop_client()
        client = entry.client
        health = nodes.health_of(client, key)
        if health.down_since is not None and health is not nodes.store:
            health.refuse()
        slots = entry.slots
        if slots.locked():
            await self._await_slot(slots, health)
        else:
            await slots.acquire()
        self.round_trips += 1
        sent = monotonic()
        try:
            if script is None:
                result = await client.execute_command(*args)
            else:
                try:
                    result = await client.evalsha(script.sha, nkeys, *args)
                except self._noscript:
                    # EVAL caches the script on the key's primary: redis-py's Script
                    # would send SCRIPT LOAD to every primary, which fails while one
                    # of them is down (and the decision with it).
                    result = await client.eval(script.script, nkeys, *args)
        except self._redis_errors() as error:
            if isinstance(error, self._redirects):
                await self._arediscover()
            blamed = nodes.blame(error, health)
            if blamed is nodes.store:
                nodes.rotate(client)
            raise self._classify(error, sent, blamed) from error
        finally:
            slots.release()
        health.last_ok = monotonic()
        if health.down_since is not None or nodes.store.down_since is not None:
            self._answered(nodes, health, client, key)
        return result
