"""The connections a RedisStore's decisions travel on: one per thread, and a few
per event loop, each used by one caller at a time.

A decision is one request and one reply, so it needs no connection pool: a
thread keeps its own connection (the pool's locking, bookkeeping and readiness
probe cost as much as the round trip itself), and an event loop lends idle
connections to its tasks. A connection whose request failed or was interrupted
is closed, never reused (its reply may still be on the wire). redis-py still
does the protocol, TLS, AUTH and the handshake: connections are made by its
connection pools' ``make_connection``, so every URL option applies.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from typing import Any

__all__ = ["MAX_IDLE", "Connections"]

MAX_IDLE = 32
"""Idle connections an event loop keeps; a burst of more concurrent decisions opens
more, and closes the extra ones when they are done."""


class Connections:
    """Per-thread sync connections and per-loop async ones for one Redis URL."""

    def __init__(self, redis: Any, url: str, sync_options: dict[str, Any],
                 async_options: dict[str, Any]) -> None:
        self._pool = redis.ConnectionPool.from_url(url, **sync_options)
        self._apool = redis.asyncio.ConnectionPool.from_url(url, **async_options)
        self._response_error: type[BaseException] = redis.exceptions.ResponseError
        self._connection_error: type[BaseException] = redis.exceptions.ConnectionError
        self._local = threading.local()
        self._all: weakref.WeakSet[Any] = weakref.WeakSet()
        self._idle: dict[int, tuple[asyncio.AbstractEventLoop, _Idle]] = {}
        self._lock = threading.Lock()

    # -- sync ------------------------------------------------------------------------

    def _connection(self) -> Any:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.pid != os.getpid():  # a fork must not share a socket
            conn = local.conn = self._pool.make_connection()
            local.pid = os.getpid()
            with self._lock:
                self._all.add(conn)
        return conn

    def _once(self, conn: Any, args: tuple[Any, ...]) -> Any:
        try:
            conn.send_command(*args)
            return conn.read_response()
        except self._response_error:
            raise  # an error reply: the connection is in step
        except BaseException:
            conn.disconnect()
            raise

    def send(self, *args: Any) -> Any:
        """Send one command on this thread's connection and return the raw reply.

        A connection that was open before and fails to send (Redis restarted and
        closed it) is retried once on a fresh one; a fresh one that fails is not.
        """
        conn = self._connection()
        stale = getattr(conn, "_sock", None) is not None
        try:
            return self._once(conn, args)
        except self._connection_error:
            if not stale:
                raise
        return self._once(conn, args)

    # -- async -----------------------------------------------------------------------

    def _idle_list(self) -> _Idle:
        loop = asyncio.get_running_loop()
        entry = self._idle.get(id(loop))
        if entry is not None and entry[0] is loop:
            return entry[1]
        with self._lock:
            # Forget loops that are gone (their ids may be reused).
            self._idle = {k: v for k, v in self._idle.items() if not v[0].is_closed()}
            idle = _Idle()
            self._idle[id(loop)] = (loop, idle)
        return idle

    async def _aonce(self, conn: Any, args: tuple[Any, ...], idle: _Idle) -> Any:
        try:
            await self._write(conn, args)
            reply = await conn.read_response()
        except self._response_error:
            await idle.give_back(conn)
            raise
        except BaseException:
            await conn.disconnect(nowait=True)
            raise
        await idle.give_back(conn)
        return reply

    @staticmethod
    async def _write(conn: Any, args: tuple[Any, ...]) -> None:
        # redis-py bounds each write with asyncio.wait_for, which makes a task per
        # command. A request is far below the stream's high-water mark and one
        # connection carries one request at a time, so drain() never waits: write
        # directly. Reading the reply is still bounded by the socket timeout.
        writer = getattr(conn, "_writer", None)
        if writer is None:
            await conn.connect()
            writer = getattr(conn, "_writer", None)
        if writer is None:  # a connection class without a stream writer
            await conn.send_command(*args)
            return
        try:
            writer.writelines(conn.pack_command(*args))
            await writer.drain()
        except OSError as error:
            raise _write_error(conn, error) from error

    async def asend(self, *args: Any) -> Any:
        """The async twin of :meth:`send`, on a connection of the running loop."""
        idle = self._idle_list()
        if idle:
            conn = idle.pop()
            try:
                return await self._aonce(conn, args, idle)
            except self._connection_error:
                pass  # an idle connection a restart closed: one retry on a fresh one
        return await self._aonce(self._apool.make_connection(), args, idle)

    # -- closing ---------------------------------------------------------------------

    def close(self) -> None:
        """Close every sync connection (threads reconnect on their next command)."""
        with self._lock:
            conns = list(self._all)
        for conn in conns:
            conn.disconnect()

    async def aclose(self) -> None:
        """Close the idle connections of the running loop."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._idle.pop(id(loop), None)
        if entry is not None:
            idle = entry[1]
            idle.closed = True
            while idle:
                await idle.pop().disconnect()


def _write_error(conn: Any, error: OSError) -> BaseException:
    import redis

    return redis.exceptions.ConnectionError(f"Error writing to {conn!r}: {error}")


class _Idle(list[Any]):
    """The idle connections of one loop; once closed, returned ones are closed too
    (a call that was in flight during ``aclose`` must not leave one open)."""

    closed = False

    async def give_back(self, conn: Any) -> None:
        if self.closed or len(self) >= MAX_IDLE:
            await conn.disconnect()
        else:
            self.append(conn)
