"""The commands of a RedisStore: run one operation, classify its error, keep health.

See :mod:`._redis` for the error classes and their effect; this module holds the
sync and async paths every decision takes (a send slot, the wire or the client,
the classification). One Redis (or a Sentinel primary) has one health; a Cluster
has one per primary, looked up by the operation's key (:mod:`._redis_nodes`).
"""

from __future__ import annotations

import asyncio
import logging
from time import monotonic
from typing import TYPE_CHECKING, Any

from .._errors import StoreReplyError
from .._throttle import Throttle, held_back
from ._base import StoreUnavailableError
from ._redis_cluster_ops import ClusterCommands
from ._redis_conn import StoreBusyError

if TYPE_CHECKING:
    from ._health import Health
    from ._redis_conn import Clients
    from ._redis_nodes import Nodes
    from ._redis_wire import Wire

__all__ = ["REPLY_LOG_INTERVAL", "Commands", "Script", "StoreReplyError"]

_log = logging.getLogger("meshlite.state")

REPLY_LOG_INTERVAL = 10.0
"""Seconds between two warnings about refused operations of one kind (error class):
a refusal that every decision meets (``OOM`` from a full Redis, ``WRONGTYPE`` on a
hot key) is logged once, then with the number of repeats, not once per call."""


class Script:
    """A Lua script of the store; run through redis-py's ``Script`` (``EVALSHA``,
    loaded again when Redis forgot it after a restart)."""

    __slots__ = ("_async", "_sync", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self._sync: Any = None
        self._async: Any = None


class Commands(ClusterCommands):
    """The command paths of :class:`~meshlite.state.RedisStore` (a mixin); a
    Cluster's are in :class:`ClusterCommands`."""

    label: str
    timeout: float
    max_connections: int
    pool_timeout: float | None
    round_trips: int
    _redis: Any
    _health: Health
    _nodes: Nodes | None
    _clients: Clients
    _wire: Wire | None
    _errors: tuple[type[BaseException], ...]
    _redirects: tuple[type[BaseException], ...]
    _unmapped: type[BaseException]
    _replies: tuple[type[BaseException], ...]
    _timeouts: tuple[type[BaseException], ...]
    _noscript: type[BaseException]
    _cluster_down: type[BaseException]
    _refusals: Throttle

    def _learn_errors(self, redis: Any) -> None:
        """Note the redis-py exception classes :meth:`_classify` tells apart."""
        ex = redis.exceptions
        from redis.exceptions import RedisClusterException

        self._errors = (
            ex.ConnectionError, ex.TimeoutError, ex.ClusterDownError, ex.TryAgainError,
            RedisClusterException, OSError, TimeoutError, asyncio.TimeoutError)
        self._redirects = (ex.ReadOnlyError, ex.AskError)
        self._unmapped = ex.SlotNotCoveredError
        self._timeouts = (ex.TimeoutError, TimeoutError)
        self._noscript = ex.NoScriptError
        self._cluster_down = ex.ClusterDownError
        self._refusals = Throttle(REPLY_LOG_INTERVAL)  # by the error's class
        self._replies = (ex.RedisError,)

    def _classify(self, error: BaseException, sent: float,
                  health: Health) -> StoreUnavailableError:
        """The error a failed operation raises, after updating ``health`` (the
        store's, or on a Cluster the primary's the operation went to; module doc).

        A timeout marks it down only if it has answered nothing since the request
        was sent (``sent``); if it answered other requests meanwhile, this reply was
        slow (a starved thread or loop, a big value): that decision falls back alone.
        """
        if isinstance(error, self._timeouts) and health.last_ok > sent:
            return StoreUnavailableError(
                f"store {health.where} answered too slowly ({type(error).__name__}), "
                "while answering other requests")
        if isinstance(error, self._redirects):
            health.recovered()
            return StoreReplyError(f"store {self.label} redirected one operation "
                                   f"({type(error).__name__}: {error}); rediscovering")
        if isinstance(error, self._errors):
            return health.failed(error)
        if _in_set_up(error):  # every new connection meets it: no operation can pass
            return health.failed(error, SET_UP_REFUSED)
        if not health.reason:  # Redis answered (CLUSTERDOWN: it still refuses keys)
            health.recovered()
        self._warn_refusal(error)
        return StoreReplyError(
            f"store {self.label} refused one operation: {type(error).__name__}: {error}")

    def _warn_refusal(self, error: BaseException) -> None:
        """Log a refused operation: the first of its kind, then one record per
        :data:`REPLY_LOG_INTERVAL` saying how many came since (each is counted in the
        fallback metrics all the same)."""
        kind = type(error).__name__
        repeats = self._refusals.passes(kind)
        if repeats is None:
            return
        _log.warning("store %s refused one operation: %s: %s%s", self.label, kind,
                     error, held_back(repeats))

    def _wait_slot(self, health: Health | None = None) -> None:
        """Take a send slot; the wait is not part of ``timeout``, and a caller that
        waited re-checks ``health`` (the store's by default: it may have gone down
        meanwhile)."""
        slots = self._clients.slots
        if slots.acquire(False):
            return
        if not slots.acquire(timeout=self.pool_timeout):
            raise self._busy("")
        self._recheck(slots, health or self._health)

    @staticmethod
    def _recheck(slots: Any, health: Health) -> None:
        """After waiting for a send slot: give it back if ``health`` went down."""
        if health.down_since is not None:
            try:
                health.refuse()
            except StoreUnavailableError:
                slots.release()
                raise

    def _busy(self, where: str) -> StoreBusyError:
        return StoreBusyError(
            f"store {self.label}: all {self.max_connections} connections{where} stayed "
            f"busy for {self.pool_timeout:g} s (pool_timeout); raise max_connections")

    # -- commands (sync) -------------------------------------------------------------

    def eval(self, script: Script, nkeys: int, *args: Any) -> Any:
        """Run ``script`` on ``args`` (the first ``nkeys`` are keys); the raw reply.

        Raises:
            StoreUnavailableError: Redis did not answer in time, or refused.
        """
        run = script._sync
        if run is None:
            run = script._sync = self._redis.commands.core.Script(None, script.source.encode())
        return self._run(run, nkeys, args)

    def command(self, *args: Any) -> Any:
        """Run one Redis command, such as ``("GET", key)``; the raw reply.

        Raises:
            StoreUnavailableError: Redis did not answer in time, or refused.
        """
        return self._run(None, 0, args)

    def _run(self, script: Any, nkeys: int, args: tuple[Any, ...]) -> Any:
        if self._wire is None:
            return self._run_cluster(script, nkeys, args)
        health = self._health
        if health.down_since is not None:
            health.refuse()
        self._wait_slot()
        self.round_trips += 1
        sent = monotonic()
        try:
            result = self._wire.call(self._clients.sync().connection_pool, script,
                                     args if script is None else (nkeys, *args))
        except self._redis_errors() as error:
            if isinstance(error, self._redirects):
                self._rediscover()
            raise self._classify(error, sent, health) from error
        finally:
            self._clients.slots.release()
        health.last_ok = monotonic()
        if health.down_since is not None:
            health.recovered()
        return result

    def _redis_errors(self) -> tuple[type[BaseException], ...]:
        return self._errors + self._replies

    def _rediscover(self) -> None:
        try:
            self._clients.rediscover()
        except Exception as error:  # the next operations will tell
            self._warn_rediscovery(error)

    def _warn_rediscovery(self, error: BaseException) -> None:
        """Log a failed rediscovery, at most once per :data:`REPLY_LOG_INTERVAL` (a
        Cluster client lacking a slot tries once per ``retry_interval``)."""
        repeats = self._refusals.passes("rediscovery")
        if repeats is not None:
            _log.warning("store %s: rediscovery failed: %s%s", self.label, error,
                         held_back(repeats))

    # -- commands (async) ------------------------------------------------------------

    async def aeval(self, script: Script, nkeys: int, *args: Any) -> Any:
        """The async twin of :meth:`eval`."""
        run = script._async
        if run is None:
            run = script._async = self._redis.commands.core.AsyncScript(
                None, script.source.encode())
        return await self._arun(run, nkeys, args)

    async def acommand(self, *args: Any) -> Any:
        """The async twin of :meth:`command`."""
        return await self._arun(None, 0, args)

    async def _arun(self, script: Any, nkeys: int, args: tuple[Any, ...]) -> Any:
        if self._wire is None:
            return await self._arun_cluster(script, nkeys, args)
        health = self._health
        if health.down_since is not None:
            health.refuse()
        entry = self._clients.loop_client()
        slots = entry.slots
        if slots.locked():
            await self._await_slot(slots, health)
        else:
            await slots.acquire()
        self.round_trips += 1
        sent = monotonic()
        try:
            result = await self._wire.acall(entry.client.connection_pool, script,
                                            args if script is None else (nkeys, *args),
                                            self.timeout)
        except self._redis_errors() as error:
            if isinstance(error, self._redirects):
                await self._arediscover()
            raise self._classify(error, sent, health) from error
        finally:
            slots.release()
        health.last_ok = monotonic()
        if health.down_since is not None:
            health.recovered()
        return result

    async def _await_slot(self, slots: asyncio.Semaphore, health: Health) -> None:
        """Wait for a send slot of the loop (all taken): as :meth:`_wait_slot`."""
        # asyncio.timeout, not wait_for: on Python 3.11, wait_for drops a cancellation
        # that arrives in the iteration the slot is handed over (the task then runs
        # on as if never cancelled); Semaphore.acquire passes the slot on instead.
        try:
            async with asyncio.timeout(self.pool_timeout):
                await slots.acquire()
        except TimeoutError:
            raise self._busy(" of this event loop") from None
        self._recheck(slots, health)

    async def _arediscover(self) -> None:
        try:
            await self._clients.arediscover()
        except Exception as problem:  # the next operations will tell
            self._warn_rediscovery(problem)

    def _aclient(self) -> Any:
        """The redis.asyncio client of the running loop's subscriptions (pub/sub)."""
        return self._clients.subscriber()


SET_UP_REFUSED = ("refuses every new connection's set-up (check the URL's database "
                  "number, user and password)")
"""The reason a store is down while its server answers a connection's set-up with an
error reply (the error names which)."""

_SET_UP = frozenset({"on_connect", "on_connect_check_health"})
"""redis-py's connection set-up (AUTH or HELLO, CLIENT SETNAME, SELECT), sync and async."""


def _in_set_up(error: BaseException) -> bool:
    """Whether ``error``, an error reply, answered a new connection's set-up (a
    ``SELECT`` of a database the server does not have, say) rather than an operation."""
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name in _SET_UP:
            return True
        tb = tb.tb_next
    return False
