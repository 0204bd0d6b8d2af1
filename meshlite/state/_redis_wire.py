"""One request and one reply on a pooled redis-py connection: the decision fast path.

A decision needs none of what a redis-py client adds around a command (response
callbacks, a retry wrapper, per-call isinstance checks): for one Redis or a
Sentinel primary, the store takes a connection from the client's own bounded pool,
sends with redis-py's connection (its protocol, TLS, AUTH, timeouts), reads the
raw reply and gives the connection back. This keeps a decision at or below the
cost of the ``limits`` library's on the same client (``benchmarks/redis_store.py``).
A Cluster client routes by slot, so Cluster stores go through the client instead.

An async request is bounded by the store's ``timeout``, and a reply that has come
by then is read, however late the loop is to read it: when the timer fires, the
cancellation is scheduled behind the callbacks already queued (asyncio's loop
polls before it runs due timers, so a reply that arrived in the same iteration as
the timer wakes its caller first), and when it runs it looks whether the reply
came: bytes waiting in the connection's socket, or a caller woken and not run yet.
uvloop runs due timers *before* it polls, so after any stall of the loop (a long
callback, a thread holding the GIL, a starved process) the timer comes first and
the reply is still in the socket; cancelling then counted an answered request as
a timeout, and marked a healthy Redis down. While the reply is there the
cancellation waits one more iteration (:data:`_GRACES` at most); a hung Redis,
which sends nothing, is still detected one iteration after ``timeout``.

A connection whose request failed for any reason other than an error reply is
closed before it goes back (its reply may still be on the wire). A connection
that was already open and fails to send (a Redis restart closed it) is retried
once, reconnecting; a fresh one that fails is not.

An async connect that times out is tried once more: on a busy event loop (a
thousand tasks starting at once, a thread holding the GIL) the connect's
completion and its timer can come due in the same loop iteration, and the timer
wins although the connection was made. The second attempt starts on a loop that
has worked off that backlog; up to two more follow while the timer keeps waking
late (more than 1.5 times the connect timeout: the loop is still busy). A Redis
that hangs still accepts connections (its reads are what ``timeout`` bounds), so
this does not slow its detection; an unreachable host costs two connect timeouts
on an idle loop before the store is marked down. The async sockets have no read
timeout of their own (the store bounds each request), so a new connection's
handshake (``HELLO``, which a hung Redis never answers) is bounded here: connecting
and the handshake together wait at most the connect timeout plus ``timeout``.
"""

from __future__ import annotations

import asyncio
import select
from collections.abc import Coroutine
from typing import Any

__all__ = ["Wire", "pack"]

_DIRECT_WRITE = 32 * 1024
"""Async requests up to this size are written without ``asyncio.wait_for`` (far
below the transport's 64 KiB high-water mark, so ``drain()`` never waits); larger
ones go through redis-py's bounded write."""

_GRACES = 4
"""Loop iterations a request past its ``timeout`` may take to read a reply that has
come (one to read the socket, one to run the woken caller; more for a reply that
arrives in pieces). A hung Redis sends nothing and gets none."""


class Wire:
    """Sends commands and ``EVALSHA`` of redis-py ``Script`` objects on pooled connections."""

    def __init__(self, redis: Any) -> None:
        ex = redis.exceptions
        self._reply: type[BaseException] = ex.ResponseError
        self._noscript: type[BaseException] = ex.NoScriptError
        self._closed: type[BaseException] = ex.ConnectionError
        self._timeout: type[BaseException] = ex.TimeoutError

    # -- sync ------------------------------------------------------------------------

    def call(self, pool: Any, script: Any, args: tuple[Any, ...]) -> Any:
        """Run ``script`` (a redis-py Script; ``args`` = nkeys, keys, argv) or, when
        ``script`` is ``None``, the command ``args``; the raw reply."""
        conn = pool.get_connection()
        try:
            was_open = conn._sock is not None
            try:
                return self._send(conn, script, args)
            except self._closed:
                if not was_open:
                    raise
            return self._send(conn, script, args)
        finally:
            pool.release(conn)

    def _send(self, conn: Any, script: Any, args: tuple[Any, ...]) -> Any:
        try:
            if script is None:
                conn.send_packed_command([pack(args)], False)
                return conn.read_response()
            request = pack(("EVALSHA", script.sha, *args))
            conn.send_packed_command([request], False)
            try:
                return conn.read_response()
            except self._noscript:  # Redis restarted and forgot it
                conn.send_packed_command([pack(("SCRIPT", "LOAD", script.script))], False)
                conn.read_response()
                conn.send_packed_command([request], False)
                return conn.read_response()
        except self._reply:
            raise  # an error reply: the connection is in step
        except BaseException:
            conn.disconnect()
            raise

    # -- async -----------------------------------------------------------------------

    async def acall(self, pool: Any, script: Any, args: tuple[Any, ...],
                    bound: float) -> Any:
        """The async twin of :meth:`call`, on a redis.asyncio pool, within ``bound``
        (connecting is bounded by the pool's own connect timeout, tried twice)."""
        conn = await self._connected(pool, bound)
        try:
            was_open = conn.is_connected
            try:
                return await _within(self._asend(conn, script, args), bound, conn)
            except self._closed:
                if not was_open:
                    raise
            return await _within(self._asend(conn, script, args), bound, conn)
        finally:
            await pool.release(conn)

    async def _connected(self, pool: Any, bound: float) -> Any:
        """A connection of ``pool``; a connect timeout is tried again once, and
        again (up to 4 attempts) while the loop woke its timer late (busy). The
        handshake of a new connection waits ``bound`` at most (module doc)."""
        loop = asyncio.get_running_loop()
        limit = pool.connection_kwargs.get("socket_connect_timeout") or 0.0
        for attempt in range(4):
            started = loop.time()
            try:
                if not limit or _open_next(pool):  # (a client given as it is: its
                    return await pool.get_connection()  # own timeouts)
                return await _within(pool.get_connection(), limit + bound)
            except self._timeout:  # see the module doc: a busy loop, not a dead Redis
                late = loop.time() - started > 1.5 * limit
                if attempt == 3 or (attempt and not late):
                    raise
        raise AssertionError("unreachable")

    async def _asend(self, conn: Any, script: Any, args: tuple[Any, ...]) -> Any:
        try:
            if script is None:
                await self._write(conn, args)
                return await conn.read_response()
            await self._write(conn, ("EVALSHA", script.sha, *args))
            try:
                return await conn.read_response()
            except self._noscript:
                await self._write(conn, ("SCRIPT", "LOAD", script.script))
                await conn.read_response()
                await self._write(conn, ("EVALSHA", script.sha, *args))
                return await conn.read_response()
        except self._reply:
            raise
        except BaseException:
            await conn.disconnect(nowait=True)
            raise

    @staticmethod
    async def _write(conn: Any, args: tuple[Any, ...]) -> None:
        packed = pack(args)
        writer = getattr(conn, "_writer", None)
        if writer is None or len(packed) > _DIRECT_WRITE:
            await conn.send_packed_command([packed], check_health=False)
            return
        try:
            writer.write(packed)
            await writer.drain()
        except OSError as error:
            from redis.exceptions import ConnectionError as Closed

            raise Closed(f"Error writing to {conn!r}: {error}") from error


def pack(args: tuple[Any, ...]) -> bytes:
    """``args`` as one RESP request (strings UTF-8, numbers in decimal, bytes as
    they are): what redis-py's ``pack_command`` makes, in less than half its time for
    a decision's eight small arguments (docs/design.md)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _open_next(pool: Any) -> bool:
    """Whether ``pool`` hands out an open connection next: no connect and no
    handshake to bound, so no timer (400 bytecodes a decision). redis-py's pool pops
    the last of its idle connections (with no wait in between when none waits for
    the pool); another pool, or none idle, is bounded. An idle connection the server
    closed (a restart: its reader has seen the end) is opened again inside
    ``get_connection``, so it is bounded too: a Redis restarted and then hung held
    such a decision for the whole hang."""
    idle: list[Any] = getattr(pool, "_available_connections", None) or []
    if not idle:
        return False
    reader = getattr(idle[-1], "_reader", None)
    return reader is not None and not reader.at_eof()


class _Bound:
    """The timer of one async request (see :func:`_within`)."""

    __slots__ = ("conn", "done", "fired", "graces", "loop", "task")

    def __init__(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any],
                 conn: Any) -> None:
        self.loop = loop
        self.task = task
        self.conn = conn
        self.done = False
        self.fired = False
        self.graces = _GRACES

    def expire(self) -> None:
        if self.done:
            return
        if self.graces and _reply_came(self.task, self.conn):
            # Redis answered; the loop has yet to hand the reply over (module doc).
            self.graces -= 1
            self.loop.call_soon(self.expire)
            return
        self.fired = True
        self.task.cancel()


def _reply_came(task: asyncio.Task[Any], conn: Any) -> bool:
    """Whether bytes of the reply ``task`` waits for have come: the loop read them and
    woke the task, which has not run yet, or they wait in ``conn``'s socket."""
    waiter = getattr(task, "_fut_waiter", None)  # asyncio's Task (C or Python) has it
    if waiter is not None and waiter.done():
        return True
    transport = getattr(getattr(conn, "_writer", None), "transport", None)
    sock = None if transport is None else transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        fd = sock.fileno()
        if fd < 0:
            return False
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([fd], [], [], 0)[0])
    except (OSError, ValueError):  # closed meanwhile: nothing more will come
        return False


async def _within(operation: Coroutine[Any, Any, Any], seconds: float,
                  conn: Any = None) -> Any:
    """``await operation``, cancelled with ``TimeoutError`` once ``seconds`` have
    passed, unless its reply came by then (see the module doc): ``conn`` is the
    connection it reads from, if any."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    bound = _Bound(loop, task, conn)
    # Cancel requests pending before ours are not ours to take back (a task cleaning
    # up after its cancellation, or whose TaskGroup left one behind): as in
    # asyncio.timeout, ours is the one uncancel() takes back down to this count.
    baseline = task.cancelling()
    # call_soon from the timer: the cancellation queues behind the wakeups that
    # this iteration's I/O callbacks already scheduled.
    handle = loop.call_later(seconds, loop.call_soon, bound.expire)
    try:
        return await operation
    except asyncio.CancelledError:
        if bound.fired and task.uncancel() <= baseline:
            raise TimeoutError(f"no reply within {seconds:g} s") from None
        raise
    finally:
        bound.done = True
        handle.cancel()
