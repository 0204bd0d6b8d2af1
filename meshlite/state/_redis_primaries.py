"""The commands a RedisStore on a Redis Cluster sends to each primary in turn, not
routed by a key: ``CLUSTER INFO`` (:meth:`~meshlite.state.RedisStore.ping`) and
``SCAN`` (clearing a cache namespace).

Each one is checked against, and counted for, the health of the primary it goes
to (:mod:`._redis_nodes`), as a decision on one of its keys would be: sent
without a target, redis-py would send a ``PING`` to one node only (its default
node), which says nothing of the others, and a failure there would count against
the whole store; a ``SCAN`` of every primary would fail as a whole, with
redis-py's error, for one primary down. So a ping finds the store down only when
no primary answers, and a scan yields the keys of the primaries that answer
before it reports the others.

A ping asks ``CLUSTER INFO``, not ``PING``: a node answers ``PING`` while the
cluster is down (``cluster_state:fail``, with ``cluster-require-full-coverage
yes`` once a primary failed without a replica to promote), and answers every
decision ``CLUSTERDOWN`` then: such a primary is down, with its reason
(:data:`~meshlite.state._redis_nodes.CLUSTER_DOWN`), and a ping that finds no
primary serving keys returns ``False``.

A mixin of :class:`~meshlite.state._redis_cluster_ops.ClusterCommands`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from time import monotonic
from typing import TYPE_CHECKING, Any

from .._errors import StoreReplyError
from ._base import StoreUnavailableError
from ._redis_nodes import CLUSTER_DOWN, serving

if TYPE_CHECKING:
    from ._health import Health
    from ._redis_conn import Clients, LoopClient
    from ._redis_nodes import Nodes

__all__ = ["PrimaryCommands"]

_STATE = ("CLUSTER", "INFO")
"""A ping of one primary: whether it answers, and whether the cluster serves keys."""


class PrimaryCommands:
    """The per-primary commands of :class:`~meshlite.state.RedisStore` on a Cluster."""

    round_trips: int
    _nodes: Nodes | None
    _clients: Clients
    _errors: tuple[type[BaseException], ...]
    _cluster_down: type[BaseException]

    if TYPE_CHECKING:  # defined by Commands and ClusterCommands
        def _redis_errors(self) -> tuple[type[BaseException], ...]: ...
        def _classify(self, error: BaseException, sent: float,
                      health: Health) -> StoreUnavailableError: ...
        def _failed(self, nodes: Nodes, error: BaseException,
                    sent: float) -> StoreUnavailableError: ...
        def _wait_slot(self, health: Health | None = None) -> None: ...
        async def _await_slot(self, slots: asyncio.Semaphore, health: Health) -> None: ...
        async def _astart(self, nodes: Nodes, entry: LoopClient) -> None: ...

    def _primaries(self) -> tuple[Nodes, Any]:
        """The nodes' health and the sync client (made, reading the slot map, on
        first use), checked against the store's own health.

        Raises:
            StoreUnavailableError: the store is down, or no node answered.
        """
        nodes = self._nodes
        assert nodes is not None
        if nodes.store.down_since is not None:
            nodes.store.refuse()
        sent = monotonic()
        try:
            return nodes, self._clients.sync()
        except self._redis_errors() as error:
            raise self._failed(nodes, error, sent) from error

    def _on_node(self, client: Any, node: Any, health: Health, *args: Any,
                 probing: bool = False) -> Any:
        """Run one command on the primary ``node``, against its ``health`` (unless
        the caller already claimed its probe: ``probing``); the reply, which the
        caller judges (:meth:`_answered_by`, :meth:`_state`).

        Raises:
            StoreUnavailableError: the primary is down, or did not answer in time
                (its cause the redis-py error), or refused.
        """
        if health.down_since is not None and not probing:
            health.refuse()
        self._wait_slot(health)
        self.round_trips += 1
        sent = monotonic()
        try:
            reply = client.execute_command(*args, target_nodes=node)
        except self._redis_errors() as error:
            raise self._classify(error, sent, health) from error
        finally:
            self._clients.slots.release()
        return reply

    @staticmethod
    def _answered_by(health: Health) -> None:
        """A primary answered: its outage, if any, is over (unless it refuses keys
        (:data:`CLUSTER_DOWN`): answering a command without a key says nothing of that)."""
        health.last_ok = monotonic()
        if health.down_since is not None and not health.reason:
            health.recovered()

    # -- ping ------------------------------------------------------------------------

    def _ping_cluster(self) -> bool:
        """:meth:`~meshlite.state.RedisStore.ping` on a Cluster: one ``CLUSTER INFO``
        to each primary of the slot map, one after the other; ``True`` when at least
        one answered that it serves keys (the store's own health is down only when
        none could be reached)."""
        try:
            nodes, client = self._primaries()
        except StoreUnavailableError:
            return False
        outcomes = [self._ping_node(client, node, nodes.node(node.name))
                    for node in client.nodes_manager.get_nodes_by_server_type("primary")]
        return self._pinged(nodes, client, outcomes)

    def _ping_node(self, client: Any, node: Any, health: Health,
                   probing: bool = False) -> BaseException | None:
        """Ask one primary ``CLUSTER INFO``, against its ``health`` (see
        :meth:`_on_node`): ``None`` if it answered that the cluster serves keys,
        else why not (see :meth:`_why` and :meth:`_state`)."""
        try:
            reply = self._on_node(client, node, health, *_STATE, probing=probing)
        except StoreUnavailableError as refused:
            return self._why(refused, health)
        return self._state(reply, health)

    async def _aping_cluster(self) -> bool:
        """The async twin of :meth:`_ping_cluster`: the primaries are asked at once
        (a hung one costs one ``timeout``, however many there are)."""
        nodes = self._nodes
        assert nodes is not None
        try:
            if nodes.store.down_since is not None:
                nodes.store.refuse()
            entry = self._clients.loop_client()
            if entry.client.nodes_manager.default_node is None:  # no topology read yet
                await self._astart(nodes, entry)
        except StoreUnavailableError:
            return False
        client = entry.client
        outcomes = await asyncio.gather(*(
            self._aping_node(entry, node, nodes.node(node.name))
            for node in client.nodes_manager.get_nodes_by_server_type("primary")))
        return self._pinged(nodes, client, outcomes)

    async def _aping_node(self, entry: LoopClient, node: Any, health: Health,
                          probing: bool = False) -> BaseException | None:
        """The async twin of :meth:`_ping_node`, with the loop's client."""
        slots = entry.slots
        try:
            if health.down_since is not None and not probing:
                health.refuse()
            if slots.locked():
                await self._await_slot(slots, health)
            else:
                await slots.acquire()
        except StoreUnavailableError as refused:
            return self._why(refused, health)
        self.round_trips += 1
        sent = monotonic()
        try:
            reply = await entry.client.execute_command(*_STATE, target_nodes=node)
        except self._redis_errors() as error:
            return self._why(self._classify(error, sent, health), health, error)
        finally:
            slots.release()
        return self._state(reply, health)

    def _why(self, refused: StoreUnavailableError, health: Health,
             error: BaseException | None = None) -> BaseException:
        """Why a primary did not answer a ping: the redis-py ``error`` (by default
        the cause of ``refused``) when it is down now; a ``ClusterDownError`` when it
        is down refusing keys and was not asked now (it answers, so it does not make
        the store unreachable); else ``refused`` (it is down and was not probed, or
        answered other requests, or refused this one)."""
        cause = refused.__cause__ if error is None else error
        if health.down_since is None:
            return refused
        if cause is not None:
            return cause
        return self._cluster_down(health.reason) if health.reason else refused

    def _state(self, reply: Any, health: Health) -> BaseException | None:
        """The outcome of a primary's ``CLUSTER INFO`` ``reply``, after updating its
        ``health``: ``None`` while it serves keys, else a ``ClusterDownError`` (it
        answers ``PING``, and ``CLUSTERDOWN`` to every decision): it is down
        (:data:`CLUSTER_DOWN`)."""
        health.last_ok = monotonic()
        if serving(reply):
            if health.down_since is not None:
                health.recovered()
            return None
        error = self._cluster_down("the node reports cluster_state:fail")
        health.failed(error, CLUSTER_DOWN)
        return error

    def _pinged(self, nodes: Nodes, client: Any,
                outcomes: list[BaseException | None]) -> bool:
        """Whether a ping of every primary found the Cluster reachable (``outcomes``:
        each primary's, ``None`` if it answered); updates the store's own health."""
        if nodes.down:
            nodes.prune(client)  # a primary that lost its slots is not pinged again
        store = nodes.store
        # A refusal (NOPERM: an ACL without CLUSTER INFO) is an answer, as to PING.
        if any(outcome is None or isinstance(outcome, StoreReplyError)
               for outcome in outcomes):
            if store.down_since is not None:
                store.recovered()
            return True
        if any(isinstance(e, self._cluster_down) for e in outcomes):
            return False  # reached, serving no key: each one is down, not the store
        unreachable = [e for e in outcomes if isinstance(e, self._errors)]
        if unreachable:  # no primary could be reached: the store is down
            store.failed(unreachable[-1])
        return False

    # -- scan ------------------------------------------------------------------------

    def _scan_cluster(self, pattern: str, count: int) -> Iterator[list[Any]]:
        """Batches of the keys matching ``pattern``, ``SCAN`` on each primary in turn.

        Raises:
            StoreUnavailableError: after the keys of the primaries that answered, the
                last failure of those that did not (their keys were not all seen).
        """
        nodes, client = self._primaries()
        missed: StoreUnavailableError | None = None
        for node in client.nodes_manager.get_nodes_by_server_type("primary"):
            health = nodes.node(node.name)
            cursor: Any = 0
            try:
                while True:
                    cursor, keys = self._on_node(client, node, health, "SCAN", cursor,
                                                 "MATCH", pattern, "COUNT", count)
                    self._answered_by(health)
                    if isinstance(cursor, dict):  # redis-py's cursors, by node
                        cursor = cursor[node.name]
                    if keys:
                        yield list(keys)
                    if int(cursor) == 0:
                        break
            except StoreUnavailableError as error:
                missed = error
        if missed is not None:
            raise missed
