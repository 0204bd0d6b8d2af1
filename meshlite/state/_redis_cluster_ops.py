"""The command paths of a RedisStore on a Redis Cluster: each operation is checked
against, and counted for, the health of its key's primary (:mod:`._redis_nodes`),
and goes through redis-py's Cluster client, which routes it by slot.

A mixin of :class:`~meshlite.state._redis_ops.Commands`, whose one-Redis paths send
here when the store has no wire (a Cluster), and whose helpers (classifying an
error, waiting for a send slot, rediscovering) these paths share.

The commands sent to each primary in turn (``PING``, ``SCAN``) are in
:mod:`._redis_primaries`.

A hash slot that no node serves (``cluster-require-full-coverage no``, with slots
left unassigned or removed by ``CLUSTER DELSLOTS``) is no node's outage: a decision
on a key in it falls back alone, every node and the store stay up
(:meth:`ClusterCommands._unserved`). redis-py leaves such a slot out of its map and
raises ``SlotNotCoveredError`` for it without sending anything, and never reads the
map again for it; so the client that met it reads the map again, at most once per
``retry_interval``, and the slot's keys are shared again once a node serves it.
"""

from __future__ import annotations

import asyncio
import logging
from time import monotonic
from typing import TYPE_CHECKING, Any

from .._errors import StoreReplyError
from .._throttle import held_back
from ._base import StoreUnavailableError
from ._redis_nodes import CLUSTER_DOWN, key_of
from ._redis_primaries import PrimaryCommands

if TYPE_CHECKING:
    from .._throttle import Throttle
    from ._health import Health
    from ._redis_conn import Clients, LoopClient
    from ._redis_nodes import Nodes

__all__ = ["ClusterCommands"]

_log = logging.getLogger("meshlite.state")


class ClusterCommands(PrimaryCommands):
    """The Cluster paths of :class:`~meshlite.state._redis_ops.Commands`."""

    label: str
    round_trips: int
    _nodes: Nodes | None
    _clients: Clients
    _errors: tuple[type[BaseException], ...]
    _redirects: tuple[type[BaseException], ...]
    _unmapped: type[BaseException]
    _noscript: type[BaseException]
    _cluster_down: type[BaseException]
    _refusals: Throttle

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
            if health.reason:
                self._still_down(health, self._clients.made())
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
            if self._slotless(error):
                # The slot is missing from the client's map, which redis-py does not
                # read again for it (also a map read while the Cluster was not whole).
                if _due(self._clients, nodes):
                    self._rediscover()
                raise self._unserved(nodes, error, key) from error
            if isinstance(error, self._redirects):
                self._rediscover()
            raise self._failed(nodes, error, sent) from error
        finally:
            self._clients.slots.release()
        health.last_ok = monotonic()
        if health.down_since is not None or nodes.store.down_since is not None:
            self._answered(nodes, health, client, key)
        return result

    def _failed(self, nodes: Nodes, error: BaseException,
                sent: float) -> StoreUnavailableError:
        """The error a failed Cluster operation raises, after updating the health it
        is blamed on (:meth:`Nodes.blame`).

        While the store's own health is down, the operation that got this far was
        its probe (:meth:`Health.refuse`); when the failure is blamed on one node,
        the store's health is told too (still down, next probe after its backoff;
        or up, if the Cluster answered), else it would wait out the whole
        ``probe_timeout`` before the next probe, every decision falling back.

        ``CLUSTERDOWN`` (but for a slot no node serves: :meth:`_unserved`): the node
        that answered serves no key; it is down, with its reason
        (:data:`CLUSTER_DOWN`), though it answers."""
        blamed = nodes.blame(error)
        store = nodes.store
        if isinstance(error, self._cluster_down):
            raised = blamed.failed(error, CLUSTER_DOWN)
            if blamed is not store and store.down_since is not None:
                store.recovered()  # the Cluster answered
            return raised
        raised = self._classify(error, sent, blamed)
        if blamed is not store and store.down_since is not None:
            if isinstance(error, self._errors):
                store.failed(error)
            else:
                store.recovered()
        return raised

    def _slotless(self, error: BaseException) -> bool:
        """Whether ``error`` says the operation's slot is served by no node: missing
        from the client's map (``SlotNotCoveredError``), or so says the node the map
        named (``CLUSTERDOWN Hash slot not served``; redis-py read the map again)."""
        return isinstance(error, self._unmapped) or (
            isinstance(error, self._cluster_down) and "not served" in str(error))

    def _unserved(self, nodes: Nodes, error: BaseException,
                  key: Any) -> StoreUnavailableError:
        """The error of a decision on ``key``, whose slot no node serves: that
        decision falls back, no health goes down (a node that answered it, and the
        store, are up), and a warning names the slot, once per
        :data:`~._redis_ops.REPLY_LOG_INTERVAL` with the number of repeats."""
        if isinstance(error, self._cluster_down):  # a node answered
            for health in (nodes.blame(error), nodes.store):
                if health.down_since is not None and not health.reason:
                    health.recovered()
        slot = nodes.slot_of(key)
        where = "a hash slot" if slot is None else f"hash slot {slot}"
        repeats = self._refusals.passes(_UNSERVED)
        if repeats is not None:
            _log.warning("store %s: %s is served by no node (%s: %s): decisions on its "
                         "keys fall back, keys in other slots stay shared%s", self.label,
                         where, type(error).__name__, error, held_back(repeats))
        return StoreUnavailableError(
            f"store {self.label}: {where} is served by no node ({error})")

    def _still_down(self, health: Health, client: Any) -> None:
        """The probe of a primary that refuses keys (``CLUSTERDOWN``) asks it
        ``CLUSTER INFO`` first, and sends the decision only when it serves keys
        again: redis-py pauses 0.25 s after a ``CLUSTERDOWN`` reply and reads the
        slot map again, so a decision that met one would take that long.

        Raises:
            StoreUnavailableError: it still refuses keys, or did not answer.
        """
        node = client.get_node(node_name=health.node)
        if node is None:  # no longer in the slot map: the decision finds out
            return
        still = _still(health, self._ping_node(client, node, health, True))
        if still is not None:
            raise still

    async def _astill_down(self, health: Health, entry: LoopClient) -> None:
        """The async twin of :meth:`_still_down`, with the loop's client."""
        node = entry.client.get_node(node_name=health.node)
        if node is None:
            return
        still = _still(health, await self._aping_node(entry, node, health, True))
        if still is not None:
            raise still

    async def _astart(self, nodes: Nodes, entry: LoopClient) -> None:
        """Start the loop's client (:meth:`Nodes.start`) before its first operation,
        one task at a time; a start that reached no node fails the store's health
        (no node can be named), one that did ends its outage."""
        sent = monotonic()
        try:
            async with entry.starting:
                if entry.client.nodes_manager.default_node is None:
                    await nodes.start(entry.client, self._redis_errors())
        except self._redis_errors() as error:
            raise self._classify(error, sent, nodes.store) from error
        if nodes.store.down_since is not None:
            nodes.store.recovered()

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
        if client.nodes_manager.default_node is None:  # no topology read yet
            await self._astart(nodes, entry)
        health = nodes.health_of(client, key)
        if health.down_since is not None and health is not nodes.store:
            health.refuse()
            if health.reason:
                await self._astill_down(health, entry)
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
            if self._slotless(error):  # (see _run_cluster)
                if _due(entry, nodes):
                    await self._arediscover()
                raise self._unserved(nodes, error, key) from error
            if isinstance(error, self._redirects):
                await self._arediscover()
            raise self._failed(nodes, error, sent) from error
        finally:
            slots.release()
        health.last_ok = monotonic()
        if health.down_since is not None or nodes.store.down_since is not None:
            self._answered(nodes, health, client, key)
        return result


_UNSERVED = "a slot served by no node"
"""The kind of :meth:`ClusterCommands._unserved`'s warnings in the store's throttle."""


def _due(client: Clients | LoopClient, nodes: Nodes) -> bool:
    """Whether ``client`` (the sync clients, or a loop's) may read its slot map again
    for a slot it lacks: at most once per ``retry_interval``, as a down node is
    probed (the read asks every seed node while a slot is out)."""
    now = monotonic()
    if now < client.reread_at:
        return False
    client.reread_at = now + nodes.store.retry_interval
    return True


def _still(health: Health, outcome: BaseException | None) -> StoreUnavailableError | None:
    """The error of a probe that found ``health``'s primary still down (``outcome``:
    see :meth:`ClusterCommands._ping_node`), or ``None`` to send the decision: it
    serves keys, or refused ``CLUSTER INFO`` (an ACL without it), so the decision
    finds out."""
    if outcome is None or isinstance(outcome, StoreReplyError):
        return None
    if isinstance(outcome, StoreUnavailableError):
        return outcome
    error = StoreUnavailableError(f"store {health.where} {health.reason or outcome}")
    error.__cause__ = outcome
    return error
