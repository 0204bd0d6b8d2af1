"""The redis-py clients a RedisStore's decisions travel on, bounded at any concurrency.

- Sync: one client for the process, over a redis-py ``BlockingConnectionPool`` of
  at most ``max_connections`` (a Cluster client: that many per node). Every command
  takes a connection and gives it back, so threads that end leave nothing open, and
  the number of threads does not matter.
- Async: one client per event loop, over that loop's own bounded pool, so
  concurrent decisions of a loop share its connections instead of opening one each.
  The connections of a loop are closed when ``asyncio.run`` shuts the loop down
  (an async generator that the loop finalizes), or by ``RedisStore.aclose``.
- Subscriptions (a registry's pub/sub) hold a connection for as long as they
  last, so they take theirs from a second client of the loop, never from the
  decisions' pool: any number of watchers on one store leaves every decision its
  connections (taking them from the decisions' pool, a dozen watchers left
  decisions and further subscriptions waiting for a connection forever).

In front of each pool a semaphore of ``max_connections`` slots decides who may
send: a caller that waits for a slot waits *before* its operation starts, so the
wait never counts against the Redis ``timeout``, and a wait longer than
``pool_timeout`` fails that decision only (:class:`StoreBusyError`), never the
store. (redis-py's pools raise a ``ConnectionError`` when exhausted, which is
indistinguishable from an unreachable Redis; a Cluster client has one pool per
node; the semaphore bounds the process either way.)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

from .._errors import StoreBusyError
from .._fork import after_fork_in_child
from ._redis_target import Target

__all__ = ["Clients", "LoopClient", "StoreBusyError", "client_options"]

_SPARE = 8
"""Pool connections beyond the send slots."""

_SUBSCRIPTIONS = 100_000
"""Bound of a loop's subscription client: one connection per subscription."""


def client_options(redis: Any, timeout: float, connect_timeout: float) -> dict[str, Any]:
    """The options of every redis-py client of a store: its socket timeouts, its
    retry, no health checks and no handshake beyond the connection's own."""
    r = redis
    # One immediate retry, on connection errors only: a pooled connection that a
    # Redis restart closed fails once, then reconnects. Timeouts are not retried,
    # so a slow Redis costs one ``timeout`` per decision, never several.
    errors = (r.exceptions.ConnectionError,)
    # The socket waits a little less than ``timeout`` (2 ms or a tenth of it), so a
    # decision that meets a hung Redis has fallen back within ``timeout``.
    read = timeout - min(0.002, timeout / 10)
    return {
        "socket_timeout": read, "socket_connect_timeout": connect_timeout,
        "retry": r.retry.Retry(r.backoff.NoBackoff(), 1, supported_errors=errors),
        "aretry": r.asyncio.retry.Retry(r.backoff.NoBackoff(), 1, supported_errors=errors),
        "health_check_interval": 0,
        # No CLIENT SETINFO round trips on connect: a reconnect costs one handshake.
        "driver_info": None}


class LoopClient:
    """The async client of one event loop, its send slots, and the lock its start
    (a Cluster client's first topology read) is made under; ``reread_at`` is when a
    Cluster client may read its slot map again for a slot it lacks."""

    __slots__ = ("client", "closer", "loop", "reread_at", "slots", "starting",
                 "subscriber")

    def __init__(self, loop: asyncio.AbstractEventLoop, client: Any, slots: int) -> None:
        self.loop = loop
        self.client = client
        self.slots = asyncio.Semaphore(slots)
        self.starting = asyncio.Lock()
        self.closer: Any = None
        self.subscriber: Any = None
        self.reread_at = 0.0


async def _close_at_shutdown(target: Target, entry: LoopClient) -> AsyncIterator[None]:
    """Suspended for the loop's lifetime; ``loop.shutdown_asyncgens()`` (which
    ``asyncio.run`` calls) finalizes it, closing the loop's connections in it."""
    try:
        yield
    finally:
        await _close_loop_clients(target, entry)


async def _close_loop_clients(target: Target, entry: LoopClient) -> None:
    subscriber, entry.subscriber = entry.subscriber, None
    try:
        await target.aclose_client(entry.client)
    finally:
        if subscriber is not None:
            await target.aclose_client(subscriber)


class Clients:
    """The sync client and the per-loop async clients of one store (``reread_at``:
    the sync client's, as :class:`LoopClient`'s)."""

    def __init__(self, target: Target, max_connections: int) -> None:
        self.target = target
        self.max_connections = max_connections
        self.slots = threading.BoundedSemaphore(max_connections)
        self.reread_at = 0.0
        self._sync: Any = None
        self._loops: dict[int, LoopClient] = {}
        self._lock = threading.Lock()
        after_fork_in_child(self)

    def after_fork(self) -> None:
        """In a forked child: fresh slots and clients (the parent's threads, which
        may have held slots, and its sockets are not the child's)."""
        self.slots = threading.BoundedSemaphore(self.max_connections)
        self.reread_at = 0.0
        self._lock = threading.Lock()
        self._loops = {}
        if not self.target.user_sync:
            self._sync = None

    # -- sync ------------------------------------------------------------------------

    def sync(self) -> Any:
        """The process's sync client (made on first use: a Cluster client connects)."""
        client = self._sync
        if client is None:
            with self._lock:
                client = self._sync
                if client is None:
                    client = self._sync = self.target.sync_client(self.max_connections + _SPARE)
        return client

    def made(self) -> Any:
        """The sync client if it was made, else ``None`` (nothing is connected)."""
        return self._sync

    # -- async -----------------------------------------------------------------------

    def loop_client(self) -> LoopClient:
        """The async client of the running event loop (made on first use)."""
        loop = asyncio.get_running_loop()
        entry = self._loops.get(id(loop))
        if entry is not None and entry.loop is loop:
            return entry
        with self._lock:
            # Forget loops that are gone (their ids may be reused).
            self._loops = {k: v for k, v in self._loops.items() if not v.loop.is_closed()}
            entry = LoopClient(loop, self.target.async_client(self.max_connections + _SPARE),
                               self.max_connections)
            self._loops[id(loop)] = entry
        if not self.target.user_async:
            closer: Any = _close_at_shutdown(self.target, entry)
            try:
                closer.asend(None).send(None)  # runs to the yield: registers with the loop
            except StopIteration:
                entry.closer = closer
        return entry

    def subscriber(self) -> Any:
        """The running loop's client for subscriptions (see the module doc)."""
        entry = self.loop_client()
        if self.target.user_async:
            return entry.client
        if entry.subscriber is None:
            entry.subscriber = self.target.async_client(_SUBSCRIPTIONS)
        return entry.subscriber

    # -- rediscovery and closing -----------------------------------------------------

    def rediscover(self) -> None:
        """Drop the sync connections, so the next ones find the current primary (a
        Sentinel pool asks the sentinels again; a Cluster client reloads its slots)."""
        client = self._sync
        if client is not None:
            self.target.rediscover(client)

    async def arediscover(self) -> None:
        """The async twin of :meth:`rediscover`, for the running loop's client."""
        await self.target.arediscover(self.loop_client().client)

    def close(self) -> None:
        """Close the sync connections (the client reconnects on its next command)."""
        client = self._sync
        if client is not None and not self.target.user_sync:
            client.close()
            with self._lock:
                self._sync = None

    async def aclose(self) -> None:
        """Close the connections of the running loop."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._loops.pop(id(loop), None)
        if entry is not None and not self.target.user_async:
            closer, entry.closer = entry.closer, None
            if closer is not None:
                await closer.aclose()
            else:
                await _close_loop_clients(self.target, entry)
