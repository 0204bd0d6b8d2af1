"""Requests written as bytes, for what httpx would re-encode or refuse (raw paths,
non-ASCII header bytes), and a server that records the bytes each request arrives as
and answers with bytes a test scripts (:class:`RawServer`)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
from collections.abc import AsyncIterator, Callable

__all__ = ["CLOSE", "RawServer", "accept_each", "answering", "raw_get", "read_request"]


async def raw_get(url: str, target: bytes, headers: bytes = b"") -> bytes:
    """The status line of a GET of ``target`` sent as bytes to ``url``'s host."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                 + headers + b"\r\n")
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer.split(b"\r\n", 1)[0]


def accept_each(sock: socket.socket, serve: Callable[[socket.socket], None],
                conns: list[socket.socket] | None = None,
                threads: list[threading.Thread] | None = None) -> None:
    """Accept connections on ``sock`` until it is closed, serving each in a daemon
    thread of its own (appended to ``conns`` and ``threads`` when given)."""
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        thread = threading.Thread(target=serve, args=(conn,), daemon=True)
        if conns is not None:
            conns.append(conn)
        if threads is not None:
            threads.append(thread)
        thread.start()


CLOSE = b"\x00close"
"""Ends an answer of :class:`RawServer`'s script: send what comes before, then close."""

_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[ \t]*chunked", re.IGNORECASE)


def _ok(head: bytes, body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class RawServer:
    """An HTTP/1.1 server on a free loopback port, in threads: it records each
    request as ``(head, body)`` bytes (the head without its blank line; a chunked
    body as sent, framing included) and writes back whatever ``answer(head, body)``
    returns, byte for byte (ending in :data:`CLOSE`: then closes the connection)."""

    def __init__(self, answer: Callable[[bytes, bytes], bytes] = _ok) -> None:
        self.answer = answer
        self.continues = True
        """Whether a request with ``Expect: 100-continue`` gets ``100 Continue``."""
        self.requests: list[tuple[bytes, bytes]] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def take(self) -> list[tuple[bytes, bytes]]:
        """The requests recorded so far, forgotten here."""
        taken, self.requests = self.requests, []
        return taken

    def close(self) -> None:
        """Stop accepting connections (the accepting thread ends: on Linux a close
        alone leaves it blocked in accept(), holding the port open)."""
        with contextlib.suppress(OSError):  # closed already
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._accepting.join(timeout=10)

    def _accept(self) -> None:
        accept_each(self._sock, self._serve)

    def _serve(self, conn: socket.socket) -> None:
        pending = b""
        conn.settimeout(5)  # a client waiting for what it never sends: give up
        with conn:
            try:
                while (request := read_request(conn, pending, self.continues)) is not None:
                    head, body, pending = request
                    self.requests.append((head, body))
                    out = self.answer(head, body)
                    conn.sendall(out.removesuffix(CLOSE))
                    if out.endswith(CLOSE):
                        return
            except OSError:
                return


def _more(conn: socket.socket, data: bytes) -> bytes:
    chunk = conn.recv(65536)
    if not chunk:
        raise ConnectionResetError("closed mid-request")
    return data + chunk


def read_request(conn: socket.socket, data: bytes = b"", continues: bool = False
                 ) -> tuple[bytes, bytes, bytes] | None:
    """One request off ``conn`` (``data``: bytes already read; ``continues``: answer
    ``Expect: 100-continue``): head, body, the rest; None when the connection closed
    before a head. Raises ``ConnectionResetError`` when it closes mid-body."""
    try:
        while b"\r\n\r\n" not in data:
            data = _more(conn, data)
    except ConnectionResetError:
        return None
    head, data = data.split(b"\r\n\r\n", 1)
    if continues and re.search(rb"\r\nexpect:[ \t]*100-continue", head, re.IGNORECASE):
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    if _CHUNKED.search(head):
        while b"\r\n0\r\n\r\n" not in b"\r\n" + data:
            data = _more(conn, data)
        end = (b"\r\n" + data).index(b"\r\n0\r\n\r\n") + 5
        return head, data[:end], data[end:]
    length = _LENGTH.search(head)
    size = int(length.group(1)) if length else 0
    while len(data) < size:
        data = _more(conn, data)
    return head, data[:size], data[size:]


@contextlib.asynccontextmanager
async def answering(reply: bytes) -> AsyncIterator[str]:
    """A loopback server answering every request with ``reply``, raw bytes."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(reply)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
