"""RedisStore: policy state shared by every process that points at one Redis
(or one Redis Cluster, or the primary a set of Sentinels names).

redis-py is imported when a store is made, never by ``import meshlite``. Each
decision is one command (mostly one ``EVALSHA`` of a small Lua script, so it is
atomic in Redis), run through redis-py's clients and ``Script`` objects over
bounded pools (:mod:`._redis_conn`); each network step (connecting, sending,
reading the reply) is bounded by ``timeout``, sync and async alike.

Errors are classified (:meth:`RedisStore._classify`):

- a connection failure or a timeout means Redis is unreachable: the store is
  *down* (see :mod:`._health`): decisions fall back without the network, one probe
  at a time with jittered backoff, until Redis answers again; on a Cluster, the
  primary that did not answer is down, for the keys of its slots only
  (:mod:`._redis_nodes`);
- ``CLUSTERDOWN`` on a Cluster (the node answers, but serves no key): that primary
  is down as if it did not answer (:data:`._redis_nodes.CLUSTER_DOWN`), and its
  probes ask it ``CLUSTER INFO`` before sending a decision;
- ``READONLY`` (a failover demoted the node), ``MOVED``/``ASK`` (Cluster slots
  moved): the clients rediscover the topology; that one decision falls back;
- a Cluster hash slot that no node serves (``SlotNotCoveredError``, ``CLUSTERDOWN
  Hash slot not served``): that one decision falls back, no node is down, and the
  client reads its slot map again, at most once per ``retry_interval``
  (:mod:`._redis_cluster_ops`);
- any other error reply (``WRONGTYPE`` on a tampered key, ``OOM``, a script
  error) concerns one key or one command: that decision falls back and the error
  is logged on ``meshlite.state``, and the store stays up.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from .._events import Hook
from .._fork import fork_safe
from .._validate import at_least, fail, non_negative, positive, wait_seconds
from ._base import (
    LOCAL,
    ON_ERROR_MODES,
    OnError,
    SharedCache,
    SharedCircuit,
    SharedGcra,
    StoreUnavailableError,
)
from ._codec import resolve_codec
from ._health import Health
from ._redis_conn import Clients, StoreBusyError, client_options
from ._redis_keys import check_prefix, hash_tag, quota_key
from ._redis_nodes import Nodes
from ._redis_ops import Commands, Script, StoreReplyError
from ._redis_target import check_url, import_redis, parse_target
from ._redis_wire import Wire

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._clock import Clock
    from ._base import CircuitConfig

__all__ = ["DEFAULT_MAX_CONNECTIONS", "DEFAULT_PREFIX", "DEFAULT_RETRY_INTERVAL",
           "DEFAULT_TIMEOUT", "RedisStore", "Script", "StoreBusyError", "StoreReplyError"]

DEFAULT_PREFIX = "meshlite"
"""Every key the store writes starts with ``"<prefix>:"``."""

DEFAULT_TIMEOUT = 0.05
"""Seconds one network step of a store operation may take before the decision falls back."""

DEFAULT_CONNECT_TIMEOUT = 0.5
"""Seconds opening a connection may take (a busy event loop must not time out a
connect that already succeeded; a hung Redis accepts connections anyway)."""

DEFAULT_RETRY_INTERVAL = 0.2
"""Longest pause between probes of a down store (each pause is jittered between
half and all of it), so decisions share state again within about this long."""

DEFAULT_MAX_CONNECTIONS = 64
"""Connections a store keeps per process (sync) and per event loop (async)."""

DEFAULT_POOL_TIMEOUT: float | None = None
"""Seconds a decision may wait for a free connection before it falls back alone
(``None``: as long as it takes; a healthy Redis frees connections at its pace, and
when Redis hangs the waiters find the store down after their wait)."""


class RedisStore(Commands):
    """Policy state in Redis, shared by every process (and host) using the same Redis.

    Pass it as ``store=`` to :class:`~meshlite.RateLimit`, :class:`~meshlite.Cache`
    and :class:`~meshlite.CircuitBreaker` (with ``name=``). One store holds one
    bounded connection pool for sync calls and one per event loop for async calls;
    it is thread-safe and meant to be shared by all the policies of a process.

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` for TLS
            (certificate options as URL query arguments, as redis-py reads them),
            ``unix:///path/to/socket``, ``redis+cluster://host:port[,host:port]``
            (a Redis Cluster, from its seed nodes; also a list of ``"host:port"``),
            ``redis+sentinel://host:port[,host:port]/service[/db]`` (the primary
            the sentinels name), or a ready redis-py client or connection pool.
        prefix: Start of every key written (several apps may share one Redis).
        on_error: What a decision does when Redis does not answer within
            ``timeout``: ``"local"`` (use the policy's in-process state),
            ``"allow"`` (admit the call), ``"deny"`` (reject it) or ``"raise"``
            (raise :class:`StoreUnavailableError`).
        timeout: Seconds a decision may wait for Redis's reply (> 0, at most
            ``threading.TIMEOUT_MAX``, about 292 years: a socket takes no more): one
            that meets a hung Redis has fallen back within that long.
        connect_timeout: Seconds opening a connection may take (> 0, at most
            ``threading.TIMEOUT_MAX``).
        retry_interval: Longest pause between probes while Redis is unreachable
            (> 0; each pause is jittered between half and all of it).
        max_connections: Connections per process (sync) and per event loop (async);
            more concurrent decisions wait for one (integer >= 1).
        pool_timeout: Seconds a decision may wait for a free connection before it
            falls back alone (> 0, at most ``threading.TIMEOUT_MAX``), or ``None``
            (default) to wait as long as it takes; the wait never counts against
            ``timeout``.
        codec: How cached values are encoded: ``"json"`` (default), ``"msgpack"``,
            ``"pickle"`` (only if you trust everyone who can write to this Redis:
            decoding a pickle runs code) or an object with ``dumps``/``loads``.
        cache_lock: Seconds of the cross-process single-flight lock of a cache
            miss (one process computes, the others wait for its entry), or
            ``None`` (default) for single flight within each process only.
        state_ttl: Seconds a breaker's state lives in Redis after its last change
            (> 0, default a day): see ``docs/scaling.md``.
        rate_lease: Tokens a rate-limit decision may take at once when its quota
            has them free (integer >= 1; 1, the default, takes one per call): the
            process spends the extra ones locally, so a limit may be exceeded by
            at most ``rate_lease - 1`` calls per process and key.
        circuit_cache: Seconds a process trusts the closed state it last learned
            from Redis (>= 0), so a breaker call costs one script, not two; a
            process learns another opened the circuit at its next recorded
            outcome or within this long. 0 asks Redis before every call.
        circuit_batch: Seconds closed-circuit outcomes may be queued in the process
            and sent together (>= 0; 0, the default, sends each at once): fewer
            round trips, a circuit that opens up to that much later.

    Raises:
        ConfigError: an option is out of range, or redis-py is not installed
            (``pip install 'meshlite-mesh[redis]'``).
    """

    def __init__(
        self,
        url: object = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = DEFAULT_PREFIX,
        on_error: OnError = LOCAL,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        retry_interval: float = DEFAULT_RETRY_INTERVAL,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        pool_timeout: float | None = DEFAULT_POOL_TIMEOUT,
        codec: object = "json",
        cache_lock: float | None = None,
        state_ttl: float = 86_400.0,
        rate_lease: int = 1,
        circuit_cache: float = 1.0,
        circuit_batch: float = 0.0,
    ) -> None:
        check_prefix(prefix)
        if on_error not in ON_ERROR_MODES:
            fail("RedisStore", "on_error", on_error, "'local', 'allow', 'deny' or 'raise'")
        self.timeout = wait_seconds("RedisStore", "timeout", timeout)
        self.connect_timeout = wait_seconds("RedisStore", "connect_timeout",
                                              connect_timeout)
        self.retry_interval = positive("RedisStore", "retry_interval", retry_interval)
        self.max_connections = at_least("RedisStore", "max_connections", max_connections, 1)
        self.pool_timeout = (None if pool_timeout is None
                             else wait_seconds("RedisStore", "pool_timeout", pool_timeout))
        self.state_ttl = positive("RedisStore", "state_ttl", state_ttl)
        self.rate_lease = at_least("RedisStore", "rate_lease", rate_lease, 1)
        self.circuit_cache = non_negative("RedisStore", "circuit_cache", circuit_cache)
        self.circuit_batch = non_negative("RedisStore", "circuit_batch", circuit_batch)
        self.round_trips = 0
        """Operations sent to Redis so far (approximate under threads: a benchmark
        figure, not an exact count)."""
        self.cache_lock = (None if cache_lock is None
                           else positive("RedisStore", "cache_lock", cache_lock))
        self.codec = resolve_codec(codec)
        self.prefix = prefix
        self.on_error: OnError = on_error
        check_url(url)  # before redis-py is imported
        self._redis = r = import_redis()
        self._target = parse_target(
            r, url, client_options(r, self.timeout, self.connect_timeout))
        self.url = url if isinstance(url, str) else self._target.label
        self.label = self._target.label
        self._health = self._new_health(None)
        self.hooks = self._health.hooks
        self._nodes = (Nodes(self._health, self._new_health)
                       if self._target.kind == "cluster" else None)
        self.fallbacks = self._health.fallbacks
        """Decisions taken without Redis, by ``(policy kind, action)``."""
        self._learn_errors(r)
        self._clients = Clients(self._target, self.max_connections)
        self._wire = None if self._target.kind == "cluster" else Wire(r)
        self._lock = fork_safe(threading.Lock())

    def _new_health(self, node: str | None,
                    watch: Callable[[Health, bool], None] | None = None) -> Health:
        """The store's health (``node=None``), or a Cluster primary's, sharing its hooks."""
        r = self._redis
        return Health(self.label, self.retry_interval,
                      r.backoff.EqualJitterBackoff(self.retry_interval, self.retry_interval),
                      self.timeout + self.connect_timeout + self.retry_interval,
                      hooks=None if node is None else self._health.hooks, node=node,
                      watch=watch)

    # -- the factory the policies use ------------------------------------------------

    def rate_limit(self, name: str, interval: float, tau: float) -> SharedGcra:
        """The shared GCRA state of rate limit ``name`` (keys ``<prefix>:rl:<name>...``,
        the name escaped: :func:`~meshlite.state._redis_keys.quota_key`)."""
        from ._redis_gcra import RedisGcra

        return RedisGcra(self, quota_key(self.prefix, name), interval, tau)

    def cache(self, namespace: str, ttl: float, stale_ttl: float) -> SharedCache:
        """The shared entries of cache ``namespace`` (keys ``<prefix>:cache:<namespace>...``)."""
        from ._redis_cache import RedisCache

        return RedisCache(self, f"{self.prefix}:cache:{namespace}", ttl, stale_ttl)

    def circuit(self, name: str, options: CircuitConfig, clock: Clock) -> SharedCircuit:
        """The shared state machine of breaker ``name`` (keys ``<prefix>:cb:{<name>}...``,
        one Cluster slot); ``clock`` is the breaker's, on which ``metrics().opened_at``
        is given."""
        from ._redis_circuit import RedisCircuit

        return RedisCircuit(self, f"{self.prefix}:cb:{hash_tag(name)}", options, clock)

    # -- health ----------------------------------------------------------------------

    @property
    def available(self) -> bool:
        """Whether the last operation reached Redis (``True`` before the first one);
        on a Cluster, also whether no primary is down (:attr:`unavailable_nodes`)."""
        return self._health.down_since is None and not self.unavailable_nodes

    @property
    def unavailable_nodes(self) -> tuple[str, ...]:
        """The Cluster primaries (``"host:port"``) that did not answer their last
        operation (a decision on one of their keys, or a :meth:`ping`): decisions
        on keys in their slots fall back, the others share.
        Empty for one Redis or a Sentinel primary, and while every primary answers."""
        nodes = self._nodes
        if nodes is None or not nodes.down:
            return ()
        return nodes.unavailable(self._clients.made())

    def add_hook(self, hook: Hook) -> Callable[[], None]:
        """Subscribe to :class:`StoreUnavailable` and :class:`StoreRecovered`;
        returns the unsubscribe function."""
        return self.hooks.add(hook)

    def note_fallback(self, policy: str, action: str) -> None:
        """Count one fallback (see :meth:`Health.note_fallback`)."""
        self._health.note_fallback(policy, action)

    # -- lifecycle -------------------------------------------------------------------

    def ping(self) -> bool:
        """Whether Redis answers a ``PING`` now (on a Cluster, serves keys; never raises).

        On a Cluster, every primary of the slot map is asked (``CLUSTER INFO``),
        and each one's health updated (:attr:`unavailable_nodes`): ``True`` when at
        least one answers that it serves keys (the keys of the others fall back,
        and :attr:`available` is false), ``False`` when none does: none answers
        (the whole store is then down), or those that answer report
        ``cluster_state:fail`` (they refuse every key with ``CLUSTERDOWN``).
        While a primary (or the store) is down, it is asked only when its next
        probe is due, as a decision would be; until then it counts as not answering.
        """
        if self._nodes is not None:
            return self._ping_cluster()
        try:
            self.command("PING")
        except StoreUnavailableError:
            return False
        return True

    async def aping(self) -> bool:
        """The async twin of :meth:`ping` (a Cluster's primaries are asked at once)."""
        if self._nodes is not None:
            return await self._aping_cluster()
        try:
            await self.acommand("PING")
        except StoreUnavailableError:
            return False
        return True

    def close(self) -> None:
        """Close the sync connections (async ones: :meth:`aclose` in their loop, or
        when ``asyncio.run`` ends the loop). A client you passed is not closed."""
        self._clients.close()

    async def aclose(self) -> None:
        """Close the sync connections and those of the running event loop."""
        await self._clients.aclose()
        self._clients.close()

    def __repr__(self) -> str:
        return (f"RedisStore({self.label!r}, prefix={self.prefix!r}, "
                f"on_error={self.on_error!r}, timeout={self.timeout!r})")

