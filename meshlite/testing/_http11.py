"""Just enough server-side HTTP/1.1 for :class:`FakeBackend`, on asyncio streams.

Reads one request at a time from a keep-alive connection (bodies by
``Content-Length`` or chunked) and encodes
responses that carry ``Content-Length`` (all but the bodiless 1xx, 204 and 304).
No third-party code, so the fake backend works wherever the standard library does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

__all__ = ["BadRequest", "ReceivedRequest", "encode_response", "read_request"]

_MAX_HEADERS = 100


class BadRequest(Exception):
    """The bytes on the connection are not a request this server understands."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """One request as a :class:`FakeBackend` received it.

    Attributes:
        method: ``"GET"``, ``"POST"``...
        path: The path, without the query string (``"/users/1"``).
        query: The query string without ``?`` (``""`` when there is none).
        headers: Header names in lower case; repeated headers joined with ``", "``.
        body: The raw request body.
        time: ``time.monotonic()`` when the request was fully read.
        http_version: ``"HTTP/1.1"`` or ``"HTTP/1.0"``.
    """

    method: str
    path: str
    query: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    time: float = 0.0
    http_version: str = "HTTP/1.1"

    @property
    def target(self) -> str:
        """The path with its query string, as sent on the request line."""
        return f"{self.path}?{self.query}" if self.query else self.path

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (undecodable bytes replaced)."""
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON.

        Raises:
            ValueError: the body is not JSON.
        """
        return json.loads(self.body)

    @property
    def keep_alive(self) -> bool:
        """Whether the client wants the connection kept open after the response."""
        connection = self.headers.get("connection", "").lower()
        if self.http_version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection


async def _read_line(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readline()
    except ValueError as error:  # the stream's line limit was exceeded
        raise BadRequest("request line or header too long", 431) from error


async def _read_headers(reader: asyncio.StreamReader) -> dict[str, str]:
    headers: dict[str, str] = {}
    for _ in range(_MAX_HEADERS + 1):
        line = await _read_line(reader)
        if not line:
            raise asyncio.IncompleteReadError(b"", None)
        if line in (b"\r\n", b"\n"):
            return headers
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep or not name.strip():
            raise BadRequest(f"malformed header line {line[:80]!r}")
        key, text = name.strip().lower(), value.strip()
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    raise BadRequest("too many headers", 431)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    """A chunked body (a streamed upload): its chunks joined; trailers are read and
    left out."""
    parts: list[bytes] = []
    while True:
        line = await _read_line(reader)
        if not line:
            raise asyncio.IncompleteReadError(b"", None)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise BadRequest(f"bad chunk size line {line[:80]!r}") from None
        if size < 0:
            raise BadRequest(f"bad chunk size line {line[:80]!r}")
        if size == 0:
            await _read_headers(reader)  # the trailer section, up to its blank line
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise BadRequest("a chunk longer than its size line says")


async def read_request(
    reader: asyncio.StreamReader, clock: Callable[[], float],
    writer: asyncio.StreamWriter | None = None,
) -> ReceivedRequest | None:
    """Read the next request, or return ``None`` when the client closed cleanly.

    ``clock()`` stamps the request once it is fully read. With ``writer``, a request
    that says ``Expect: 100-continue`` is told to go on (``100 Continue``) before its
    body is read: a client waiting for that would otherwise never send the body.

    Raises:
        BadRequest: malformed input (the caller answers with ``error.status``).
        asyncio.IncompleteReadError: the client went away mid-request.
    """
    line = b"\r\n"
    while line in (b"\r\n", b"\n"):  # tolerate blank lines between requests (RFC 9112 2.2)
        line = await _read_line(reader)
        if not line:
            return None
    parts = line.decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(f"malformed request line {line[:80]!r}")
    method, target, version = parts
    headers = await _read_headers(reader)
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()  # (wins: RFC 9112)
    try:
        length = 0 if chunked else int(headers.get("content-length", "0"))
    except ValueError:
        raise BadRequest("bad Content-Length") from None
    if length < 0:
        raise BadRequest("bad Content-Length")
    if (writer is not None and (length or chunked) and version == "HTTP/1.1"
            and headers.get("expect", "").lower() == "100-continue"):
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
    if chunked:
        body = await _read_chunked(reader)
    else:
        body = await reader.readexactly(length) if length else b""
    path, _, query = target.partition("?")
    return ReceivedRequest(method.upper(), path, query, headers, body, clock(), version)


def encode_response(
    status: int, headers: list[tuple[str, str]], body: bytes, *, keep_alive: bool, head: bool
) -> bytes:
    """Encode a complete response; ``Content-Length`` is added, the body left out for HEAD.

    A 1xx, 204 or 304 response has no body in HTTP/1.1 (RFC 9110 6.4.1): a client reads
    none after the head, so the body is dropped and no ``Content-Length`` sent, or its
    bytes would be read as the start of the next response on the connection.
    """
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    lines = [f"HTTP/1.1 {status} {reason}".rstrip()]
    lines.extend(f"{name}: {value}" for name, value in headers)
    if status < 200 or status in (204, 304):
        body = b""
    else:
        lines.append(f"content-length: {len(body)}")
    if not keep_alive:
        lines.append("connection: close")
    head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head_bytes if head else head_bytes + body
