"""Bounds on what a client can make the dashboard hold, so a client that connects
and sends nothing (or a huge header) cannot hurt the application it runs in.

uvicorn bounds concurrent requests (``limit_concurrency``) and idle keep-alive
connections (``timeout_keep_alive``), but not how many connections stay open
before a request arrives, how long a request head may take to arrive, nor (with
httptools, its default parser) how large a head may grow. Those three are added
here by a subclass of the protocol uvicorn picks:

- ``max_connections``: a connection beyond it (HTTP or WebSocket) is closed at
  once, so its descriptor is freed and the application's own sockets are not
  starved;
- ``header_timeout``: a request head (the request line and headers) not complete
  within it closes the connection (also between keep-alive requests);
- ``max_header_bytes``: a head growing past it is answered 431 and closed; the
  bytes are counted before the parser sees them, whichever parser uvicorn uses.

The WebSocket protocol is quietened: the handshake's headers (which may carry an
``Authorization`` value) are never logged, and the request line uvicorn logs
carries no query string.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from ..._validate import at_least, positive

__all__ = [
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_KEEP_ALIVE",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_HEADER_BYTES",
    "Limits",
    "http_protocol",
    "ws_protocol",
]

DEFAULT_MAX_CONNECTIONS = 100
"""Connections (HTTP and WebSocket) the dashboard keeps open at once."""

DEFAULT_HEADER_TIMEOUT = 10.0
"""Seconds a client has to send a whole request head."""

DEFAULT_MAX_HEADER_BYTES = 16384
"""Largest request head (request line and headers) read, in bytes."""

DEFAULT_KEEP_ALIVE = 5
"""Seconds an idle keep-alive connection stays open."""

_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\n"
              b"content-length: 26\r\nconnection: close\r\n\r\nrequest header too large\r\n")


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """The dashboard server's bounds (see the module docstring)."""

    max_connections: int = DEFAULT_MAX_CONNECTIONS
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    keep_alive: int = DEFAULT_KEEP_ALIVE

    def __post_init__(self) -> None:
        owner = "serve_dashboard"
        at_least(owner, "max_connections", self.max_connections, 1)
        positive(owner, "header_timeout", self.header_timeout)
        at_least(owner, "max_header_bytes", self.max_header_bytes, 1024)
        at_least(owner, "keep_alive", self.keep_alive, 1)


def http_protocol(limits: Limits) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class, bounded by ``limits``."""
    # uvicorn is imported here, not with the module: checking a config's dashboard
    # limits (meshlite check) needs no dashboard extra.
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    base: Any = AutoHTTPProtocol

    class Bounded(base):  # type: ignore[misc]  # uvicorn's class is chosen at import
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            self._head_bytes = 0  # of the request head being received
            self._tail = b""  # its last 3 bytes, where the end of a head may begin
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                transport.abort()  # frees the descriptor now; nothing was read
                return
            self._arm(None)

        def _arm(self, cycle: Any) -> None:
            self._head_timer = self.loop.call_later(limits.header_timeout, self._check, cycle)

        def _waiting(self) -> bool:
            return self.cycle is None or bool(self.cycle.response_complete)

        def _check(self, cycle: Any) -> None:
            transport = self.transport
            if transport.is_closing() or transport.get_protocol() is not self:
                return  # closed, or upgraded to a WebSocket
            if self.cycle is cycle and self._waiting():
                transport.abort()  # no whole request head within header_timeout
                return
            self._arm(self.cycle)

        def data_received(self, data: bytes) -> None:
            if self._too_large(data):
                if self._waiting():
                    self.transport.write(_TOO_LARGE)
                    self.transport.close()
                else:  # a response is being sent: no answer can go in the middle of it
                    self.transport.abort()
                return
            super().data_received(data)

        def _too_large(self, data: bytes) -> bool:
            """Count ``data`` into the heads being received (before the parser sees
            it): whether one grows past max_header_bytes. Every read counts, one that
            arrives while a request is served too, and a read may end one head and
            carry the next (requests sent in one write, pipelined): each is counted.
            The dashboard takes no request bodies; one would count as a head."""
            limit = limits.max_header_bytes
            tail, start = self._tail, 0
            joint = (tail + data[:3]).find(b"\r\n\r\n") if tail else -1
            if joint >= 0:  # the head's end began in the previous read
                start = joint - len(tail) + 4
                if self._head_bytes + start > limit:
                    return True
                self._head_bytes, tail = 0, b""
            while (end := data.find(b"\r\n\r\n", start)) >= 0:
                if self._head_bytes + end + 4 - start > limit:
                    return True
                self._head_bytes, tail, start = 0, b"", end + 4
            self._head_bytes += len(data) - start
            self._tail = (tail + data[start:])[-3:]
            return self._head_bytes > limit

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            super().connection_lost(exc)

    return Bounded


def ws_protocol(limits: Limits) -> type[asyncio.Protocol]:
    """uvicorn's WebSocket protocol (websockets, sans-I/O), bounded by ``limits``
    and never logging credentials."""
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    base: Any = WebSocketsSansIOProtocol

    class Quiet(base):  # type: ignore[misc]  # uvicorn's class is untyped here
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # websockets logs every handshake header at DEBUG (Authorization too)
            self.conn.debug = False

        def handle_connect(self, event: Any) -> None:
            super().handle_connect(event)
            scope = getattr(self, "scope", None)
            if scope is not None:
                # uvicorn logs the path with its query; the feed reads no query
                scope["query_string"] = b""

    return Quiet
