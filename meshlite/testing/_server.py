"""The loop-side half of :class:`FakeBackend`: sockets, connections and when to answer.

Everything here runs on the event loop that serves the backend; the public
object reaches it only through :meth:`LoopServer.reconcile` (called on that loop)
and shares plain data with it through :class:`SharedState`. What an answer holds
is composed in ``_answer.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import threading
import time
from asyncio.selector_events import BaseSelectorEventLoop
from collections.abc import Callable, Coroutine
from typing import Any

from ._answer import Headers, abort_with_reset, compose, failure
from ._behaviour import Behaviour
from ._http11 import BadRequest, ReceivedRequest, encode_response, read_request
from ._quiet import hold_while, watched

__all__ = ["HOST", "LoopServer", "SharedState"]

HOST = "127.0.0.1"
"""FakeBackend only ever listens on loopback."""

_SETTLE_TURNS = 100
_MIN_TURNS = 3


class SharedState:
    """What the public backend and its loop share: behaviour, records, counters.

    ``behaviour`` is replaced whole (never mutated), so the loop reads it without
    the lock; records and counters change under ``lock``.
    """

    def __init__(self, behaviour: Behaviour, seed: int | None, port: int) -> None:
        self.behaviour = behaviour
        self.random = random.Random(seed)
        self.port = port
        self.lock = threading.Lock()
        self.requests: list[ReceivedRequest] = []
        self.counts = dict.fromkeys(("requests", "responses", "errors", "resets", "hangs"), 0)
        self.answering = 0  # requests being answered (held ones not counted); loop only

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def count(self, name: str) -> None:
        with self.lock:
            self.counts[name] += 1


class _Listener:
    """One listening socket and the asyncio server built on it (one per up/down cycle)."""

    __slots__ = ("server", "sock", "task")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.server: asyncio.Server | None = None
        self.task: asyncio.Task[None] | None = None


class LoopServer:
    """Serves one :class:`SharedState` on the running loop until :meth:`close`."""

    def __init__(self, state: SharedState) -> None:
        self.state = state
        self._loop = asyncio.get_running_loop()
        self._listener: _Listener | None = None
        self._connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._servers: list[asyncio.Server] = []
        self._unhang = asyncio.Event()
        self._closing = False
        self._release: Callable[[], None] | None = None

    async def start(self) -> None:
        """Listen on ``state.port`` (0: a free port, then recorded in the state)."""
        listener = self._listener = self._listen(self.state.port)
        self.state.port = listener.sock.getsockname()[1]
        self._release = hold_while(self._busy)
        self.reconcile()
        if listener is self._listener and listener.task is not None:
            await listener.task

    async def close(self) -> None:
        """Close the port and every connection, and wait for every task to end."""
        self._closing = True
        if self._release is not None:
            self._release()
        self._close_listener()
        self._drop_connections()
        self._unhang.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._settle()

    def _busy(self) -> bool:
        # Holds FakeClocks (any thread): a request being answered; on its own thread,
        # also a loop that is not waiting idle (a request read, accepted, on its way).
        if not self._loop.is_running():  # its loop ended without close(): it holds nothing
            return False
        selector = watched(self._loop)
        return self.state.answering > 0 or (selector is not None and not selector.idle())

    async def _settle(self) -> None:
        # An accept already queued when the port closed still runs, and its
        # connection is set up over the next loop turns before its handler sees
        # _closing and aborts it. Give it those turns, then wait (boundedly) for
        # every transport to be gone, so no socket outlives the server: asyncio
        # 3.11's Server.wait_closed() does not wait for them, hence its count.
        for turn in range(_SETTLE_TURNS):
            await asyncio.sleep(0)
            if turn >= _MIN_TURNS and not any(
                getattr(s, "_active_count", 0) for s in self._servers
            ):
                return

    def reconcile(self) -> None:
        """Make the sockets and the hang gate match the behaviour (on the loop only)."""
        if self._closing:
            return
        behaviour = self.state.behaviour
        if behaviour.down and self._listener is not None:
            self._close_listener()
            self._drop_connections()
        elif not behaviour.down and self._listener is None:
            self._listener = self._listen(self.state.port)
        (self._unhang.clear if behaviour.hang else self._unhang.set)()

    # -- sockets ---------------------------------------------------------------------

    def _listen(self, port: int) -> _Listener:
        # Bound and listening before this returns, so connections made right after
        # set(down=False) wait in the backlog instead of being refused.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if os.name == "posix":  # rebind the same port despite TIME_WAIT connections
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((HOST, port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError as error:
            sock.close()
            message = f"FakeBackend cannot listen on {HOST}:{port}: {error.strerror}"
            raise OSError(error.errno, message) from error
        listener = _Listener(sock)
        listener.task = self._spawn(self._serve(listener))
        return listener

    async def _serve(self, listener: _Listener) -> None:
        server = await asyncio.start_server(self._handle, sock=listener.sock,
                                            start_serving=False)
        # start_server(start_serving=False) never suspends: the server is known
        # before anything else can run, so _close_listener always finds it.
        listener.server = server
        self._servers.append(server)
        await server.start_serving()

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        if listener.task is not None:
            listener.task.cancel()
        server = listener.server
        if server is not None:
            if isinstance(self._loop, BaseSelectorEventLoop):
                # Stop accepting and close the socket, but never Server.close(): asyncio
                # 3.11 asserts (and leaks the socket) when a connection it accepted a
                # moment ago attaches to a closed Server. Its socket gone, the Server
                # holds nothing; close() waits for its connections to end.
                self._loop.remove_reader(listener.sock.fileno())
            else:
                # Other loops accept on their own: the proactor (Windows) without a
                # reader, uvloop on a libuv handle that keeps the socket open (it holds
                # a reference, so sock.close() below only marks it closed). Only
                # Server.close() stops them; uvloop's closes the port before it
                # returns, and attaches a connection to it as it accepts it, so none
                # can come after.
                server.close()
        listener.sock.close()

    def _drop_connections(self) -> None:
        connections, self._connections = self._connections, {}
        for task, writer in connections.items():
            _shut_down(writer.transport)
            writer.transport.abort()
            task.cancel()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = self._loop.create_task(coro)
        self._track(task)
        return task

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- one connection --------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if self._closing or self._listener is None or task is None:
            writer.transport.abort()  # accepted just as the port went down
            return
        self._track(task)
        self._connections[task] = writer
        try:
            await self._converse(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away; nothing to answer
        except asyncio.CancelledError:
            # asyncio's stream callback (3.11) cannot digest a cancelled handler task
            # (it logs the CancelledError with a traceback), and nothing awaits this
            # one: end normally, whoever cancelled it (down, close, or the loop's
            # shutdown ending a test that never stopped the backend).
            pass
        finally:
            if self._connections.get(task) is writer:
                del self._connections[task]
            writer.close()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state = self.state
        while True:
            try:
                request = await read_request(reader, time.monotonic, writer)
            except BadRequest as error:
                writer.write(encode_response(error.status, [("content-type", "text/plain")],
                                             str(error).encode(), keep_alive=False, head=False))
                await writer.drain()
                return
            if request is None:
                return
            with state.lock:
                state.requests.append(request)
                state.counts["requests"] += 1
            if not await self._respond(request, writer) or not request.keep_alive:
                return

    async def _respond(self, request: ReceivedRequest, writer: asyncio.StreamWriter) -> bool:
        """Answer one request as the behaviour says; False when the connection is gone."""
        self.state.answering += 1
        try:
            return await self._answer_one(request, writer)
        finally:
            self.state.answering -= 1

    async def _answer_one(self, request: ReceivedRequest, writer: asyncio.StreamWriter) -> bool:
        state = self.state
        behaviour = state.behaviour
        try:
            delay = behaviour.delay()
        except Exception as error:  # a user's latency callable failed: say so, as for body
            return await self._send(request, writer, *failure("latency", error))
        if delay > 0:
            await asyncio.sleep(delay)
            behaviour = state.behaviour  # a set() during the wait is in force from its return
        if behaviour.reset:
            state.count("resets")
            abort_with_reset(writer)
            return False
        if behaviour.hang:
            state.count("hangs")
            state.answering -= 1  # held: quiet until the test (or a jump of time) ends it
            try:
                await self._unhang.wait()
            finally:
                state.answering += 1
            if self._closing:
                return False
            behaviour = state.behaviour
        try:
            status, headers, body = compose(request, behaviour, state)
        except Exception as error:  # a user's body callable failed: say so, as a server would
            status, headers, body = failure("body", error)
        return await self._send(request, writer, status, headers, body)

    async def _send(self, request: ReceivedRequest, writer: asyncio.StreamWriter, status: int,
                    headers: Headers, body: bytes) -> bool:
        writer.write(encode_response(status, headers, body, keep_alive=request.keep_alive,
                                     head=request.method == "HEAD"))
        await writer.drain()
        self.state.count("responses")
        return True


def _shut_down(transport: asyncio.BaseTransport) -> None:
    """Send FIN on ``transport``'s connection now, on any loop.

    abort() closes the socket only on a later loop turn (asyncio), and shutdown() at
    once, so a client's pooled connection looks dead before its next request (as
    after a crash), not after it is sent. The loop's own socket object may not offer
    shutdown() (uvloop's raises TypeError): a duplicate of its descriptor shuts the
    same connection down, and closing the duplicate leaves the loop's open.
    """
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    # OSError: the connection is already closed (its descriptor -1), or not connected.
    with contextlib.suppress(OSError), socket.fromfd(sock.fileno(), sock.family,
                                                     sock.type) as duplicate:
        duplicate.shutdown(socket.SHUT_RDWR)
