"""A client leaving before its answer is complete, seen where the server tells it.

An ASGI server says that the client went away in one way only: ``http.disconnect``
from ``receive()``. A handler that is still working (a slow query, a stream between
two events) or that never reads ``receive()`` does not hear it, and uvicorn drops
what it then sends without a word: the request would count as the 200 it sent to no
one, and the handler would run on for as long as it likes (an endless stream: for
good, holding its concurrency slot). :class:`Departure` reads ``receive()`` for the
app while its response is not complete and hands it the messages in order; once the
client has left, the app's next ``receive()`` says ``http.disconnect`` and its next
``send()`` raises :class:`ClientLeft`, an ``OSError`` as the ASGI spec asks of a
server (Starlette turns it into its ``ClientDisconnect``). The handler is not
cancelled: work it is doing (a write to a database) ends as it would have, and a
stream stops at its next chunk. aiohttp's server does the same by default (an
``OSError`` on the next read or write) and cancels a handler only when asked: a
cancellation cuts the work under way in half.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from ._body import ClientGone
from ._request import Message, Receive, Scope, Send

__all__ = ["READ_AHEAD", "WATCH_AFTER", "ClientLeft", "Departure"]

READ_AHEAD = 65536
"""Bytes of request body read ahead of an app that does not read it (uvicorn's own
buffer before it stops reading the socket): past them, what the client sends waits
for the app, and so does the news of its leaving."""

WATCH_AFTER = 0.001
"""Seconds after a request's arrival past which the start of its response first asks
the server whether the client is still there. A client that gives up does so after
a timeout of its own, longer than this; an answer begun sooner is not checked (the
check is a task and a loop turn: a millisecond's handler would pay for it on every
request)."""

_BODIES = frozenset({"http.response.body", "http.response.zerocopysend"})


class ClientLeft(ClientGone, OSError):
    """What the app's ``send()`` raises once its client has left: the ASGI spec's
    ``OSError`` for a send on a closed connection (the middleware counts the request
    as ended without an answer, and no server log line)."""


class Departure:
    """One request's watch, between the server and the app: the app gets
    :meth:`receive` and :meth:`send` in place of the server's.

    The server's ``receive()`` is read for the app (a :class:`_Reader`, a task) from
    the app's first ``receive()``, from the start of a response begun more than
    :data:`WATCH_AFTER` seconds after the request arrived (the client may have left
    while the handler worked: the server is asked before the head goes out), or from
    the first chunk of a streamed body (a stream may outlive its client). A handler
    answering at once, the common case, costs no task and no loop callback.

    Attributes:
        status: The status of the response that went out (0: none yet; one the app
            sent after the client left was refused and went nowhere).
        ended: When the response was complete (``time.monotonic()``; 0.0: not yet).
    """

    __slots__ = ("_arrived", "_done", "_reader", "_receive", "_scope", "_send", "_trailers",
                 "ended", "status")

    def __init__(self, scope: Scope, receive: Receive, send: Send, arrived: float) -> None:
        self._scope = scope
        self._receive = receive
        self._send = send
        self._arrived = arrived
        self._reader: _Reader | None = None
        self._trailers = False
        self._done = False
        self.status = 0
        self.ended = 0.0

    @property
    def gone(self) -> bool:
        """Whether the client left before the response was complete."""
        reader = self._reader
        return reader is not None and reader.gone

    @property
    def unanswered(self) -> bool:
        """Whether the client left before the response started."""
        return self.status == 0 and self.gone

    async def receive(self) -> Message:
        """The app's ``receive``: the server's messages, in order."""
        reader = self._reader
        if reader is None:
            if self._done or self.ended:  # nothing to watch (any more)
                return await self._receive()
            reader = self._reader = _Reader(self._receive)
        return await reader.take()

    async def send(self, message: Message) -> None:
        """The app's ``send``: the server's, watched for the status and the end.

        Raises:
            ClientLeft: the client has left (the message would go to no one).
        """
        kind = message["type"]
        reader = self._reader
        if reader is None and not self._done:
            if kind == "http.response.start":
                if time.monotonic() - self._arrived > WATCH_AFTER and self._may_read():
                    # Ask the server before the head goes out: a client that left
                    # meanwhile is told at once by its receive() (one loop turn).
                    reader = self._reader = _Reader(self._receive)
                    await asyncio.sleep(0)
            elif message.get("more_body") and self._may_read():
                reader = self._reader = _Reader(self._receive)  # a stream: watch it
        if reader is not None and reader.gone and not self.ended:
            raise ClientLeft("the client left before its answer was complete")
        if kind == "http.response.start":
            self.status = message["status"]
            if message.get("trailers"):
                self._trailers = True
            await self._send(message)
            return
        await self._send(message)
        if kind in _BODIES:
            if message.get("more_body") or self._trailers:
                return
        elif kind != "http.response.pathsend" and (
                kind != "http.response.trailers" or message.get("more_trailers")):
            return
        self.ended = time.monotonic()  # complete
        reader = self._reader
        if reader is not None:
            reader.stop()  # (a disconnect now is the server's "after the response")

    def stop(self) -> None:
        """Stop watching: the app has returned, or raised."""
        self._done = True
        reader = self._reader
        if reader is not None:
            reader.stop()

    def finish(self) -> float:
        """Stop watching when the request ends; returns when it ended: when its
        response was complete, else now."""
        self.stop()
        return self.ended or time.monotonic()

    def _may_read(self) -> bool:
        # Not for a client waiting for 100 Continue: the server sends it at the first
        # receive(), which is the app's to make (it may refuse the request unread).
        return not _expects_continue(self._scope)


def _expects_continue(scope: Scope) -> bool:
    """Whether the client waits for ``100 Continue`` before its body: the server
    sends it at the first ``receive()``, which is the app's to make (it may refuse
    the request unread)."""
    return any(name == b"expect" and value.lower() == b"100-continue"
               for name, value in scope.get("headers", ()))


class _Reader:
    """The one reader of the server's ``receive()`` for a request whose response
    is not complete: a task that reads ahead, holding the body for the app (at most
    :data:`READ_AHEAD` bytes and a message), until the disconnect."""

    __slots__ = ("_body_done", "_held", "_held_bytes", "_loop", "_pump", "_receive", "_room",
                 "_waiters", "failed", "final", "gone", "stopped")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._loop = asyncio.get_running_loop()
        self._held: deque[Message] = deque()
        self._held_bytes = 0
        self._body_done = False
        self._waiters: list[asyncio.Future[None]] = []
        self._room: asyncio.Future[None] | None = None
        self.failed: Exception | None = None
        self.final: Message | None = None
        self.gone = False
        self.stopped = False
        self._pump: asyncio.Task[None] | None = self._loop.create_task(self._run())

    async def take(self) -> Message:
        """The next message for the app: held body first, then the disconnect (again
        and again, as servers answer after it), waiting for the server if need be."""
        while True:
            held = self._held
            if held:
                message = held.popleft()
                self._held_bytes -= len(message.get("body", b""))
                room = self._room
                if room is not None and not room.done() and self._held_bytes < READ_AHEAD:
                    room.set_result(None)
                return message
            if self.final is not None:
                return self.final
            if self.failed is not None:
                raise self.failed
            if self.stopped:  # the response is complete: the server's own answers
                return await self._receive()
            waiter = self._loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                self._waiters.remove(waiter)

    def stop(self) -> None:
        """Read no further: the app's reads, waiting ones too, go to the server."""
        if self.stopped:
            return
        self.stopped = True
        pump, self._pump = self._pump, None
        if pump is not None and not pump.done():
            pump.cancel()
        self._wake()

    async def _run(self) -> None:
        receive = self._receive
        try:
            while True:
                while not self._body_done and self._held_bytes >= READ_AHEAD:
                    self._room = self._loop.create_future()  # the app not reading
                    await self._room
                message = await receive()
                if message["type"] == "http.disconnect":
                    self._left(message)
                    return
                if self._body_done:
                    # After the whole body a server says only http.disconnect, when it
                    # comes: one that answers anything else (a stand-in for a server,
                    # whose receive() never waits) cannot tell a leaving; the app gets
                    # the rest from it directly.
                    self._held.append(message)
                    self.stopped = True
                    self._wake()
                    return
                self._held.append(message)
                if message["type"] == "http.request":
                    self._held_bytes += len(message.get("body", b""))
                    self._body_done = not message.get("more_body", False)
                self._wake()
        except Exception as error:  # the server's receive failing: the app's raises it
            self.failed = error
            self._wake()

    def _left(self, message: Message) -> None:
        # The app hears it at its next receive() (a reader waiting now, at once) or
        # send() (Departure.send raises): the handler's task is not cancelled.
        self.final = message
        self.gone = True
        self._wake()

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
