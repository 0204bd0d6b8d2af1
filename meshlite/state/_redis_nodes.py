"""Health per primary of a Redis Cluster store: a dead primary turns off sharing
for the keys of its slots only.

With ``cluster-require-full-coverage no`` the other primaries keep serving their
slots when one fails, so one up/down state for the whole store would be wrong both
ways: every key would fall back for one dead node, or every decision on the dead
node's keys would pay a timeout. Instead each primary (``"host:port"``) has a
:class:`~meshlite.state._health.Health` of its own, sharing the store's hooks:

- a decision looks up the primary of its key's slot in the Cluster client's slot
  map (the map redis-py routes by) and is refused at once while that primary is
  down, except one probe at a time, as a whole store is (:mod:`._health`);
- a failure is blamed on the node redis-py names on the error (the one it tried,
  after following redirects); a slot that no node serves is nobody's outage (see
  :mod:`._redis_cluster_ops`);
- a primary's outage ends when a probe to its slots is answered: by the node
  itself, restarted, or by the replica that took its slots over (redis-py
  refreshes its slot map after the failure). A primary that no longer serves
  any slot in the client's map is no longer down either: nobody would probe it;
- a primary that answers ``CLUSTERDOWN`` (the cluster is down, as it is by default
  once a primary failed without a replica to promote) is down too, though it
  answers, with its reason (:data:`CLUSTER_DOWN`): its probes ask it ``CLUSTER
  INFO`` first (redis-py pauses 0.25 s after a ``CLUSTERDOWN``), and its outage
  ends when it reports ``cluster_state:ok`` or serves a key; answering a command
  without a key (``SCAN``) does not end it.

The store's own health is checked by what no primary can be named for before it
is sent: an operation without a key, or made before the client has read the slot
map; it is down only after a failure that names no node (the client could not be
made: no node reachable), or a ping that no primary answered. A failure that
names a node is that node's, whatever health the operation was checked against.
While the store's health is down, every decision is refused but one probe at a
time, as on one Redis; any answer ends it.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import TYPE_CHECKING, Any

from .._fork import fork_safe
from ._health import Health

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["CLUSTER_DOWN", "Nodes", "key_of", "serving"]

CLUSTER_DOWN = (
    "answers but refuses every key: the cluster is down (CLUSTERDOWN), as it is while "
    "a hash slot is not served (a primary failed with no replica to take its slots "
    "over, and cluster-require-full-coverage is yes, the default), while this node is "
    "cut off from the majority, or just after it started; decisions on keys in its "
    "slots fall back until it reports cluster_state:ok (CLUSTER INFO)")
"""Why a Cluster primary that answers ``CLUSTERDOWN`` is down (its health's
``reason``, the :class:`~meshlite.state.StoreUnavailable` event's and the log's)."""


def serving(reply: Any) -> bool:
    """Whether a node's ``CLUSTER INFO`` ``reply`` (the text, or redis-py's dict of
    it) says the cluster serves keys (``cluster_state:ok``)."""
    if isinstance(reply, dict):
        state = reply.get("cluster_state", reply.get(b"cluster_state"))
        return state in ("ok", b"ok")
    text = reply if isinstance(reply, bytes) else str(reply).encode()
    return b"cluster_state:ok" in text


def key_of(script: Any, nkeys: int, args: tuple[Any, ...]) -> Any:
    """The first key of an operation (``args`` of :meth:`Commands._run`), or ``None``."""
    if script is not None:
        return args[0] if nkeys else None
    return args[1] if len(args) > 1 else None


class Nodes:
    """The health of each primary of one Cluster store (see the module doc).

    Args:
        store: The store's own health (its label, hooks and backoff).
        make: Makes the health of one primary, given its name and the watch to pass.
    """

    __slots__ = ("_lock", "_make", "_prune_at", "_slot", "_table", "down", "store")

    def __init__(self, store: Health,
                 make: Callable[[str, Callable[[Health, bool], None]], Health]) -> None:
        from redis.crc import key_slot  # (redis-py is imported: a store is being made)

        self._slot = key_slot
        self.store = store
        self.down: dict[str, Health] = {}
        """The primaries down now, by name."""
        self._make = make
        self._table: dict[str, Health] = {}
        self._lock = fork_safe(threading.Lock())
        self._prune_at = 0.0

    def _watch(self, health: Health, down: bool) -> None:
        name = health.node or ""
        if down:
            self.down[name] = health
        else:
            self.down.pop(name, None)

    def node(self, name: str) -> Health:
        """The health of the primary ``name`` (``"host:port"``)."""
        health = self._table.get(name)
        if health is None:
            with self._lock:
                health = self._table.get(name)
                if health is None:
                    health = self._table[name] = self._make(name, self._watch)
        return health

    def health_of(self, client: Any, key: Any) -> Health:
        """The health that answers for an operation on ``key`` with ``client`` (a
        redis-py Cluster client, or ``None`` before one is made)."""
        if client is None or key is None:
            return self.store
        try:
            name = client.nodes_manager.slots_cache[
                self._slot(key if type(key) is bytes else key.encode())][0].name
        except (KeyError, IndexError):  # the slot map is not read yet
            return self.store
        if self.down and time.monotonic() >= self._prune_at:
            self.prune(client)
        health = self._table.get(name)
        return self.node(name) if health is None else health

    def slot_of(self, key: Any) -> int | None:
        """The hash slot of ``key``, or ``None`` for an operation without a key."""
        if key is None:
            return None
        return int(self._slot(key if type(key) is bytes else key.encode()))

    def blame(self, error: BaseException) -> Health:
        """The health a failed operation counts against: the node redis-py names on
        ``error`` (the one it tried), else the store's.

        Also for an operation checked against the store's health (one without a key,
        or the first of a client that had not read the slot map yet): a primary that
        did not answer is that primary's outage, not the whole Cluster's.
        """
        tried = getattr(error, "connection", None)
        host, port = getattr(tried, "host", None), getattr(tried, "port", None)
        if host is None or port is None:
            # The client could not be made or read the slot map, or the error is the
            # Cluster's (no node reachable): the store's.
            return self.store
        return self.node(f"{host}:{port}")

    @staticmethod
    async def start(client: Any, errors: tuple[type[BaseException], ...]) -> None:
        """Read the slot map and the command table of an async Cluster ``client``
        that has none yet, trying each primary in turn for the table.

        redis-py's async client reads the command table (``COMMAND``) from the first
        primary of its map (the one holding slot 0), and a failure there fails the
        whole start, naming no node; while that primary is down the client could
        never start, and every decision would find the store down. So a failed
        start moves that primary to the end of the map and tries again, once per
        primary (the sync client retries on the others by itself). Starting before
        the first command matters too: until the client has a topology, redis-py
        sends a script to a random primary (a dead one, as often as not).

        Raises:
            Exception: the last failure (one of ``errors``), when no primary answered.
        """
        manager = client.nodes_manager
        for tried in itertools.count(1):
            try:
                await client.initialize()
                return
            except errors:
                primaries = manager.get_nodes_by_server_type("primary")
                if tried >= len(primaries):  # none read (no node reachable), or all tried
                    raise
                manager.move_node_to_end_of_cached_nodes(primaries[0].name)

    def answered(self, health: Health, client: Any, key: Any) -> None:
        """An operation on ``key`` that ``health`` answered for succeeded after
        ``health``'s node was down: by the node itself, or by another that took its
        slots over."""
        now = self.health_of(client, key)
        if now is health or now is self.store:
            health.recovered()
        else:
            health.recovered(f"its slots are served by {now.node} now")

    def prune(self, client: Any) -> None:
        """End the outage of each down primary that serves no slot in ``client``'s
        map (a failover gave its slots to its replica): no decision would probe it."""
        self._prune_at = time.monotonic() + self.store.retry_interval
        if client is None or not self.down:
            return
        primaries = {n.name for n in client.nodes_manager.get_nodes_by_server_type("primary")}
        if not primaries:
            return
        for name, health in list(self.down.items()):
            if name not in primaries:
                health.recovered("it serves no slot now: another node took them over")

    def unavailable(self, client: Any) -> tuple[str, ...]:
        """The primaries down now (after :meth:`prune`), sorted."""
        self.prune(client)
        return tuple(sorted(self.down))
